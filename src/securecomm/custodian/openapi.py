"""A custodian's OpenAPI 3.1 document, served as ``GET /openapi.json``.

Built from the pieces in :mod:`securecomm.service.openapi` (shared schemas,
error answers, the signed-request security schemes), so both documents
describe errors, identities, policies and receipts the same way.
"""

from __future__ import annotations

from typing import Any

from ..codes import Code
from ..envelope import MAX_RECIPIENTS
from ..service.openapi import (
    DIGEST,
    FORMAT_CODES,
    INDEX,
    NO_SUCH_ENDPOINT,
    OPENAPI_PATH,
    SIGNATURE,
    TIME,
    V1,
    Schema,
    array,
    base64_string,
    build_document,
    error,
    health_path,
    hex_string,
    json_response,
    obj,
    operation,
    path_parameter,
    ref,
    revocation_path,
)
from .audit import PAGE_DEFAULT_ENTRIES, PAGE_MAX_ENTRIES, SEQ_MAX

__all__ = ["DOCUMENT"]

_STATUSES = ["pending", "approved", "denied", "released", "withdrawn"]
_EVENTS = [
    "deposit",
    "delete",
    "refusal",
    "release_requested",
    "release_withdrawn",
    "release",
    "release_repeated",
    "release_acknowledged",
    "approved",
    "denied",
    "burn",
]

_SCHEMAS: dict[str, Schema] = {
    "ReleaseId": hex_string(32, "A release request's id: 16 random bytes in lowercase hex."),
    "SignedIdentity": obj(
        {
            "identity": ref("PublicIdentity"),
            "signature": base64_string(
                64, "The custodian's own signature, purpose `identity`, over `identity`."
            ),
        },
        "The custodian's public identity, self-signed. Pin its fingerprint out of band.",
    ),
    "DepositRequest": obj(
        {
            "v": V1,
            "message_id": ref("MessageId"),
            "index": INDEX,
            "share_digest": DIGEST,
            "sealed_share": base64_string(
                description="The share, HPKE-sealed to this custodian (spec section 5).",
                minLength=64,
            ),
            "policy": ref("Policy"),
            "recipients": array(ref("Recipient"), 1, MAX_RECIPIENTS),
        },
        "One share of a message key, for this custodian to keep. The sender is whoever"
        " signs the request.",
    ),
    "ReleaseRequest": obj(
        {"v": V1, "message_id": ref("MessageId")},
        "Ask for this custodian's share of a message.",
    ),
    "ReleaseStatus": obj(
        {"v": V1, "release_id": ref("ReleaseId"), "status": {"enum": _STATUSES}},
        "Where a release that needs the operator's approval stands.",
    ),
    "Release": obj(
        {
            "v": V1,
            "status": {"const": "released"},
            "custodian": ref("Name"),
            "index": INDEX,
            "message_id": ref("MessageId"),
            "recipient": ref("Fingerprint"),
            "sealed_share": base64_string(description="The share, HPKE-sealed to the recipient."),
            "signature": SIGNATURE,
        },
        "The custodian's share, sealed to the caller and signed (purpose `release`).",
    ),
    "ReleaseList": obj(
        {
            "releases": {
                "type": "array",
                "items": obj(
                    {
                        "release_id": ref("ReleaseId"),
                        "message_id": ref("MessageId"),
                        "recipient": ref("PublicIdentity"),
                        "status": {"enum": _STATUSES},
                        "created": TIME,
                    },
                    "A release request.",
                ),
            }
        },
        "Release requests with one status, oldest first.",
    ),
    "AuditPage": obj(
        {
            "custodian": ref("PublicIdentity"),
            "entries": {
                "type": "array",
                "maxItems": PAGE_MAX_ENTRIES,
                "items": obj(
                    {
                        "seq": {"type": "integer", "minimum": 1},
                        "time": TIME,
                        "event": {"enum": _EVENTS},
                        "data": {"type": "object", "description": "Ids, fingerprints, digests."},
                        "prev": hex_string(64, "`hash` of the entry before; 64 zeros first."),
                        "hash": hex_string(64, "Over this entry and `prev`."),
                        "signature": SIGNATURE,
                    },
                    "One signed, hash-chained entry.",
                ),
            },
            "next": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "The `after` of the next page (the seq of this page's last"
                " entry); null on the last page.",
            },
        },
        "A page of the audit log, by seq, and the key that signed it.",
    ),
}

_NOT_OPERATOR = error("The caller is not this custodian's operator.", Code.NOT_OPERATOR)
_REFUSALS = (Code.NOT_RECIPIENT, Code.TOO_EARLY, Code.EXPIRED, Code.USED_UP)
_UNSEALABLE = (Code.BAD_IDENTITY,)  # the caller's X25519 key cannot be sealed to
_RELEASE_ID_PARAMETER = path_parameter("release_id", ref("ReleaseId"), "The release's id.")


def _message_id_query(description: str) -> Schema:
    return {
        "name": "message_id",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "description": description,
    }


def _decide(verdict: str) -> Schema:
    return {
        "parameters": [_RELEASE_ID_PARAMETER],
        "post": operation(
            f"{verdict}Release",
            f"{verdict.capitalize()} a pending release. Only this custodian's operator may."
            " The same verdict again is answered as the first, and audited once.",
            {
                "200": json_response(
                    "Decided: where the release stands (`released` for an approval collected"
                    " since).",
                    ref("ReleaseStatus"),
                ),
                "403": _NOT_OPERATOR,
                "404": error("No such release.", Code.NO_RELEASE, NO_SUCH_ENDPOINT),
                "409": error("The other verdict was given.", Code.NOT_PENDING),
                "410": error(
                    "Still pending, but its share was destroyed since (unsent, or burnt by"
                    " another reader's release): nothing is left to decide.",
                    Code.DESTROYED,
                ),
            },
            signed=True,
        ),
    }


_PATHS: dict[str, Schema] = {
    "/v1/identity": {
        "get": operation(
            "getIdentity",
            "The custodian's public identity, self-signed. Anyone may call it.",
            {"200": json_response("The identity.", ref("SignedIdentity"))},
            signed=False,
        )
    },
    "/v1/deposits": {
        "post": operation(
            "deposit",
            "Deposit one sealed share of a message key, with its release policy and recipients."
            " Any signed caller may; the signer is recorded as the message's sender.",
            {
                "201": json_response("Kept; the signed receipt.", ref("Receipt")),
                "400": error(
                    "The body is not valid, the share does not open, or it does not match the"
                    " digest, index or message id.",
                    Code.BAD_JSON,
                    *FORMAT_CODES,
                    Code.BAD_SEAL,
                    Code.BAD_SHARE,
                    Code.DIGEST_MISMATCH,
                ),
                "403": error(
                    "Signed by a device acting for its person: a device does not send"
                    " (spec/sessions.md section 3.2).",
                    Code.NOT_YOUR_KEY,
                ),
                "409": error("A share of this message is already here.", Code.DUPLICATE_DEPOSIT),
            },
            signed=True,
            body=ref("DepositRequest"),
        ),
        "delete": operation(
            "withdrawDeposit",
            "Destroy the caller's deposit for a message, found by message id: how a sender"
            " withdraws a share whose receipt it never got. Only the sender who deposited it"
            " may; withdrawing twice is not an error.",
            {
                "204": {"description": "Destroyed."},
                "400": error(
                    "message_id is missing or not 32 lowercase hex digits.", Code.BAD_FIELD
                ),
                "404": error("No deposit of the caller's for this message.", Code.NO_DEPOSIT),
            },
            signed=True,
            parameters=[_message_id_query("The message whose share to destroy.")],
        ),
    },
    "/v1/deposits/{ref}": {
        "parameters": [
            path_parameter(
                "ref",
                {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
                "The deposit's reference, from its receipt.",
            )
        ],
        "delete": operation(
            "deleteDeposit",
            "Destroy a deposited share (for a message that was not sent). Only the sender"
            " who deposited it may; deleting twice is not an error.",
            {
                "204": {"description": "Destroyed."},
                "404": error(
                    "No deposit of the caller's with this ref.", Code.NO_DEPOSIT, Code.NOT_FOUND
                ),
            },
            signed=True,
        ),
    },
    "/v1/releases": {
        "post": operation(
            "requestRelease",
            "Ask for this custodian's share of a message, sealed to the caller. Only a listed"
            " recipient may, and only as the message's policy allows; refusals are audited.",
            {
                "200": json_response(
                    "Released (also the caller's open request, once approved); or the release"
                    " given to the caller once and kept for it, given again as it was, not"
                    " counted again (spec section 12.2).",
                    ref("Release"),
                ),
                "202": json_response(
                    "Waiting for the operator's approval: the caller's open request for this"
                    " share if it has one, else a new one.",
                    ref("ReleaseStatus"),
                ),
                "400": error("The body is not valid.", Code.BAD_JSON, Code.BAD_FIELD, *_UNSEALABLE),
                "403": error(
                    "The policy refuses a release to the caller now, or the operator denied"
                    " the caller's request for this share (a denial is final).",
                    *_REFUSALS,
                    Code.DENIED,
                ),
                "404": error("No share of this message is held here.", Code.NO_DEPOSIT),
                "410": error("The share was destroyed.", Code.DESTROYED),
            },
            signed=True,
            body=ref("ReleaseRequest"),
        ),
        "get": operation(
            "listReleases",
            "List release requests with one status. Only this custodian's operator may."
            " Pending ones whose share was destroyed since (unsent, or burnt by another"
            " reader's release) are not listed: nothing is left to decide.",
            {
                "200": json_response("The requests.", ref("ReleaseList")),
                "400": error("Not a known status.", Code.BAD_FIELD),
                "403": _NOT_OPERATOR,
            },
            signed=True,
            parameters=[
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"enum": _STATUSES, "default": "pending"},
                    "description": "Which requests.",
                }
            ],
        ),
        "delete": operation(
            "acknowledgeReleases",
            "The caller has the message: the release of its share given to the caller once"
            " (its policy counts releases or needs approval), which this custodian keeps for"
            " the caller for an hour in case the answer was lost on the way, is deleted now"
            " (spec section 12.2). Acknowledging again, or with nothing kept, answers the same.",
            {
                "200": json_response(
                    "Nothing is kept for the caller now.",
                    {
                        "type": "object",
                        "required": ["v", "message_id", "kept"],
                        "properties": {
                            "v": {"const": 1},
                            "message_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                            "kept": {"const": False},
                        },
                        "additionalProperties": False,
                    },
                ),
                "400": error(
                    "message_id is missing or not 32 lowercase hex digits.", Code.BAD_FIELD
                ),
            },
            signed=True,
            parameters=[_message_id_query("The message the caller has.")],
        ),
    },
    "/v1/releases/{release_id}": {
        "parameters": [_RELEASE_ID_PARAMETER],
        "get": operation(
            "getRelease",
            "Collect an approved release, or see where it stands. Only the recipient who asked"
            " for it, or the operator (who sees the status only), may.",
            {
                "200": json_response(
                    "The share (to the recipient, once; again while it is kept for the"
                    " recipient, spec section 12.2), or the status (to the operator).",
                    {"oneOf": [ref("Release"), ref("ReleaseStatus")]},
                ),
                "202": json_response("Still pending.", ref("ReleaseStatus")),
                "400": error("The share cannot be sealed to the caller's key.", *_UNSEALABLE),
                "403": error("Denied, or the policy refuses it now.", Code.DENIED, *_REFUSALS),
                "404": error(
                    "No such release for the caller.",
                    Code.NO_RELEASE,
                    Code.NO_DEPOSIT,
                    NO_SUCH_ENDPOINT,
                ),
                "410": error(
                    "Already collected, withdrawn by its recipient, or destroyed.",
                    Code.ALREADY_RELEASED,
                    Code.WITHDRAWN,
                    Code.DESTROYED,
                ),
            },
            signed=True,
        ),
        "delete": operation(
            "withdrawRelease",
            "Withdraw a release its recipient no longer needs (pending, or approved and not"
            " collected): the operator is not asked for it again (spec section 12.2). Only"
            " that recipient may; withdrawing again answers the same.",
            {
                "200": json_response("Withdrawn.", ref("ReleaseStatus")),
                "404": error("No such release for the caller.", Code.NO_RELEASE, NO_SUCH_ENDPOINT),
                "409": error("Collected or denied already.", Code.NOT_PENDING),
            },
            signed=True,
        ),
    },
    "/v1/releases/{release_id}/approve": _decide("approve"),
    "/v1/releases/{release_id}/deny": _decide("deny"),
    "/v1/audit": {
        "get": operation(
            "getAudit",
            "The hash-chained, signed audit log, a page at a time, oldest first. Only this"
            " custodian's operator may read it. A reader follows `next` from the first page"
            " to the last and carries the chain across pages (spec section 12.3).",
            {
                "200": json_response("A page.", ref("AuditPage")),
                "400": error("`limit` or `after` is not valid.", Code.BAD_FIELD),
                "403": _NOT_OPERATOR,
            },
            signed=True,
            parameters=[
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": PAGE_MAX_ENTRIES,
                        "default": PAGE_DEFAULT_ENTRIES,
                    },
                    "description": "Page size.",
                },
                {
                    "name": "after",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": SEQ_MAX, "default": 0},
                    "description": "The `next` of the previous page: entries after this seq.",
                },
            ],
        )
    },
    "/v1/revocations": revocation_path(),
    "/healthz": health_path("custodian"),
    "/openapi.json": OPENAPI_PATH,
}

DOCUMENT: dict[str, Any] = build_document(
    "securecomm custodian",
    "Keeps one share per message, sealed, and releases it to a listed recipient only as the"
    " sender's policy allows, with an audit log. Signed requests: see the security schemes"
    " and spec/format-v1.md section 11; the audience is the custodian's name.",
    _PATHS,
    _SCHEMAS,
)

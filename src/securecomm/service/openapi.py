"""The building blocks of both services' OpenAPI 3.1 documents (``GET /openapi.json``).

The schemas say what the code accepts and
answers: an object the code decodes strictly has ``additionalProperties:
false``; ids, fingerprints, names and base64 carry the patterns of
spec/format-v1.md; every error answer is ``{"code", "message"}`` and lists
the codes that status can carry. What JSON Schema cannot say (canonical JSON
on the wire, signatures, cross-field rules such as "exactly n custodians")
is in the descriptions.
"""

from __future__ import annotations

from typing import Any

from .._fields import TIME_MAX_SECONDS
from ..codes import Code

__all__ = [
    "DIGEST",
    "FINGERPRINT",
    "FORMAT_CODES",
    "INDEX",
    "NO_SUCH_ENDPOINT",
    "OPENAPI_PATH",
    "SESSIONS",
    "SIGNATURE",
    "SIGNED",
    "TIME",
    "V1",
    "Schema",
    "array",
    "base64_string",
    "build_document",
    "const",
    "error",
    "health_path",
    "hex_string",
    "integer",
    "json_response",
    "obj",
    "operation",
    "path_parameter",
    "ref",
    "revocation_path",
]

Schema = dict[str, Any]

SPEC = "spec/format-v1.md"
SESSIONS = "spec/sessions.md"
_B64 = "A-Za-z0-9+/"
# The last character before padding, when its unused low bits are zero (spec section 1.2).
_B64_TAIL = {0: "", 1: f"[{_B64}][AQgw]==", 2: f"[{_B64}]{{2}}[AEIMQUYcgkosw048]="}


# Schema pieces.


def ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def hex_string(digits: int, description: str) -> Schema:
    return {"type": "string", "pattern": f"^[0-9a-f]{{{digits}}}$", "description": description}


def base64_string(length: int | None = None, description: str = "", **extra: Any) -> Schema:
    """Padded standard base64 in its one canonical spelling; exactly ``length`` bytes if given."""
    if length is None:
        tail = "|".join(t for t in _B64_TAIL.values() if t)
        pattern = f"^(?:[{_B64}]{{4}})*(?:{tail})?$"
        size = "any length"
    else:
        groups, rest = divmod(length, 3)
        pattern = f"^[{_B64}]{{{4 * groups}}}{_B64_TAIL[rest]}$"
        size = f"{length} bytes"
    text = f"{description} " if description else ""
    return {
        "type": "string",
        "pattern": pattern,
        "description": f"{text}(canonical padded base64, {size}; {SPEC} section 1.2)",
        **extra,
    }


def integer(minimum: int, maximum: int, description: str, *, nullable: bool = False) -> Schema:
    kind: str | list[str] = ["integer", "null"] if nullable else "integer"
    return {"type": kind, "minimum": minimum, "maximum": maximum, "description": description}


def obj(
    properties: dict[str, Schema],
    description: str,
    *,
    optional: tuple[str, ...] = (),
) -> Schema:
    """A strict object: these members, all required but ``optional``, and no others."""
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def const(value: Any) -> Schema:
    return {"const": value}


def array(items: Schema, minimum: int, maximum: int) -> Schema:
    return {"type": "array", "items": items, "minItems": minimum, "maxItems": maximum}


V1 = const(1)
NAME = {
    "type": "string",
    "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
    "description": f"A party's name ({SPEC} section 1.6).",
}
MESSAGE_ID = hex_string(32, "A message id: 16 random bytes in lowercase hex.")
FINGERPRINT = hex_string(64, f"A full fingerprint ({SPEC} section 6.3).")
TIME = integer(0, TIME_MAX_SECONDS, "Seconds since 1970-01-01T00:00:00Z.")
SIGNATURE = base64_string(64, "An Ed25519 signature.")
DIGEST = base64_string(32, "A SHA-256 digest.")
INDEX = integer(1, 255, "A share index (its x-coordinate).")

SHARED_SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "code": {"type": "string", "pattern": "^[a-z][a-z_]*$", "description": "Stable."},
            "message": {"type": "string", "description": "For people; may change."},
        },
        "Every answer other than success. Clients act on `code`, never on `message`.",
    ),
    "PublicIdentity": obj(
        {
            "v": V1,
            "name": ref("Name"),
            "sign": base64_string(32, "Raw Ed25519 public key."),
            "kem": base64_string(32, "Raw X25519 public key."),
        },
        f"A party's public identity ({SPEC} section 6.2).",
    ),
    "Recipient": obj(
        {"name": ref("Name"), "fingerprint": ref("Fingerprint")},
        "Someone who may read a message, by name and fingerprint.",
    ),
    "Policy": obj(
        {
            "not_before": integer(
                0, TIME_MAX_SECONDS, "No release before (inclusive).", nullable=True
            ),
            "expires": integer(0, TIME_MAX_SECONDS, "No release from (exclusive).", nullable=True),
            "max_releases": integer(1, 1_000_000, "Releases per custodian.", nullable=True),
            "require_approval": {"type": "boolean"},
        },
        f"What each custodian checks before a release ({SPEC} section 7.2); if both times"
        " are set, `expires` is after `not_before`.",
    ),
    "Receipt": obj(
        {
            "v": V1,
            "custodian": ref("Name"),
            "index": INDEX,
            "message_id": ref("MessageId"),
            "ref": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
            "share_digest": DIGEST,
            "signature": SIGNATURE,
        },
        f"A custodian's signed word that it holds a share ({SPEC} section 7.3).",
    ),
    "Delegation": obj(
        {
            "v": V1,
            "person": ref("PublicIdentity"),
            "device": {
                **ref("PublicIdentity"),
                "description": "The device's own key, named like its person.",
            },
            "label": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,63}$",
                "description": "The person's name for the device.",
            },
            "issued": integer(0, TIME_MAX_SECONDS, "When the person signed it."),
            "expires": integer(
                0,
                TIME_MAX_SECONDS,
                "From when it no longer holds: after `issued`, within"
                " 31,622,400 s (366 days) of it.",
            ),
            "signature": base64_string(
                64, "The person's Ed25519 signature, purpose `delegation`, over the rest."
            ),
        },
        f"A person's signed word that a device of theirs acts for them ({SESSIONS} section"
        " 3.1): the device's key is not the person's, and its name is theirs.",
    ),
    "Revocation": obj(
        {
            "v": V1,
            "person": ref("PublicIdentity"),
            "device": {**ref("Fingerprint"), "description": "The device's fingerprint."},
            "revoked": TIME,
            "signature": base64_string(
                64, "The person's Ed25519 signature, purpose `revocation`, over the rest."
            ),
        },
        f"A person's signed word that a device of theirs acts for them no more ({SESSIONS}"
        " section 3.3).",
    ),
    "RevocationRequest": obj(
        {"v": V1, "revocation": ref("Revocation")},
        "A revocation, posted by the person who signed it.",
    ),
    "RevocationReceipt": obj(
        {
            "receipt": obj(
                {
                    "v": V1,
                    "service": ref("Name"),
                    "person": ref("Fingerprint"),
                    "device": ref("Fingerprint"),
                },
                "Which service holds the revocation of which device of whose.",
            ),
            "signature": base64_string(
                64, "The service's Ed25519 signature, purpose `revoked`, over `receipt`."
            ),
        },
        "The service's signed word that it holds the revocation and refuses the device's"
        " requests from now on; check it against the service's pinned key.",
    ),
    "Health": obj(
        {
            "status": const("ok"),
            "service": ref("Name"),
            "name": ref("Name"),
            "fingerprint": ref("Fingerprint"),
        },
        "The service is up and its database answers; who it is.",
    ),
    "Name": NAME,
    "MessageId": MESSAGE_ID,
    "Fingerprint": FINGERPRINT,
}


# Responses.


def json_response(description: str, schema: Schema, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def error(description: str, *codes: str) -> Schema:
    """An error answer: the shared Error schema, with ``code`` one of ``codes``."""
    listed = ", ".join(f"`{code}`" for code in codes)
    schema = {"allOf": [ref("Error"), {"properties": {"code": {"enum": list(codes)}}}]}
    return json_response(f"{description} Codes: {listed}.", schema)


AUTH_CODES = (
    Code.MISSING_SIGNATURE,
    Code.BAD_SIGNATURE_INPUT,
    Code.BAD_IDENTITY,
    Code.WRONG_AUDIENCE,
    Code.STALE_TIMESTAMP,
    Code.BAD_DIGEST,
    Code.BAD_SIGNATURE,
    Code.REPLAYED_REQUEST,
    Code.BAD_DELEGATION,
    Code.DELEGATION_EXPIRED,
    Code.DEVICE_REVOKED,
)
# Codes of the format errors a strict JSON decoder answers (service/app.py's table).
FORMAT_CODES = (
    Code.BAD_FIELD,
    Code.UNKNOWN_VERSION,
    Code.BAD_FORMAT,
    Code.NON_CANONICAL,
    Code.BAD_LENGTH,
)
NO_SUCH_ENDPOINT = Code.NOT_FOUND  # werkzeug's 404, e.g. a path parameter holding "/"

SHARED_RESPONSES: dict[str, Schema] = {
    "Unauthorized": error(
        f"The request is not signed as {SPEC} section 11 says, or its nonce was seen before;"
        f" or a device signed it, and its `Securecomm-Delegation` ({SESSIONS} section 3.2)"
        " is not a valid delegation of the person's to this device (`bad_delegation`), has"
        " expired (`delegation_expired`), or the person revoked the device at this service"
        " (`device_revoked`).",
        *AUTH_CODES,
    ),
    "TooLarge": error(
        "The body is larger than this service accepts (the relay: `max_envelope_bytes`,"
        " 16 MiB by default, or a payload stream's piece, 4,195,328 bytes, whichever is"
        " larger; a custodian: 1 MiB).",
        Code.TOO_LARGE,
    ),
    "UnsupportedMediaType": error(
        "The body is not `application/json`.", Code.UNSUPPORTED_MEDIA_TYPE
    ),
}

_SIGNED_HEADERS = {
    "SignatureInput": (
        "Signature-Input",
        'sig1=("@method" "@path" "@query" "content-digest");created=<time>;nonce="<32 hex>"'
        ';keyid="<fingerprint>";alg="ed25519";tag="securecomm/v1/<audience>"',
    ),
    "Signature": ("Signature", "sig1=:<base64 of the 64-byte Ed25519 signature>:"),
    "ContentDigest": ("Content-Digest", "sha-256=:<base64 of SHA-256(body)>: (also for no body)"),
    "SecurecommIdentity": (
        "Securecomm-Identity",
        "base64 of the canonical JSON of the signer's public identity",
    ),
}
_DELEGATION = (
    "A device acting for a person signs with its own key (its fingerprint in `keyid`, its"
    " identity in `Securecomm-Identity`) and adds a fifth header, optional and not a"
    " security scheme: `Securecomm-Delegation: <base64 of the canonical JSON of the"
    " person's signed delegation (the Delegation schema), at most 4,096 characters>`. The"
    " service then takes the request as the person's while the delegation is the"
    " person's, for this device, unexpired and not revoked at this service; what outlasts"
    f" a request (adding a device, a revocation) takes the person's own key. See {SESSIONS}"
    " section 3.2."
)
SECURITY_SCHEMES: dict[str, Schema] = {
    scheme: {
        "type": "apiKey",
        "in": "header",
        "name": header,
        "description": (
            f"`{header}: {value}`. One of the four headers of a signed request: an RFC 9421"
            " HTTP message signature by the caller's Ed25519 key over the method, path, query,"
            " Content-Digest, a time (within 300 s), a fresh nonce and the audience (`relay`"
            f" or the custodian's name). All four are required together; see {SPEC} section 11."
            f" {_DELEGATION}"
        ),
    }
    for scheme, (header, value) in _SIGNED_HEADERS.items()
}
SIGNED: list[dict[str, list[str]]] = [{scheme: [] for scheme in SECURITY_SCHEMES}]


# Operations.


def path_parameter(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def operation(
    operation_id: str,
    description: str,
    responses: dict[str, Schema],
    *,
    signed: bool,
    body: Schema | None = None,
    body_type: str = "application/json",
    parameters: list[Schema] | None = None,
) -> Schema:
    """One operation. A signed one may answer 401, and 413 (its body is read to check the
    digest); one with a body (of ``body_type``) may answer 413 and 415. A response given
    for one of those statuses is used instead of the shared one."""
    answers = dict(responses)
    if signed:
        answers.setdefault("401", ref("Unauthorized", "responses"))
    if signed or body is not None:
        answers.setdefault("413", ref("TooLarge", "responses"))
    result: Schema = {
        "operationId": operation_id,
        "summary": description.split(". ")[0].rstrip("."),
        "description": description,
        "security": SIGNED if signed else [],
    }
    if parameters:
        result["parameters"] = parameters
    if body is not None:
        answers.setdefault("415", ref("UnsupportedMediaType", "responses"))
        result["requestBody"] = {
            "required": True,
            "content": {body_type: {"schema": body}},
        }
    result["responses"] = dict(sorted(answers.items()))
    return result


def health_path(service: str) -> Schema:
    return {
        "get": operation(
            "health",
            f"Whether the {service} is up and its database answers. Anyone may call it.",
            {"200": json_response("Up.", ref("Health"))},
            signed=False,
        )
    }


def revocation_path() -> Schema:
    """The revocation of a device, which the relay and every custodian take alike."""
    return {
        "post": operation(
            "revokeDevice",
            "Hold a person's revocation of a device: from now on this service refuses the"
            f" device's requests (401 `device_revoked`; {SESSIONS} section 3.3). Only the"
            " person who signed the revocation may post it, by their own key, not a device's;"
            " posting it again changes nothing.",
            {
                "200": json_response(
                    "Held already (this device's revocation by this person).",
                    ref("RevocationReceipt"),
                ),
                "201": json_response("Held; the signed receipt.", ref("RevocationReceipt")),
                "400": error(
                    "The body is not valid, or the revocation's signature does not verify.",
                    Code.BAD_JSON,
                    *FORMAT_CODES,
                    Code.BAD_SIGNATURE,
                ),
                "403": error(
                    "A device signed the request, or the revocation is not the caller's.",
                    Code.NOT_YOUR_KEY,
                ),
            },
            signed=True,
            body=ref("RevocationRequest"),
        )
    }


OPENAPI_PATH = {
    "get": operation(
        "openapi",
        "This document. Anyone may call it.",
        {"200": json_response("The OpenAPI 3.1 document.", {"type": "object"})},
        signed=False,
    )
}


def build_document(
    title: str, description: str, paths: dict[str, Schema], schemas: dict[str, Schema]
) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1", "description": description},
        "paths": paths,
        "components": {
            "schemas": {**SHARED_SCHEMAS, **schemas},
            "responses": SHARED_RESPONSES,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }

"""The relay's OpenAPI 3.1 document, and the building blocks the custodian's document shares.

Served as ``GET /openapi.json``. The schemas say what the code accepts and
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
from ..envelope import MAX_RECIPIENTS

__all__ = [
    "DIGEST",
    "DOCUMENT",
    "FORMAT_CODES",
    "INDEX",
    "NO_SUCH_ENDPOINT",
    "OPENAPI_PATH",
    "SIGNATURE",
    "SIGNED",
    "TIME",
    "V1",
    "Schema",
    "array",
    "base64_string",
    "build_document",
    "error",
    "health_path",
    "hex_string",
    "json_response",
    "obj",
    "operation",
    "path_parameter",
    "ref",
]

Schema = dict[str, Any]

SPEC = "spec/format-v1.md"
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
        f"The request is not signed as {SPEC} section 11 says, or its nonce was seen before.",
        *AUTH_CODES,
    ),
    "TooLarge": error(
        "The body is larger than this service accepts (the relay: `max_envelope_bytes`,"
        " 16 MiB by default; a custodian: 1 MiB).",
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
    parameters: list[Schema] | None = None,
) -> Schema:
    """One operation. A signed one may answer 401, and 413 (its body is read to check the
    digest); one with a JSON body may answer 413 and 415."""
    answers = dict(responses)
    if signed:
        answers["401"] = ref("Unauthorized", "responses")
    if signed or body is not None:
        answers["413"] = ref("TooLarge", "responses")
    result: Schema = {
        "operationId": operation_id,
        "summary": description.split(". ")[0].rstrip("."),
        "description": description,
        "security": SIGNED if signed else [],
    }
    if parameters:
        result["parameters"] = parameters
    if body is not None:
        answers["415"] = ref("UnsupportedMediaType", "responses")
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
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


# The relay.

_RELAY_SCHEMAS: dict[str, Schema] = {
    "WebConfig": obj(
        {
            "v": const(1),
            "n": integer(2, 255, "Number of custodians."),
            "threshold": integer(2, 255, "Shares needed to rebuild a key."),
            "custodians": array(
                obj(
                    {
                        "name": ref("Name"),
                        "url": {"type": "string", "description": "Where a browser reaches it."},
                        "fingerprint": {"oneOf": [ref("Fingerprint"), {"type": "null"}]},
                    },
                    "One custodian, in share order.",
                ),
                2,
                255,
            ),
            "max_envelope_bytes": integer(1, 2**40, "The largest envelope the relay takes."),
            "origins": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The page origins the custodians answer (CORS).",
            },
        },
        "The web client's configuration.",
    ),
    "CustodianSlot": obj(
        {
            "name": ref("Name"),
            "fingerprint": {
                "oneOf": [ref("Fingerprint"), {"type": "null"}],
                "description": "null for a share held outside any custodian service.",
            },
            "share_digest": DIGEST,
        },
        "A custodian named in the header; the slot at position p holds share index p + 1.",
    ),
    "Header": obj(
        {
            "v": V1,
            "id": ref("MessageId"),
            "sender": ref("PublicIdentity"),
            "recipients": array(ref("Recipient"), 1, MAX_RECIPIENTS),
            "created": TIME,
            "threshold": integer(2, 255, "Shares needed (t), at most n."),
            "n": integer(2, 255, "Number of custodians."),
            "custodians": array(ref("CustodianSlot"), 2, 255),
            "policy": ref("Policy"),
            "key_commitment": DIGEST,
        },
        f"The signed, authenticated header ({SPEC} section 7.2): exactly n custodians,"
        " names unique among recipients and among custodians.",
    ),
    "Envelope": obj(
        {
            "v": V1,
            "header": ref("Header"),
            "nonce": base64_string(12, "AES-GCM nonce."),
            "ciphertext": base64_string(description="AES-GCM ciphertext without the tag."),
            "tag": base64_string(16, "AES-GCM tag."),
            "receipts": array(ref("Receipt"), 0, 255),
            "signature": SIGNATURE,
        },
        f"A sealed message ({SPEC} section 7), sent and stored as canonical JSON bytes"
        " (section 1.4). The relay takes only envelopes whose custodians are services:"
        " every slot has a fingerprint and there is one receipt per slot.",
    ),
    "Stored": obj(
        {
            "id": ref("MessageId"),
            "digest": hex_string(64, "SHA-256 of the envelope bytes the relay stored."),
            "size": {"type": "integer", "minimum": 0},
            "stored_at": TIME,
        },
        "The relay's copy of an envelope: compare `digest` with your own.",
    ),
    "InboxPage": obj(
        {
            "messages": {
                "type": "array",
                "maxItems": 100,
                "items": obj(
                    {
                        "id": ref("MessageId"),
                        "sender": ref("Recipient"),
                        "created": TIME,
                        "stored_at": TIME,
                        "size": {"type": "integer", "minimum": 0},
                        "digest": hex_string(64, "SHA-256 of the stored envelope."),
                        "policy": {
                            "oneOf": [ref("Policy"), {"type": "null"}],
                            "description": "The release policy in the envelope's header (what"
                            " the sender signed; the custodians enforce it); null for a"
                            " message stored before the relay kept it.",
                        },
                    },
                    "One envelope addressed to the caller.",
                ),
            },
            "next": {
                "type": ["string", "null"],
                "pattern": "^[0-9]{1,12}:[0-9a-f]{32}$",
                "description": "The `after` cursor of the next page; null on the last page.",
            },
        },
        "A page of the caller's inbox, oldest first.",
    ),
    "DirectoryEntry": obj(
        {"identity": ref("PublicIdentity"), "fingerprint": ref("Fingerprint"), "updated_at": TIME},
        "The public identity registered under a name.",
    ),
    "Registration": obj(
        {
            "v": V1,
            "identity": ref("PublicIdentity"),
            "endorsement": base64_string(
                64,
                "Needed only to replace a registered key: the registered key's Ed25519"
                ' signature, purpose `directory-rotation`, over {"v": 1, "name",'
                ' "new_fingerprint"}.',
            ),
        },
        "Register or replace the identity under a name.",
        optional=("endorsement",),
    ),
    "Registered": obj(
        {"name": ref("Name"), "fingerprint": ref("Fingerprint")},
        "The name and the fingerprint now registered under it.",
    ),
}

_MESSAGE_ID_PARAMETER = path_parameter("message_id", ref("MessageId"), "The message id.")
_NAME_PARAMETER = path_parameter("name", ref("Name"), "The directory name.")
_BAD_ID = error("The message id is not 32 lowercase hex digits.", Code.BAD_FIELD)
_NOT_YOURS = error(
    "No such message for the caller (the same answer whether it does not exist or is not"
    " the caller's).",
    Code.NOT_FOUND,
)
_STORE = operation(
    "storeEnvelope",
    "Store a sealed envelope and index it for its recipients. Anyone may post: the relay"
    " checks the format and the sender's signature inside the envelope, not who sends it.",
    {
        "200": json_response("The same envelope was already stored.", ref("Stored")),
        "201": json_response(
            "Stored.",
            ref("Stored"),
            headers={"Location": {"schema": {"type": "string"}, "description": "Its URL."}},
        ),
        "400": error(
            "Not a canonical, well-formed, correctly signed envelope whose custodians are"
            " services.",
            *FORMAT_CODES,
            Code.BAD_SIGNATURE,
            Code.NO_CUSTODIANS,
        ),
        "403": error(
            "The sender's name is registered in the directory with another key.",
            Code.SENDER_KEY_MISMATCH,
        ),
        "409": error("Another envelope with this id is stored.", Code.DUPLICATE_ID),
    },
    signed=False,
    body=ref("Envelope"),
)

_RELAY_PATHS: dict[str, Schema] = {
    "/api/v1/messages": {"post": _STORE},
    "/api/relay": {"post": {**_STORE, "operationId": "storeEnvelopeAlias", "deprecated": True}},
    "/api/v1/messages/{message_id}": {
        "parameters": [_MESSAGE_ID_PARAMETER],
        "get": operation(
            "getEnvelope",
            "Fetch an envelope, as the exact bytes stored. Only its sender or a listed"
            " recipient may, by the key that signs the request.",
            {
                "200": json_response("The envelope.", ref("Envelope")),
                "400": _BAD_ID,
                "404": _NOT_YOURS,
            },
            signed=True,
        ),
        "delete": operation(
            "deleteEnvelope",
            "The sender deletes an envelope for everyone; a recipient removes it from their"
            " inbox (the envelope goes when no recipient is left).",
            {"204": {"description": "Deleted."}, "400": _BAD_ID, "404": _NOT_YOURS},
            signed=True,
        ),
    },
    "/api/v1/inbox": {
        "get": operation(
            "getInbox",
            "List the envelopes addressed to the caller's key, a page at a time. Any signed"
            " caller may; each sees only their own inbox.",
            {
                "200": json_response("A page.", ref("InboxPage")),
                "400": error("`limit` or `after` is not valid.", Code.BAD_FIELD),
            },
            signed=True,
            parameters=[
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                    "description": "Page size.",
                },
                {
                    "name": "after",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,12}:[0-9a-f]{32}$"},
                    "description": "The `next` cursor of the previous page.",
                },
            ],
        )
    },
    "/api/v1/directory/{name}": {
        "parameters": [_NAME_PARAMETER],
        "get": operation(
            "getDirectoryEntry",
            "Look up the public identity registered under a name. Anyone may; compare the"
            " fingerprint out of band before trusting it.",
            {
                "200": json_response("The entry.", ref("DirectoryEntry")),
                "400": error("Not a valid name.", Code.BAD_FIELD),
                "404": error("No entry under this name.", Code.NOT_FOUND),
            },
            signed=False,
        ),
        "put": operation(
            "putDirectoryEntry",
            "Register the caller's own identity under its name, or replace the registered key"
            " with an endorsement signed by it. Only the key being registered may call it.",
            {
                "200": json_response("Already registered, or replaced.", ref("Registered")),
                "201": json_response("Registered.", ref("Registered")),
                "400": error(
                    "The body or the name is not valid, or the identity's name is not the path's.",
                    Code.BAD_JSON,
                    *FORMAT_CODES,
                ),
                "403": error(
                    "The identity is not the key that signed the request.", Code.NOT_YOUR_KEY
                ),
                "404": error("No such endpoint.", NO_SUCH_ENDPOINT),
                "409": error(
                    "Another key is registered and the endorsement is missing or wrong.",
                    Code.KEY_CHANGED,
                ),
            },
            signed=True,
            body=ref("Registration"),
        ),
    },
    "/healthz": health_path("relay"),
    "/openapi.json": OPENAPI_PATH,
    "/": {
        "get": operation(
            "index",
            "The web client: a page that encrypts, splits and reads in the browser. Anyone may"
            " call it.",
            {
                "200": {
                    "description": "HTML.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
            signed=False,
        )
    },
    "/web/{filename}": {
        "parameters": [
            path_parameter(
                "filename", {"type": "string"}, "A file of the web client, e.g. js/app.js."
            )
        ],
        "get": operation(
            "webFile",
            "One of the web client's files (its modules and style sheet). Anyone may call it.",
            {
                "200": {
                    "description": "The file.",
                    "content": {
                        kind: {"schema": {"type": "string"}}
                        for kind in ("text/javascript", "text/css", "text/html")
                    },
                },
                "404": error("No such file.", Code.NOT_FOUND),
            },
            signed=False,
        ),
    },
    "/api/v1/web-config": {
        "get": operation(
            "getWebConfig",
            "What the web client needs: the custodians, where a browser reaches them, their"
            " pinned fingerprints where the relay's home has them, and the threshold. Anyone"
            " may call it.",
            {"200": json_response("The configuration.", ref("WebConfig"))},
            signed=False,
        )
    },
}

DOCUMENT: dict[str, Any] = build_document(
    "securecomm relay",
    "Stores sealed envelopes (ciphertext, custody receipts, signatures) and a directory of"
    " public keys; never a message key or a key share. Signed requests: see the security"
    f" schemes and {SPEC} section 11.",
    _RELAY_PATHS,
    _RELAY_SCHEMAS,
)

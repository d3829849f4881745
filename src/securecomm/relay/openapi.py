"""The relay's OpenAPI 3.1 document, served as ``GET /openapi.json``; built from the
pieces in :mod:`securecomm.service.openapi` that the custodian's document shares."""

from __future__ import annotations

from typing import Any

from ..codes import Code
from ..config import MAX_PIECE_BYTES
from ..envelope import MAX_RECIPIENTS
from ..httpsig import ANSWER_HEADER, ANSWER_NONCE_HEADER
from ..service.openapi import (
    DIGEST,
    FORMAT_CODES,
    NO_SUCH_ENDPOINT,
    OPENAPI_PATH,
    SESSIONS,
    SIGNATURE,
    SPEC,
    TIME,
    V1,
    Schema,
    array,
    base64_string,
    build_document,
    const,
    error,
    health_path,
    hex_string,
    integer,
    json_response,
    obj,
    operation,
    path_parameter,
    ref,
    revocation_path,
)
from ..stream import SEALED_CHUNK_BYTES
from .devices import SEALED_KEY_BYTES

__all__ = ["DOCUMENT"]

SPEC_V2 = "spec/format-v2.md"
#: The longest stream a length may say (the format's bound, whatever a relay takes).
_STREAM_MAX = 2**53 - 1


# The relay.

# A header's optional member: the plaintext is the file's name, then the message.
_NAMED: Schema = {
    "const": "named",
    "description": f"Present when the message carries its file name ({SPEC} section 7.10).",
}
_HEADER: dict[str, Schema] = {
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
}

_SEALED_KEY = base64_string(
    SEALED_KEY_BYTES,
    "The person's X25519 private key, HPKE-sealed to the device, purpose `device-key`"
    f" ({SESSIONS} section 3.4).",
)

_RELAY_SCHEMAS: dict[str, Schema] = {
    "WebConfig": obj(
        {
            "v": const(1),
            "relay": {
                **ref("PublicIdentity"),
                "description": "The relay's own key, which signs every answer under /api/: the"
                " page pins it and checks each answer with it.",
            },
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
            "max_payload_bytes": integer(
                1, _STREAM_MAX, "The longest payload stream (format v2) the relay takes."
            ),
            "max_piece_bytes": integer(
                1, 2**40, "The most one piece of a stream's upload or download holds."
            ),
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
        {**_HEADER, "payload": _NAMED},
        f"The signed, authenticated header ({SPEC} section 7.2): exactly n custodians,"
        " names unique among recipients and among custodians.",
        optional=("payload",),
    ),
    "StreamHeader": obj(
        {
            **_HEADER,
            "v": const(2),
            "payload": _NAMED,
            "length": integer(
                0, _STREAM_MAX, "The length of the plaintext the stream seals, in bytes."
            ),
        },
        f"A version 2 header ({SPEC_V2} section 4.1): version 1's, with the plaintext's length.",
        optional=("payload",),
    ),
    "StreamEnvelope": obj(
        {
            "v": const(2),
            "header": ref("StreamHeader"),
            "payload": obj(
                {
                    "digest": base64_string(32, "SHA-256 of the stream."),
                    "length": integer(16, _STREAM_MAX, "The stream's length in bytes."),
                },
                "The payload stream, uploaded apart (/api/v1/uploads/{message_id}).",
            ),
            "receipts": array(ref("Receipt"), 0, 255),
            "signature": SIGNATURE,
        },
        f"A version 2 envelope document ({SPEC_V2} section 4.2): the ciphertext is a stream"
        " of sealed chunks the sender uploaded before, which the relay stores with it only"
        " if it is whole and is the stream the document names.",
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
    "UploadRequest": obj(
        {
            "v": const(2),
            "length": integer(
                16,
                _STREAM_MAX,
                f"The stream's length in bytes ({SPEC_V2} section 3.2): every sealed chunk"
                f" {SEALED_CHUNK_BYTES} bytes but the last, 16 to {SEALED_CHUNK_BYTES}.",
            ),
        },
        "Open an upload of a message's payload stream.",
    ),
    "Upload": obj(
        {
            "id": ref("MessageId"),
            "length": integer(16, _STREAM_MAX, "The stream's length in bytes."),
            "received": integer(
                0,
                _STREAM_MAX,
                "How many of its bytes the relay holds, durably: the next piece starts here.",
            ),
        },
        "An open upload.",
    ),
    "OffsetError": obj(
        {
            "code": const(Code.UPLOAD_OFFSET),
            "message": {"type": "string", "description": "For people; may change."},
            "received": integer(0, _STREAM_MAX, "Where the next piece starts."),
        },
        "A piece that does not start where the upload stands; `received` says where.",
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
    "NameFree": obj(
        {"name": ref("Name"), "listed": {"type": "boolean"}},
        "The name may be registered: by any key if it is not listed, else by the key listed.",
    ),
    "DeviceRequest": obj(
        {"v": V1, "delegation": ref("Delegation"), "sealed_key": _SEALED_KEY},
        f"Add a device of the caller's, or renew it ({SESSIONS} section 3.4).",
    ),
    "DeviceAdded": obj(
        {"device": ref("Fingerprint"), "expires": TIME},
        "The device added, and when its delegation expires.",
    ),
    "DeviceList": obj(
        {
            "devices": {
                "type": "array",
                "items": obj(
                    {
                        "delegation": ref("Delegation"),
                        "revocation": {
                            "oneOf": [ref("Revocation"), {"type": "null"}],
                            "description": "The person's revocation of the device, if the"
                            " relay holds one.",
                        },
                    },
                    "One device; a client checks that the person signed both.",
                ),
            }
        },
        "The devices added for a name's registered key, by when each was last added.",
    ),
    "DeviceKey": obj(
        {"delegation": ref("Delegation"), "sealed_key": _SEALED_KEY},
        "What the person added for the device: the device opens the key and checks that it is"
        " the X25519 key of the delegation's person.",
    ),
}

_MESSAGE_ID_PARAMETER = path_parameter("message_id", ref("MessageId"), "The message id.")
_NAME_PARAMETER = path_parameter("name", ref("Name"), "The directory name.")
_DEVICE_PARAMETER = path_parameter(
    "device", ref("Fingerprint"), "The device's fingerprint (its own key's, not the person's)."
)
_BAD_ID = error("The message id is not 32 lowercase hex digits.", Code.BAD_FIELD)
_NOT_YOURS = error(
    "No such message for the caller (the same answer whether it does not exist or is not"
    " the caller's).",
    Code.NOT_FOUND,
)
_STORE = operation(
    "storeEnvelope",
    "Store a sealed envelope and index it for its recipients. Anyone may post: the relay"
    " checks the format and the sender's signature inside the envelope, not who sends it."
    f" A version 2 document is stored with its payload stream ({SPEC_V2} section 5, step"
    " 3): its sender's upload of this id must be whole and be the stream it names.",
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
        "409": error(
            "Another envelope with this id is stored; or, for a version 2 document, its"
            " sender has no upload of this id (`no_upload`), or the upload is not whole, not"
            " the stream the document names, or a stream another message has"
            " (`payload_mismatch`).",
            Code.DUPLICATE_ID,
            Code.NO_UPLOAD,
            Code.PAYLOAD_MISMATCH,
        ),
    },
    signed=False,
    body={"oneOf": [ref("Envelope"), ref("StreamEnvelope")]},
)

_UPLOAD_STATE = "The upload's state: where the next piece starts."
_NO_UPLOAD = error(
    "No upload of this message id by the caller (the same answer whether there is none or"
    " it is another sender's), or no such endpoint.",
    Code.NO_UPLOAD,
    NO_SUCH_ENDPOINT,
)
_RANGE_PARAMETERS = [
    {
        "name": "offset",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": _STREAM_MAX, "default": 0},
        "description": f"Where the range starts: a chunk boundary (a multiple of"
        f" {SEALED_CHUNK_BYTES}) inside the stream.",
    },
    {
        "name": "length",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PIECE_BYTES,
            "default": MAX_PIECE_BYTES,
        },
        "description": "The most bytes to answer; fewer at the stream's end.",
    },
]
_UPLOAD_PATH: dict[str, Any] = {
    "parameters": [_MESSAGE_ID_PARAMETER],
    "put": operation(
        "openUpload",
        f"Open an upload of a message's payload stream ({SPEC_V2} section 5, step 1), before"
        " any share is deposited. The sender opens it, by the key that signs the request;"
        " opening it again with the same length answers where it stands.",
        {
            "200": json_response("Open already, by the caller, with this length.", ref("Upload")),
            "201": json_response(
                "Opened.",
                ref("Upload"),
                headers={"Location": {"schema": {"type": "string"}, "description": "Its URL."}},
            ),
            "400": error(
                'The body is not {"v": 2, "length": L}, or no stream is L bytes long, or the'
                " id is not 32 lowercase hex digits.",
                Code.BAD_JSON,
                Code.BAD_FIELD,
            ),
            "403": error(
                "Signed by a device acting for its person: a device does not send"
                " (spec/sessions.md section 3.2).",
                Code.NOT_YOUR_KEY,
            ),
            "404": error("No such endpoint.", NO_SUCH_ENDPOINT),
            "409": error(
                "A message with this id is stored, another upload of it is open (another"
                " sender's, or the caller's with another length).",
                Code.DUPLICATE_ID,
            ),
            "413": error(
                "The stream is longer than the relay's `max_payload_bytes` (`too_large`), or"
                " would take the sender past its `max_sender_bytes`, its stored messages and"
                " open uploads counted (`quota_exceeded`); or the body is too large.",
                Code.TOO_LARGE,
                Code.QUOTA_EXCEEDED,
            ),
        },
        signed=True,
        body=ref("UploadRequest"),
    ),
    "post": operation(
        "appendPiece",
        f"Append a piece to the caller's upload ({SPEC_V2} section 5, step 2): at most"
        f" {MAX_PIECE_BYTES} bytes (64 sealed chunks), a whole number of sealed chunks"
        f" ({SEALED_CHUNK_BYTES} bytes each) unless it ends the stream, starting where the"
        " upload stands. The piece is on the relay's disk before it answers; one it did not"
        " acknowledge is not counted.",
        {
            "200": json_response(_UPLOAD_STATE, ref("Upload")),
            "400": error(
                "`offset` is missing or not an integer, the piece is empty, ends past the"
                " stream, or is not a whole number of sealed chunks before the stream's end;"
                " or the id is not valid.",
                Code.BAD_FIELD,
                Code.BAD_LENGTH,
            ),
            "403": error(
                "Signed by a device acting for its person: a device does not send"
                " (spec/sessions.md section 3.2).",
                Code.NOT_YOUR_KEY,
            ),
            "404": _NO_UPLOAD,
            "409": json_response(
                "`offset` is not where the upload stands. Codes: `upload_offset`.",
                ref("OffsetError"),
            ),
            "413": error(
                f"The piece is larger than {MAX_PIECE_BYTES} bytes, or than the relay reads.",
                Code.TOO_LARGE,
            ),
            "415": error(
                "The body is not `application/octet-stream`.", Code.UNSUPPORTED_MEDIA_TYPE
            ),
        },
        signed=True,
        body={"type": "string", "contentMediaType": "application/octet-stream"},
        body_type="application/octet-stream",
        parameters=[
            {
                "name": "offset",
                "in": "query",
                "required": True,
                "schema": {"type": "integer", "minimum": 0, "maximum": _STREAM_MAX},
                "description": "Where the piece starts in the stream: the upload's `received`.",
            }
        ],
    ),
    "get": operation(
        "getUpload",
        "Where the caller's upload stands: how a sender learns where to go on.",
        {
            "200": json_response(_UPLOAD_STATE, ref("Upload")),
            "400": _BAD_ID,
            "404": _NO_UPLOAD,
        },
        signed=True,
    ),
    "delete": operation(
        "abandonUpload",
        f"Abandon the caller's upload and what it holds ({SPEC_V2} section 5, step 4). An"
        " upload not appended to for a day is dropped by the relay.",
        {"204": {"description": "Dropped."}, "400": _BAD_ID, "404": _NO_UPLOAD},
        signed=True,
    ),
}

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
    "/api/v1/messages/{message_id}/payload": {
        "parameters": [_MESSAGE_ID_PARAMETER],
        "get": operation(
            "getPayload",
            f"A range of a message's payload stream ({SPEC_V2} section 5, step 5), from a chunk"
            " boundary, as the exact bytes stored. Only its sender or a listed recipient may,"
            " by the key that signs the request. The range is in the query, so both the"
            " request's and the answer's signatures cover it.",
            {
                "200": {
                    "description": "The bytes of the stream from `offset`, `length` of them or"
                    " fewer at its end.",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "400": error(
                    "`offset` is not a chunk boundary inside the stream, `length` is out of"
                    " range, or the id is not valid.",
                    Code.BAD_FIELD,
                ),
                "404": error(
                    "No such message for the caller, or it has no payload stream (a version 1"
                    " message).",
                    Code.NOT_FOUND,
                ),
            },
            signed=True,
            parameters=_RANGE_PARAMETERS,
        ),
    },
    "/api/v1/uploads/{message_id}": _UPLOAD_PATH,
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
                    "The identity is not the key that signed the request; the name is the"
                    " relay's or a custodian's; or, for a new entry, the name ends in '.', '-'"
                    " or '_', or reads as another name registered or reserved (but for those,"
                    " or for look-alikes such as 0 for o; spec section 14.6).",
                    Code.NOT_YOUR_KEY,
                    Code.RESERVED_NAME,
                    Code.LOOKALIKE_NAME,
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
    "/api/v1/names/{name}": {
        "parameters": [_NAME_PARAMETER],
        "get": operation(
            "getNameFree",
            "Whether a person may register a name, by the rules of a new directory entry"
            " (spec section 14.6): ask before making a key. Anyone may.",
            {
                "200": json_response("The name may be registered.", ref("NameFree")),
                "400": error("Not a valid name.", Code.BAD_FIELD),
                "403": error(
                    "The name is the relay's or a custodian's, ends in '.', '-' or '_', or"
                    " reads as another name registered or reserved (but for those, or for"
                    " look-alikes such as 0 for o).",
                    Code.RESERVED_NAME,
                    Code.LOOKALIKE_NAME,
                ),
            },
            signed=False,
        ),
    },
    "/api/v1/directory/{name}/devices": {
        "parameters": [_NAME_PARAMETER],
        "get": operation(
            "listDevices",
            f"The devices added for the key registered under a name ({SESSIONS} section 3.4),"
            " each with its revocation if the relay holds one; not their sealed keys. Anyone"
            " may; check that every delegation and revocation is signed by the key you pinned"
            " for the name.",
            {
                "200": json_response("The devices.", ref("DeviceList")),
                "400": error("Not a valid name.", Code.BAD_FIELD),
                "404": error("No entry under this name, or no such endpoint.", Code.NOT_FOUND),
            },
            signed=False,
        ),
    },
    "/api/v1/directory/{name}/devices/{device}": {
        "parameters": [_NAME_PARAMETER, _DEVICE_PARAMETER],
        "put": operation(
            "putDevice",
            f"Add a device that acts for the caller ({SESSIONS} section 3.4): its delegation,"
            " and the caller's X25519 key sealed to it for the device to fetch; adding it again"
            " replaces both (a renewal). Only the key registered under the name may, by itself,"
            " not a device's.",
            {
                "200": json_response("Renewed.", ref("DeviceAdded")),
                "201": json_response("Added.", ref("DeviceAdded")),
                "400": error(
                    "The body, the name or the device's fingerprint is not valid; the"
                    " delegation's signature does not verify, it is for another device than the"
                    " path's, or it has expired already.",
                    Code.BAD_JSON,
                    *FORMAT_CODES,
                    Code.BAD_SIGNATURE,
                ),
                "403": error(
                    "A device signed the request, the delegation is not the caller's (its"
                    " person's key, and name: the path's), or the name is registered with"
                    " another key.",
                    Code.NOT_YOUR_KEY,
                ),
                "404": error("No entry under this name, or no such endpoint.", Code.NOT_FOUND),
                "409": error(
                    "The caller revoked this device; a revoked key stays revoked.",
                    Code.DEVICE_REVOKED,
                ),
            },
            signed=True,
            body=ref("DeviceRequest"),
        ),
    },
    "/api/v1/directory/{name}/devices/{device}/key": {
        "parameters": [_NAME_PARAMETER, _DEVICE_PARAMETER],
        "get": operation(
            "getDeviceKey",
            f"What the person added for a device ({SESSIONS} section 3.4): its delegation and"
            " the person's X25519 key sealed to it. Only that device may, by its own key, with"
            " or without its delegation; while the delegation is unexpired and unrevoked.",
            {
                "200": json_response("The delegation and the sealed key.", ref("DeviceKey")),
                "400": error("The name or the device's fingerprint is not valid.", Code.BAD_FIELD),
                "403": error(
                    "The request is not signed by this device's key (`not_your_key`), the"
                    " person revoked the device (`device_revoked`), or its delegation expired"
                    " (`delegation_expired`); with the delegation in the request, the last two"
                    " are a 401.",
                    Code.NOT_YOUR_KEY,
                    Code.DEVICE_REVOKED,
                    Code.DELEGATION_EXPIRED,
                ),
                "404": error(
                    "No entry under this name, the person has not added this device, or no"
                    " such endpoint.",
                    Code.NOT_FOUND,
                ),
            },
            signed=True,
        ),
    },
    "/api/v1/revocations": revocation_path(),
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
    "/api/v1/network": {
        "get": operation(
            "getNetwork",
            "The network file the relay was given (its home's network.json), byte for byte:"
            f" the relay's and every custodian's signed card and the threshold ({SPEC}"
            " section 14). A client compares it with the keys it pinned. Anyone may call it.",
            {
                "200": json_response(
                    "The network file.",
                    {
                        "type": "object",
                        "required": ["v", "relay", "custodians", "threshold"],
                        "properties": {
                            "v": const(1),
                            "relay": {"type": "object"},
                            "custodians": {"type": "array", "items": {"type": "object"}},
                            "threshold": integer(2, 255, "Shares needed (t)."),
                        },
                        "additionalProperties": False,
                    },
                ),
                "404": error("This relay was given no network file.", Code.NOT_FOUND),
            },
            signed=False,
        )
    },
}

# Signed answers (spec section 11.4): a header on every answer under /api/, and the
# challenge an unsigned request sends for its answer to be bound to it.

_SIGNED_ANSWERS = "/api/"
_ANSWER_SIGNATURE: Schema = {
    "description": "The relay's signature of this answer, whatever its status, for the"
    " request it answers: base64 of the canonical JSON of {v, signer, method, path, query,"
    " nonce, caller, status, body_digest, time, signature}, Ed25519 by the relay's key,"
    f" purpose `answer` ({SPEC} section 11.4). A client refuses an answer without it, by"
    " another key, or for another request (nonce, method, path, query, caller), status or"
    " body.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9+/]+={0,2}$"},
}
_ANSWER_NONCE: Schema = {
    "name": ANSWER_NONCE_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "16 fresh random bytes in hex, chosen by the client: the signed answer"
    " names it as its `nonce`, so it cannot be replayed onto another request. A client MUST"
    " send it on an unsigned request (a signed one's own nonce serves); the relay ignores a"
    " malformed one.",
}


def _with_signature(response: Schema) -> Schema:
    if "$ref" in response:
        return response  # a shared response: the components carry the header
    headers = {**response.get("headers", {}), ANSWER_HEADER: ref("AnswerSignature", "headers")}
    return {**response, "headers": headers}


def _signed(operation: Schema) -> Schema:
    answers = {status: _with_signature(r) for status, r in operation["responses"].items()}
    signed = {**operation, "responses": answers}
    if not operation["security"]:
        parameters = [*operation.get("parameters", []), ref("AnswerNonce", "parameters")]
        signed["parameters"] = parameters
    return signed


def _answers_signed(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the answer signature on every answer under /api/."""
    paths = {
        path: (
            {key: value if key == "parameters" else _signed(value) for key, value in item.items()}
            if path.startswith(_SIGNED_ANSWERS)
            else item
        )
        for path, item in document["paths"].items()
    }
    components = document["components"]
    return {
        **document,
        "paths": paths,
        "components": {
            **components,
            # Every shared response is one of an /api/ operation's.
            "responses": {
                name: {
                    **response,
                    "headers": {ANSWER_HEADER: ref("AnswerSignature", "headers")},
                }
                for name, response in components["responses"].items()
            },
            "headers": {"AnswerSignature": _ANSWER_SIGNATURE},
            "parameters": {"AnswerNonce": _ANSWER_NONCE},
        },
    }


DOCUMENT: dict[str, Any] = _answers_signed(
    build_document(
        "securecomm relay",
        "Stores sealed envelopes (ciphertext, custody receipts, signatures) and a directory of"
        " public keys and of the devices that act for them; never a message key or a key"
        " share. Signed requests: see the security"
        f" schemes and {SPEC} section 11. Every answer under /api/ is signed by the relay for"
        f" the request it answers: the `{ANSWER_HEADER}` header, {SPEC} section 11.4.",
        _RELAY_PATHS,
        _RELAY_SCHEMAS,
    )
)

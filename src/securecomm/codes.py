"""Every error code a service answers, once: the stable ``code`` of a JSON error body
(and the two a client adds of its own).

Clients branch on these, the OpenAPI documents list them per status, and spec
§11.3 and §12 name them; a new code is added here first.
"""

from __future__ import annotations

import enum

__all__ = ["Code"]


class Code(enum.StrEnum):
    # A signed request refused (spec §11.3): 401.
    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE_INPUT = "bad_signature_input"
    BAD_IDENTITY = "bad_identity"
    WRONG_AUDIENCE = "wrong_audience"
    STALE_TIMESTAMP = "stale_timestamp"
    BAD_DIGEST = "bad_digest"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED_REQUEST = "replayed_request"
    # ... signed by a device (spec/sessions.md section 3): 401.
    BAD_DELEGATION = "bad_delegation"
    DELEGATION_EXPIRED = "delegation_expired"
    DEVICE_REVOKED = "device_revoked"

    # A body that does not follow the format: 400.
    BAD_REQUEST = "bad_request"
    BAD_JSON = "bad_json"
    BAD_FIELD = "bad_field"
    BAD_FORMAT = "bad_format"
    BAD_LENGTH = "bad_length"
    NON_CANONICAL = "non_canonical"
    UNKNOWN_VERSION = "unknown_version"
    BAD_SHARE = "bad_share"
    BAD_SEAL = "bad_seal"
    DIGEST_MISMATCH = "digest_mismatch"
    NO_CUSTODIANS = "no_custodians"

    # HTTP itself.
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    LENGTH_REQUIRED = "length_required"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    INTERNAL_ERROR = "internal_error"
    HTTP_ERROR = "http_error"

    # The relay's store and directory.
    SENDER_KEY_MISMATCH = "sender_key_mismatch"
    DUPLICATE_ID = "duplicate_id"
    KEY_CHANGED = "key_changed"
    NOT_YOUR_KEY = "not_your_key"
    RESERVED_NAME = "reserved_name"
    LOOKALIKE_NAME = "lookalike_name"

    # The relay's payload streams (spec/format-v2.md section 5).
    UPLOAD_OFFSET = "upload_offset"
    QUOTA_EXCEEDED = "quota_exceeded"
    PAYLOAD_MISMATCH = "payload_mismatch"
    NO_UPLOAD = "no_upload"

    # A custodian's deposits and releases (spec §12).
    DUPLICATE_DEPOSIT = "duplicate_deposit"
    NO_DEPOSIT = "no_deposit"
    DESTROYED = "destroyed"
    NOT_RECIPIENT = "not_recipient"
    FORBIDDEN = "forbidden"
    TOO_EARLY = "too_early"
    EXPIRED = "expired"
    USED_UP = "used_up"
    DENIED = "denied"
    ALREADY_RELEASED = "already_released"
    WITHDRAWN = "withdrawn"
    NO_RELEASE = "no_release"
    NOT_OPERATOR = "not_operator"
    NOT_PENDING = "not_pending"

    # What a client reports of a service, never sent by one: no answer at all, and a
    # release that waits for the operator (202).
    UNREACHABLE = "unreachable"
    TLS_REFUSED = "tls_refused"
    PENDING = "pending"

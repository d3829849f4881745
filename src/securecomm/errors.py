"""The one tree of exceptions that securecomm raises.

Every message names the layer and, where there is one, the offending share
or field, with what was expected against what was found. No message ever
carries secret bytes: keys, shares, plaintext or passphrases.

    SecureCommError
    ├── ParameterError          a caller passed an impossible argument
    ├── FormatError             bytes or JSON that do not follow spec/format-v1.md
    │   ├── UnknownVersionError
    │   ├── NonCanonicalError
    │   ├── LengthError
    │   └── FieldError          a missing, extra or ill-typed field
    ├── ShareError              a share, or a set of shares, that cannot be combined
    │   ├── ChecksumError
    │   ├── ShareIndexError     index 0, or out of range
    │   ├── DuplicateShareError
    │   ├── RaggedSharesError
    │   ├── MixedSplitError
    │   ├── InsufficientSharesError
    │   ├── InconsistentSharesError  more than t shares that disagree
    │   └── ShareDigestError    a share that does not match its signed digest
    ├── DecryptionError         opaque: wrong key and tampered data look the same
    │   ├── KeyCommitmentError
    │   └── StreamError         a payload stream (format v2) that is not the one sealed
    │       ├── StreamChunkError      a chunk that opens nowhere: altered, or not this message's
    │       ├── StreamTruncatedError  it ends before its final chunk
    │       ├── StreamExtendedError   more after its final chunk
    │       ├── StreamDuplicateError  a chunk seen before, again
    │       └── StreamReorderedError  a chunk out of its place (one before it missing or moved)
    ├── SignatureError
    │   ├── RequestAuthError    a signed HTTP request that is refused (code says why)
    │   │   └── ReplayError
    │   ├── DelegationExpiredError  a device's delegation past its expiry
    │   └── AnswerSignatureError  a service's answer not signed by its pinned key for this request
    ├── PolicyError             a rule forbids the operation
    │   └── NotRecipientError
    ├── QuorumError             fewer than t good shares could be collected
    ├── DeviceCannotSignError   a device asked to sign what only its person's key signs
    ├── IdentityError           a key file that cannot be read or used
    │   └── KeyChangedError     a pinned key that is not the one presented
    ├── ServiceError            a relay or custodian answered with an error
    └── InterruptedOperationError  stopped on request (Ctrl-C, SIGTERM); says what was undone
"""

from __future__ import annotations

from .codes import Code

__all__ = [
    "AnswerSignatureError",
    "ChecksumError",
    "DecryptionError",
    "DelegationExpiredError",
    "DeviceCannotSignError",
    "DuplicateShareError",
    "FieldError",
    "FormatError",
    "IdentityError",
    "InconsistentSharesError",
    "InsufficientSharesError",
    "InterruptedOperationError",
    "KeyChangedError",
    "KeyCommitmentError",
    "LengthError",
    "MixedSplitError",
    "NonCanonicalError",
    "NotRecipientError",
    "ParameterError",
    "PolicyError",
    "QuorumError",
    "RaggedSharesError",
    "ReplayError",
    "RequestAuthError",
    "SchemaError",
    "SecureCommError",
    "ServiceError",
    "ShareDigestError",
    "ShareError",
    "ShareIndexError",
    "SignatureError",
    "StorageError",
    "StreamChunkError",
    "StreamDuplicateError",
    "StreamError",
    "StreamExtendedError",
    "StreamReorderedError",
    "StreamTruncatedError",
    "UnknownVersionError",
]


class SecureCommError(Exception):
    """Base of every error securecomm raises on purpose."""

    #: A short hint for a person at a terminal; the CLI prints it after the message.
    hint: str | None = None


class ParameterError(SecureCommError, ValueError):
    """An argument outside what the operation allows (for example t > n)."""


class FormatError(SecureCommError):
    """Input that does not follow the wire format."""


class UnknownVersionError(FormatError):
    """A version byte or ``"v"`` field this implementation does not speak."""


class NonCanonicalError(FormatError):
    """A valid value in an encoding other than the one canonical form."""


class LengthError(FormatError):
    """A field or buffer whose length is not the one the format fixes."""


class FieldError(FormatError):
    """A missing, unexpected or ill-typed field."""


class ShareError(SecureCommError):
    """A share, or a set of shares, that cannot be combined."""


class ChecksumError(ShareError):
    """A share whose checksum does not match its contents."""


class ShareIndexError(ShareError):
    """A share index of 0 (the secret's own x-coordinate) or out of range."""


class DuplicateShareError(ShareError):
    """Two shares with the same index."""


class RaggedSharesError(ShareError):
    """Shares of different lengths."""


class MixedSplitError(ShareError):
    """Shares from different splits (split id or threshold differ)."""


class InsufficientSharesError(ShareError):
    """Fewer shares than the threshold."""


class InconsistentSharesError(ShareError):
    """More than t shares given, and they do not all lie on one polynomial."""


class ShareDigestError(ShareError):
    """A share that does not match the digest the sender signed."""


class DecryptionError(SecureCommError):
    """Decryption failed. Deliberately says nothing about why."""

    def __init__(self, message: str = "decryption failed: wrong key or altered data") -> None:
        super().__init__(message)


class KeyCommitmentError(DecryptionError):
    """The combined key is not the one the sender committed to."""

    def __init__(
        self, message: str = "decryption failed: the combined key is not the committed key"
    ) -> None:
        super().__init__(message)


class StreamError(DecryptionError):
    """A payload stream (spec/format-v2.md section 3) refused; the subclass says how it
    differs from the stream that was sealed, and the message names the chunk, never its
    bytes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class StreamChunkError(StreamError):
    """A chunk that opens at no position near its own: altered, or of another stream."""


class StreamTruncatedError(StreamError):
    """The stream ends before its final chunk."""


class StreamExtendedError(StreamError):
    """Bytes follow the final chunk."""


class StreamDuplicateError(StreamError):
    """A chunk that already came, at its own position, comes again."""


class StreamReorderedError(StreamError):
    """A chunk at a later position than its own came early: one before it is missing or
    was moved."""


class SignatureError(SecureCommError):
    """A signature that does not verify under the expected key."""


class RequestAuthError(SignatureError):
    """A signed HTTP request refused; ``code`` is the stable reason a service answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ReplayError(RequestAuthError):
    """A request whose nonce was already seen inside the clock-skew window."""

    def __init__(self, message: str = "request nonce already used (replay)") -> None:
        super().__init__(Code.REPLAYED_REQUEST, message)


class DelegationExpiredError(SignatureError):
    """A device's delegation whose expiry has passed (spec/sessions.md section 3)."""


class AnswerSignatureError(SignatureError):
    """An answer that its service did not sign, with its pinned key, for the request it
    answers (spec §11.4): missing, malformed, by another key, altered, or for another
    request. Nothing of it may be used, not even an error code it carries."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.reason = message
        self.hint = (
            f"something between you and the {service} altered its answer, or answered in its"
            " place (a proxy that terminates TLS, a replica with another key); nothing was"
            " written"
        )


class PolicyError(SecureCommError):
    """A rule forbids the operation (not a recipient, too early, expired, used up, denied)."""


class NotRecipientError(PolicyError):
    """The reader is not among the message's recipients."""


class QuorumError(SecureCommError):
    """Fewer than t custodians released a good share; the message names each and why.

    A failure of the services, not bad input (unlike :class:`InsufficientSharesError`,
    which is about the shares a caller handed over).
    """


class DeviceCannotSignError(SecureCommError):
    """A device asked for what only its person's own key signs: an envelope."""


class IdentityError(SecureCommError):
    """A key file or public identity that cannot be read or used."""


class KeyChangedError(IdentityError):
    """A party presented another key than the one pinned for its name."""

    def __init__(self, name: str, pinned: str, seen: str, note: str = "") -> None:
        super().__init__(
            f"the key of {name!r} changed: pinned {pinned}, now {seen}"
            + (f"; {note}" if note else "")
        )
        self.name, self.pinned, self.seen = name, pinned, seen
        self.hint = (
            "if the change is expected, compare the new fingerprint out of band, then remove"
            f" {name!r} from known_keys.json"
        )


class StorageError(SecureCommError):
    """A service's database cannot be used: it cannot be reached, or (:class:`SchemaError`)
    its schema is not this code's. Nothing in it was changed."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class SchemaError(StorageError):
    """A service's database is not at the schema this code speaks (older, newer, or not
    securecomm's); nothing in it was changed."""


class ServiceError(SecureCommError):
    """A service answered with an error: HTTP ``status`` and its stable ``code``."""

    def __init__(self, service: str, status: int, code: str, message: str) -> None:
        where = f"HTTP {status}, {code}" if status else code
        super().__init__(f"{service}: {message} ({where})")
        self.reason = f"{message} ({where})"
        self.message = message
        self.service = service
        self.status = status
        self.code = code


class InterruptedOperationError(SecureCommError):
    """An operation stopped on request (Ctrl-C, SIGTERM) after undoing what it had done;
    the message says what that was."""

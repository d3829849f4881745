// The one tree of errors the securecomm browser core throws, mirroring
// src/securecomm/errors.py class by class (names and hierarchy), so a test
// vector's "expect" names the same class in Python and here (spec §8).
// Every error sets `name` to its class name. No message ever carries secret
// bytes: keys, shares, plaintext or passphrases.

export class SecureCommError extends Error {
  constructor(message = "") {
    super(message);
    this.name = new.target.name;
    // A short hint for a person; the UI may show it after the message.
    this.hint = null;
  }
}

// A caller passed an impossible argument (for example t > n).
export class ParameterError extends SecureCommError {}

// Bytes or JSON that do not follow spec/format-v1.md.
export class FormatError extends SecureCommError {}
export class UnknownVersionError extends FormatError {}
export class NonCanonicalError extends FormatError {}
export class LengthError extends FormatError {}
export class FieldError extends FormatError {}

// A share, or a set of shares, that cannot be combined.
export class ShareError extends SecureCommError {}
export class ChecksumError extends ShareError {}
export class ShareIndexError extends ShareError {}
export class DuplicateShareError extends ShareError {}
export class RaggedSharesError extends ShareError {}
export class MixedSplitError extends ShareError {}
export class InsufficientSharesError extends ShareError {}
export class InconsistentSharesError extends ShareError {}
export class ShareDigestError extends ShareError {}

// Opaque: a wrong key and tampered data look the same.
export class DecryptionError extends SecureCommError {
  constructor(message = "decryption failed: wrong key or altered data") {
    super(message);
  }
}

export class KeyCommitmentError extends DecryptionError {
  constructor(message = "decryption failed: the combined key is not the committed key") {
    super(message);
  }
}

// A payload stream (spec/format-v2.md section 3) that is not the one sealed; the
// subclass says how it differs, the message names the chunk, never its bytes.
export class StreamError extends DecryptionError {}
// A chunk that opens at no position near its own: altered, or of another stream.
export class StreamChunkError extends StreamError {}
// The stream ends before its final chunk.
export class StreamTruncatedError extends StreamError {}
// Bytes follow the final chunk.
export class StreamExtendedError extends StreamError {}
// A chunk that already came, at its own position, comes again.
export class StreamDuplicateError extends StreamError {}
// A chunk at a later position than its own came early: one before it is missing or moved.
export class StreamReorderedError extends StreamError {}

export class SignatureError extends SecureCommError {}

// A signed HTTP request refused; `code` is the stable reason a service answers.
export class RequestAuthError extends SignatureError {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class ReplayError extends RequestAuthError {
  constructor(message = "request nonce already used (replay)") {
    super("replayed_request", message);
  }
}

// A device's delegation past its expiry (spec/sessions.md section 3).
export class DelegationExpiredError extends SignatureError {}

// An answer its service did not sign, with its pinned key, for the request it answers
// (spec §11.4): nothing of it may be used, not even an error code it carries.
export class AnswerSignatureError extends SignatureError {
  constructor(service, message) {
    super(`${service}: ${message}`);
    this.service = service;
    this.reason = message;
    this.hint =
      `something between you and the ${service} altered its answer, or answered in its place` +
      " (a proxy that terminates TLS, a replica with another key); nothing was written";
  }
}

// A rule forbids the operation.
export class PolicyError extends SecureCommError {}
export class NotRecipientError extends PolicyError {}

// Fewer than t custodians released a good share.
export class QuorumError extends SecureCommError {}

// A device asked for what only its person's own key signs: an envelope.
export class DeviceCannotSignError extends SecureCommError {}

// A key file or public identity that cannot be read or used.
export class IdentityError extends SecureCommError {}

// A party presented another key than the one pinned for its name.
export class KeyChangedError extends IdentityError {
  constructor(name, pinned, seen, note = "") {
    const change = `the key of '${name}' changed: pinned ${pinned}, now ${seen}`;
    super(note ? `${change}; ${note}` : change);
    this.partyName = name;
    this.pinned = pinned;
    this.seen = seen;
    this.hint =
      "if the change is expected, compare the new fingerprint out of band," +
      ` then remove '${name}' from the known keys`;
  }
}

// An operation stopped on request (the page's Cancel) after undoing what it had done; the
// message says what that was.
export class InterruptedOperationError extends SecureCommError {}

// A relay or custodian answered with an error: HTTP `status` and its stable `code`.
export class ServiceError extends SecureCommError {
  constructor(service, status, code, message) {
    const where = status ? `HTTP ${status}, ${code}` : code;
    super(`${service}: ${message} (${where})`);
    this.reason = `${message} (${where})`;
    this.service = service;
    this.status = status;
    this.code = code;
  }
}

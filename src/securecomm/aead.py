"""AES-256-GCM: the message cipher.

Recipe layer: :func:`seal` picks a fresh random 12-byte nonce on every call
(NIST SP 800-38D section 8.2.2, RBG-based construction), so a caller cannot
reuse one. With random nonces, one key must not seal more than 2^32
messages; securecomm uses a fresh key per message, so this never nears.

Every failure of :func:`open` raises the same :class:`DecryptionError`: a
wrong key, a wrong nonce, altered ciphertext, tag or AAD look alike.

The seed's API, :func:`aes_encrypt` and :func:`aes_decrypt`, is a thin layer
that keeps ciphertext and tag apart.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError, LengthError

__all__ = [
    "KEY_LENGTH_BYTES",
    "NONCE_LENGTH_BYTES",
    "TAG_LENGTH_BYTES",
    "aes_decrypt",
    "aes_encrypt",
    "generate_key",
    "open",
    "seal",
]

KEY_LENGTH_BYTES = 32
NONCE_LENGTH_BYTES = 12
TAG_LENGTH_BYTES = 16


def generate_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_LENGTH_BYTES)


def _key_length_error(key: bytes) -> LengthError:
    return LengthError(f"aead: key length {len(key)} bytes, expected {KEY_LENGTH_BYTES}")


# seal and open are the hot path: the checks are inlined, since one more Python call
# is a few per cent of sealing 1 KiB, and the goal is 95 % of calling pyca directly.


def seal(key: bytes, plaintext: bytes, aad: bytes = b"") -> tuple[bytes, bytes]:
    """Encrypt and authenticate; return ``(nonce, ciphertext_and_tag)``.

    The tag is the last :data:`TAG_LENGTH_BYTES` of the second value. Nothing
    is copied beyond what AES-GCM itself writes.
    """
    nonce = os.urandom(NONCE_LENGTH_BYTES)
    if len(key) != KEY_LENGTH_BYTES:
        raise _key_length_error(key)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, aad)


def open(key: bytes, nonce: bytes, ciphertext_and_tag: bytes, aad: bytes = b"") -> bytes:
    """Check and decrypt what :func:`seal` returned, or raise :class:`DecryptionError`."""
    if len(key) != KEY_LENGTH_BYTES:
        raise _key_length_error(key)
    cipher = AESGCM(key)
    if len(nonce) != NONCE_LENGTH_BYTES:
        raise DecryptionError()
    try:
        return cipher.decrypt(nonce, ciphertext_and_tag, aad)
    except InvalidTag:
        raise DecryptionError() from None


def aes_encrypt(message: bytes | str, key: bytes) -> tuple[bytes, bytes, bytes]:
    """The seed's API: encrypt ``message`` (str as UTF-8); return ``(ciphertext, nonce, tag)``."""
    if isinstance(message, str):
        message = message.encode("utf-8")
    nonce, sealed = seal(key, message)
    return sealed[:-TAG_LENGTH_BYTES], nonce, sealed[-TAG_LENGTH_BYTES:]


def aes_decrypt(ciphertext: bytes, key: bytes, nonce: bytes, tag: bytes) -> bytes:
    """The seed's API: the inverse of :func:`aes_encrypt`. Raises :class:`DecryptionError`."""
    if len(tag) != TAG_LENGTH_BYTES:
        raise DecryptionError()
    return open(key, nonce, ciphertext + tag)

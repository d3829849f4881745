"""Sealing a share to one party: HPKE (RFC 9180) base mode.

Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (kem 0x0020,
kdf 0x0001, aead 0x0002), through pyca ``cryptography``'s
``hazmat.primitives.hpke``. A sealed value is ``enc || ciphertext || tag``:
32 bytes of encapsulated key, then the AEAD output.

pyca's API takes no AAD, so everything a sealed share must be bound to (the
protocol version, the purpose, the message id, the custodian, the recipient)
goes into HPKE's ``info``, which enters the key schedule: opened under any
other context, the seal fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke as _hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from . import canonical
from .errors import DecryptionError, FieldError, IdentityError

__all__ = ["ENC_LENGTH_BYTES", "OVERHEAD_BYTES", "SUITE", "info", "open", "seal"]

SUITE = _hpke.Suite(_hpke.KEM.X25519, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM)
ENC_LENGTH_BYTES = 32
OVERHEAD_BYTES = ENC_LENGTH_BYTES + 16
#: "keep": what a client seals to its own user, such as a send's shares kept to go on later;
#: "device-key": a person's X25519 key sealed to a device of theirs (spec/sessions.md).
_PURPOSES = frozenset({"deposit", "release", "keep", "device-key"})


def info(purpose: str, context: Mapping[str, Any]) -> bytes:
    """The HPKE ``info`` for one use: versioned label, purpose, canonical JSON context."""
    if purpose not in _PURPOSES:
        raise FieldError(f"hpke: unknown purpose {purpose!r}")
    return b"securecomm/v1/hpke/" + purpose.encode("ascii") + b"\n" + canonical.dumps(context)


def seal(plaintext: bytes, recipient: X25519PublicKey, info: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only ``recipient`` can open it, under ``info``."""
    try:
        return SUITE.encrypt(plaintext, recipient, info=info)
    except ValueError:
        # An all-zero or low-order X25519 key gives an all-zero shared secret.
        raise IdentityError("hpke: the recipient's X25519 key is not usable") from None


def open(sealed: bytes, private_key: X25519PrivateKey, info: bytes) -> bytes:
    """Open what :func:`seal` made, or raise :class:`DecryptionError` (opaque)."""
    if len(sealed) < OVERHEAD_BYTES:
        raise DecryptionError()
    try:
        return SUITE.decrypt(sealed, private_key, info=info)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None

"""securecomm: messages whose key no single server holds.

A sender encrypts with AES-256-GCM, splits the key with Shamir's secret
sharing over GF(256), seals each share to a custodian with HPKE, and signs
the envelope with Ed25519. Recipes live in :mod:`securecomm.envelope` and
:mod:`securecomm.shares`; :mod:`securecomm.shamir`, :mod:`securecomm.gf256`,
:mod:`securecomm.aead` and :mod:`securecomm.hpke` are the low-level layers.

The seed's API stays importable from here: :func:`aes_encrypt`,
:func:`aes_decrypt`, :func:`split_secret`, :func:`recover_secret`.
"""

from __future__ import annotations

from .aead import aes_decrypt, aes_encrypt
from .envelope import Draft, Envelope, Policy, Receipt, prepare
from .errors import (
    DecryptionError,
    FormatError,
    IdentityError,
    SecureCommError,
    ShareError,
    SignatureError,
)
from .identity import Identity, PublicIdentity
from .shamir import recover_secret, split_secret
from .shares import Share, combine, split

__version__ = "0.1.0"

__all__ = [
    "DecryptionError",
    "Draft",
    "Envelope",
    "FormatError",
    "Identity",
    "IdentityError",
    "Policy",
    "PublicIdentity",
    "Receipt",
    "SecureCommError",
    "Share",
    "ShareError",
    "SignatureError",
    "__version__",
    "aes_decrypt",
    "aes_encrypt",
    "combine",
    "prepare",
    "recover_secret",
    "split",
    "split_secret",
]

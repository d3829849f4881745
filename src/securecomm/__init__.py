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

import importlib

# Not typing's own TYPE_CHECKING: importing typing (with re and enum) takes 15 ms of a
# command's start, before its entry point catches a Ctrl-C. Type checkers take this name
# as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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

# Imported on first use (PEP 562), so that `securecomm` itself loads in no time: a Ctrl-C
# while the command starts is then caught by its entry point, not shown as a traceback.
_HOMES = {
    "aead": ("aes_decrypt", "aes_encrypt"),
    "envelope": ("Draft", "Envelope", "Policy", "Receipt", "prepare"),
    "errors": (
        "DecryptionError",
        "FormatError",
        "IdentityError",
        "SecureCommError",
        "ShareError",
        "SignatureError",
    ),
    "identity": ("Identity", "PublicIdentity"),
    "shamir": ("recover_secret", "split_secret"),
    "shares": ("Share", "combine", "split"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'securecomm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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

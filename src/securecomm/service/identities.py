"""Service identities: created on first start, loaded after."""

from __future__ import annotations

from pathlib import Path

from .. import canonical
from .._files import write_atomic
from ..identity import Identity, PublicIdentity

__all__ = ["load_or_create", "load_public", "save_public"]


def load_or_create(path: Path, name: str) -> Identity:
    """The identity at ``path``; a new one named ``name`` if there is none yet.

    Service keys are not passphrase-protected: a service starts unattended.
    Protect the data directory instead (it is created 0700).
    """
    if path.exists():
        identity = Identity.load(path)
        if identity.name != name:
            raise SystemExit(f"{path} holds the identity {identity.name!r}, expected {name!r}")
        return identity
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate(name)
    identity.save(path)
    save_public(path.with_suffix(".pub"), identity.public)
    return identity


def save_public(path: Path, identity: PublicIdentity) -> None:
    write_atomic(path, canonical.dumps(identity.to_json()) + b"\n")


def load_public(path: Path) -> PublicIdentity:
    """Read a .pub file: canonical JSON, optionally followed by one newline."""
    data = path.read_bytes()
    if data.endswith(b"\n"):
        data = data[:-1]
    return PublicIdentity.from_json(canonical.loads(data, what=str(path)), field=str(path))

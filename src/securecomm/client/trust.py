"""The keys a client trusts: every party's public key pinned by name in
``HOME/known_keys.json`` (trust on first use, then refused if it changes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import canonical
from .._files import write_atomic
from ..errors import FormatError, IdentityError, KeyChangedError
from ..identity import PublicIdentity

__all__ = ["KNOWN_KEYS_FILE", "KnownKeys"]

KNOWN_KEYS_FILE = "known_keys.json"


@dataclass
class KnownKeys:
    """Pinned public identities by name. A key that changes is refused, never replaced."""

    path: Path
    keys: dict[str, PublicIdentity] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path) -> KnownKeys:
        path = home / KNOWN_KEYS_FILE
        if not path.exists():
            return cls(path)
        try:
            document = canonical.loads(path.read_bytes().rstrip(b"\n"), what=str(path))
        except OSError as exc:
            raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
        if (
            not isinstance(document, dict)
            or document.get("v") != 1
            or not isinstance(document.get("keys"), dict)
        ):
            raise FormatError(f'{path}: expected {{"v": 1, "keys": {{NAME: identity}}}}')
        keys = {
            name: PublicIdentity.from_json(value, field=f"{path}: {name}")
            for name, value in document["keys"].items()
        }
        for name, identity in keys.items():
            if identity.name != name:
                raise FormatError(f"{path}: the key filed as {name!r} is named {identity.name!r}")
        return cls(path, keys)

    def save(self) -> None:
        document = {"v": 1, "keys": {n: k.to_json() for n, k in sorted(self.keys.items())}}
        write_atomic(self.path, canonical.dumps(document) + b"\n")

    def get(self, name: str) -> PublicIdentity | None:
        return self.keys.get(name)

    def require(self, name: str) -> PublicIdentity:
        key = self.keys.get(name)
        if key is None:
            raise IdentityError(
                f"no pinned key for {name!r} in {self.path}",
            )
        return key

    def check(self, seen: PublicIdentity) -> None:
        """Raise :class:`KeyChangedError` if ``seen`` is pinned under its name with other keys."""
        pinned = self.keys.get(seen.name)
        if pinned is not None and pinned.fingerprint != seen.fingerprint:
            raise KeyChangedError(seen.name, pinned.short_fingerprint(), seen.short_fingerprint())

    def pin(self, identity: PublicIdentity) -> bool:
        """Pin a key not seen before; True if it was new. A different key is refused."""
        self.check(identity)
        if identity.name in self.keys:
            return False
        self.keys[identity.name] = identity
        return True

"""The keys a client trusts: every party's public key pinned by name in
``HOME/known_keys.json`` (trust on first use, then refused if it changes), and the
names whose fingerprint the person compared out of band (``verified``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import canonical
from .._files import write_atomic
from ..errors import FormatError, IdentityError, KeyChangedError, SecureCommError
from ..identity import PublicIdentity, fingerprint_matches
from ..network import NETWORK_FILE, Network, joined

__all__ = ["KNOWN_KEYS_FILE", "KnownKeys", "join", "network_keys"]

KNOWN_KEYS_FILE = "known_keys.json"


@dataclass
class KnownKeys:
    """Pinned public identities by name. A key that changes is refused, never replaced."""

    path: Path
    keys: dict[str, PublicIdentity] = field(default_factory=dict)
    #: Names whose pinned fingerprint was compared out of band (``contacts verify``).
    verified: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, home: Path) -> KnownKeys:
        path = home / KNOWN_KEYS_FILE
        if not path.exists():
            return cls(path)
        try:
            document = canonical.loads_file(path.read_bytes(), what=str(path))
        except OSError as exc:
            raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
        verified = document.get("verified", []) if isinstance(document, dict) else None
        if (
            not isinstance(document, dict)
            or document.get("v") != 1
            or not isinstance(document.get("keys"), dict)
            or not set(document) <= {"v", "keys", "verified"}
            or not isinstance(verified, list)
            or not all(isinstance(name, str) for name in verified)
        ):
            raise FormatError(
                f'{path}: expected {{"v": 1, "keys": {{NAME: identity}}, "verified": [NAME]}}'
            )
        keys = {
            name: PublicIdentity.from_json(value, field=f"{path}: {name}")
            for name, value in document["keys"].items()
        }
        for name, identity in keys.items():
            if identity.name != name:
                raise FormatError(f"{path}: the key filed as {name!r} is named {identity.name!r}")
        return cls(path, keys, set(verified) & set(keys))

    def save(self) -> None:
        document: dict[str, object] = {
            "v": 1,
            "keys": {n: k.to_json() for n, k in sorted(self.keys.items())},
        }
        if self.verified:
            document["verified"] = sorted(self.verified)
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

    def verify(self, name: str, fingerprint: str) -> PublicIdentity:
        """Mark ``name`` as compared out of band, if ``fingerprint`` (as printed: hex, with or
        without spaces or colons; the short form or all of it) is its pinned key's."""
        key = self.require(name)
        if not fingerprint_matches(key.fingerprint, fingerprint):
            error = IdentityError(
                f"{name}'s key pinned here is {key.short_fingerprint()}, not {fingerprint.strip()}"
                ": not marked as verified"
            )
            error.hint = (
                "do not use this contact until you know why: ask them again, over another"
                " channel, and compare the whole short fingerprint (eight groups of four)"
            )
            raise error
        self.verified.add(name)
        return key


def network_keys(network: Network) -> list[PublicIdentity]:
    """Every key a network file names: the relay's, each custodian's and its operator's."""
    cards = (network.relay, *network.custodians)
    operators = [c.operator for c in network.custodians if c.operator is not None]
    return [*(c.identity for c in cards), *operators]


def join(home: Path, data: bytes, *, accept: bool = False) -> Network:
    """Pin every key of the network file ``data`` in ``home`` and keep the file as
    ``HOME/network.json``; all or nothing.

    A key that differs from one pinned is refused (:class:`KeyChangedError`, both
    fingerprints). A file that changes the custodians, the threshold or the TLS CA of
    the one joined before is refused unless ``accept``: whoever served a new CA would
    choose whom this home's clients trust to be every service.
    """
    network = Network.from_bytes(data)
    known = KnownKeys.load(home)
    for identity in network_keys(network):
        known.check(identity)
    before = joined(home)
    if before is not None and not accept:
        was = [c.name for c in before.custodians]
        now = [c.name for c in network.custodians]
        if was != now or before.threshold != network.threshold:
            error = SecureCommError(
                "the network file changes the custodians or the threshold, from"
                f" {', '.join(was)} ({before.threshold} of {len(was)}) to {', '.join(now)}"
                f" ({network.threshold} of {len(now)}); nothing was changed"
            )
            error.hint = "check the change with whoever runs the network, then add --accept"
            raise error
        if before.tls_ca != network.tls_ca:
            from ..tls import describe_cas  # (x509: only a join pays for it)

            def named(pem: str | None) -> str:
                return "none" if pem is None else describe_cas(pem.encode("ascii"))

            error = SecureCommError(
                "the network file changes the TLS CA every service's certificate is checked"
                f" against, from {named(before.tls_ca)} to {named(network.tls_ca)};"
                " nothing was changed"
            )
            error.hint = (
                "compare the new CA with whoever runs the network, over another channel,"
                " then add --accept"
            )
            raise error
    home.mkdir(parents=True, exist_ok=True)
    for identity in network_keys(network):
        known.pin(identity)
    known.save()
    write_atomic(home / NETWORK_FILE, data)
    return network

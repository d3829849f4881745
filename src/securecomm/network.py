"""Cards and the network file (spec §14): how parties on separate hosts learn each other.

Each party initialises itself on its own host and hands out a *card*: its role, name,
URL and public identity (a custodian's also names its operator's public key), signed
by its own key. Whoever sets the network up gathers the cards into a *network file*
with the threshold; a client joins by pinning every key in it. Nothing here is secret,
and nothing in it is trusted for being here: a fingerprint is compared out of band.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import canonical
from ._encoding import b64decode, b64encode, labelled_hash
from ._fields import expect_object, integer
from .errors import FieldError, ParameterError, SecureCommError, SignatureError
from .identity import SIGNATURE_LENGTH_BYTES, Identity, PublicIdentity, format_fingerprint
from .shamir import MAX_SHARES, MIN_THRESHOLD

__all__ = ["NETWORK_FILE", "ROLES", "Card", "Network", "joined"]

ROLES = ("relay", "custodian")
#: Where a home keeps the network file it joined (a relay: the one it serves).
NETWORK_FILE = "network.json"


def _url(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(f"{path}: expected a URL")
    parts = urlsplit(value)
    try:
        port = parts.port  # ValueError past 65535: the socket layer would take it mod 65536
    except ValueError:
        port = 0
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.path not in {"", "/"}
        or port == 0
    ):
        raise FieldError(f"{path}: expected http(s)://HOST[:PORT], got {value!r}")
    return value.rstrip("/")


def _address(url: str) -> str:
    """``HOST:PORT`` of a card's URL, the scheme's default port filled in, the host in
    lower case: what two cards must not share."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def _each_once(owned: Iterable[tuple[str, str]], refusal: Callable[[str, str, str], str]) -> None:
    """Refuse (FieldError) a value owned twice: ``owned`` pairs (value, owner), in order;
    ``refusal(value, first owner, second owner)`` is the sentence."""
    seen: dict[str, str] = {}
    for value, owner in owned:
        if value in seen:
            raise FieldError(refusal(value, seen[value], owner))
        seen[value] = owner


@dataclass(frozen=True)
class Card:
    """One party's signed word about itself."""

    role: str
    url: str
    identity: PublicIdentity
    operator: PublicIdentity | None  # a custodian's operator; None for the relay
    signature: bytes = b""

    @property
    def name(self) -> str:
        return self.identity.name

    @staticmethod
    def check_url(url: str) -> str:
        """A card's URL: http(s)://HOST[:PORT], nothing more."""
        return _url(url, "url")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": 1,
            "role": self.role,
            "url": self.url,
            "identity": self.identity.to_json(),
        }
        if self.operator is not None:
            body["operator"] = self.operator.to_json()
        return body

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": b64encode(self.signature)}

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json()) + b"\n"

    @classmethod
    def issue(
        cls, identity: Identity, role: str, url: str, operator: PublicIdentity | None = None
    ) -> Card:
        """``identity``'s card, signed by it (purpose ``card``)."""
        if role not in ROLES:
            raise ParameterError(f"card: role {role!r}, expected one of {', '.join(ROLES)}")
        if (role == "custodian") != (operator is not None):
            raise ParameterError("card: a custodian's card names its operator; a relay's does not")
        unsigned = cls(role, _url(url, "card.url"), identity.public, operator)
        return cls(
            role, unsigned.url, identity.public, operator, identity.sign("card", unsigned.body())
        )

    @classmethod
    def from_json(cls, value: object, path: str = "card") -> Card:
        """Decode a card and check its own signature (so a card is never half-read)."""
        keys = {"v", "role", "url", "identity", "signature"}
        role = value.get("role") if isinstance(value, dict) else None
        if role == "custodian":
            keys.add("operator")
        obj = expect_object(value, path, keys, versioned=True)
        if obj["role"] not in ROLES:
            raise FieldError(f"{path}.role: expected one of {', '.join(ROLES)}")
        identity = PublicIdentity.from_json(obj["identity"], field=f"{path}.identity")
        operator = (
            PublicIdentity.from_json(obj["operator"], field=f"{path}.operator")
            if "operator" in obj
            else None
        )
        signature = b64decode(
            obj["signature"], field=f"{path}.signature", length=SIGNATURE_LENGTH_BYTES
        )
        card = cls(obj["role"], _url(obj["url"], f"{path}.url"), identity, operator, signature)
        try:
            identity.verify(signature, "card", card.body())
        except SignatureError:
            raise SignatureError(
                f"{path}: the card of {identity.name!r} is not signed by the key it names"
                f" ({identity.short_fingerprint()})"
            ) from None
        return card

    @classmethod
    def from_bytes(cls, data: bytes, path: str = "card") -> Card:
        return cls.from_json(canonical.loads_file(data, what=path), path)


@dataclass(frozen=True)
class Network:
    """The relay, the custodians in share order, and how many shares a message needs."""

    relay: Card
    custodians: tuple[Card, ...]
    threshold: int
    #: The CA the services' TLS certificates chain to (PEM), if they use a private one.
    tls_ca: str | None = None

    def __post_init__(self) -> None:
        if self.tls_ca is not None:
            from .tls import load_certificates

            load_certificates(self.tls_ca.encode("ascii", "replace"), "network.tls_ca")
        if self.relay.role != "relay":
            raise FieldError(f"network: the relay's card is a {self.relay.role}'s")
        for card in self.custodians:
            if card.role != "custodian":
                raise FieldError(f"network: the card of {card.name!r} is a {card.role}'s")
        n = len(self.custodians)
        if not MIN_THRESHOLD <= n <= MAX_SHARES:
            raise ParameterError(
                f"network: {n} custodian(s), expected {MIN_THRESHOLD} to {MAX_SHARES}"
            )
        if not MIN_THRESHOLD <= self.threshold <= n:
            raise ParameterError(
                f"network: threshold {self.threshold} with {n} custodians;"
                f" expected {MIN_THRESHOLD} to {n}"
            )
        cards = (self.relay, *self.custodians)
        places = ["the relay", *(f"custodian {i + 1}" for i in range(n))]
        _each_once(
            ((card.name, place) for card, place in zip(cards, places, strict=True)),
            lambda name, first, second: (
                f"network: the name {name!r} is {first}'s and {second}'s; each party needs its own"
            ),
        )
        # One key in two places would let one party hold two shares, or pose as the relay.
        _each_once(
            [(c.identity.fingerprint_hex, c.name) for c in cards]
            + [
                (c.operator.fingerprint_hex, f"{c.name}'s operator")
                for c in self.custodians
                if c.operator is not None
            ],
            lambda key, first, second: (
                f"network: {second} has the same key as {first} ({key[:16]}...)"
            ),
        )
        # Two cards at one address would send two parties' shares to whichever one listens
        # there; a card without TLS in a network that names a CA would be reached in the
        # clear, its certificate checked against nothing (§14.2).
        for card in cards:
            if self.tls_ca is not None and urlsplit(card.url).scheme != "https":
                raise FieldError(
                    f"network: {card.name!r} is at {card.url}, not https://, but the network"
                    " names a TLS CA; every service must then be reached over TLS"
                )
        _each_once(
            ((_address(card.url), card.name) for card in cards),
            lambda address, first, second: (
                f"network: {second!r} and {first!r} are at one"
                f" address ({address}); each party needs its own"
            ),
        )

    def to_json(self) -> dict[str, Any]:
        document = {
            "v": 1,
            "relay": self.relay.to_json(),
            "custodians": [c.to_json() for c in self.custodians],
            "threshold": self.threshold,
        }
        if self.tls_ca is not None:
            document["tls_ca"] = self.tls_ca
        return document

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json()) + b"\n"

    @property
    def fingerprint(self) -> bytes:
        """What a person compares to know they joined this network and no other (§14.4):
        every key, URL and the threshold at once."""
        return labelled_hash("securecomm/v1/network", canonical.dumps(self.to_json()))

    def short_fingerprint(self) -> str:
        return format_fingerprint(self.fingerprint)

    @classmethod
    def from_json(cls, value: object) -> Network:
        obj = expect_object(
            value,
            "network",
            {"v", "relay", "custodians", "threshold"},
            optional={"tls_ca"},
            versioned=True,
        )
        custodians = obj["custodians"]
        if not isinstance(custodians, list):
            raise FieldError("network.custodians: expected an array")
        return cls(
            Card.from_json(obj["relay"], "network.relay"),
            tuple(Card.from_json(c, f"network.custodians[{i}]") for i, c in enumerate(custodians)),
            integer(obj["threshold"], "network.threshold", MIN_THRESHOLD, MAX_SHARES),
            _pem(obj.get("tls_ca")),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Network:
        return cls.from_json(canonical.loads_file(data, what="network file"))


def _pem(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise FieldError("network.tls_ca: expected the CA certificate in PEM, as a string")
    return value


def joined(home: Path) -> Network | None:
    """The network file ``home`` joined (``HOME/network.json``), checked; None if none."""
    path = home / NETWORK_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Network.from_bytes(data)
    except SecureCommError as exc:
        exc.args = (f"{path}: {exc}",)  # the same error, saying which file
        raise

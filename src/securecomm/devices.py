"""A person's other devices (spec/sessions.md section 3): a device has a key of its own,
and acts for a person while a delegation the person signed says so.

- :class:`Delegation`: the person's identity, the device's, a label and an expiry, signed
  by the person (purpose ``delegation``). A request signed by the device carries it in
  the ``Securecomm-Delegation`` header; the services then treat the request as the
  person's, while the delegation is unexpired and unrevoked.
- :class:`Revocation`: the person's signed statement (purpose ``revocation``) that a
  device no longer acts for them; a service that holds it refuses the device at once.
- The person's X25519 key, HPKE-sealed to the device (purpose ``device-key``), so that
  the device can open the shares sealed to the person: :func:`seal_person_key`,
  :func:`open_person_key`. A device never holds the person's signing key: it cannot sign
  envelopes, so it reads, lists and unsends, and does not send.
- :class:`DeviceKeys`: the device's :class:`~securecomm.identity.Keys`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import canonical, hpke
from ._encoding import b64decode, b64encode
from ._fields import expect_object, fingerprint_hex, integer, matching
from .errors import DelegationExpiredError, DeviceCannotSignError, FieldError, IdentityError
from .httpsig import DELEGATION_HEADER
from .identity import SIGNATURE_LENGTH_BYTES, Identity, PublicIdentity

__all__ = [
    "DELEGATION_HEADER",
    "MAX_DELEGATION_SECONDS",
    "Delegation",
    "DeviceKeys",
    "Revocation",
    "delegate",
    "open_person_key",
    "revocation_receipt",
    "revoke",
    "seal_person_key",
]

#: A delegation lasts at most a year; the person signs a new one to go on.
MAX_DELEGATION_SECONDS = 366 * 86400
#: How far in the future a delegation may say it was issued (the services' clock skew).
_ISSUED_AHEAD_SECONDS = 300
_MAX_TIME = 2**40
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,63}")
_HEADER_MAX_CHARS = 4096


@dataclass(frozen=True)
class Delegation:
    """``person`` lets ``device`` act for them from ``issued`` until ``expires``."""

    person: PublicIdentity
    device: PublicIdentity
    label: str
    issued: int
    expires: int
    signature: bytes

    def body(self) -> dict[str, Any]:
        return {
            "v": 1,
            "person": self.person.to_json(),
            "device": self.device.to_json(),
            "label": self.label,
            "issued": self.issued,
            "expires": self.expires,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": b64encode(self.signature)}

    @classmethod
    def from_json(cls, obj: object, *, field: str = "delegation") -> Delegation:
        members = {"v", "person", "device", "label", "issued", "expires", "signature"}
        obj = expect_object(obj, field, members, versioned=True)
        return cls(
            person=PublicIdentity.from_json(obj["person"], field=f"{field}.person"),
            device=PublicIdentity.from_json(obj["device"], field=f"{field}.device"),
            label=matching(obj["label"], f"{field}.label", _LABEL, "a device label"),
            issued=integer(obj["issued"], f"{field}.issued", 0, _MAX_TIME),
            expires=integer(obj["expires"], f"{field}.expires", 0, _MAX_TIME),
            signature=b64decode(
                obj["signature"], field=f"{field}.signature", length=SIGNATURE_LENGTH_BYTES
            ),
        )

    def header(self) -> str:
        """The ``Securecomm-Delegation`` header's value: base64 of canonical JSON."""
        return b64encode(canonical.dumps(self.to_json()))

    @classmethod
    def from_header(cls, value: str) -> Delegation:
        if len(value) > _HEADER_MAX_CHARS:
            raise FieldError(f"{DELEGATION_HEADER}: longer than {_HEADER_MAX_CHARS} characters")
        data = b64decode(value, field=DELEGATION_HEADER)
        return cls.from_json(canonical.loads(data, what=DELEGATION_HEADER))

    def verify(self) -> None:
        """Raise unless the person signed it and it is well formed (a device other than
        the person, an expiry after the issue and within a year of it)."""
        if self.device.same_keys(self.person):
            raise FieldError("delegation: the device's key is the person's own")
        if self.device.name != self.person.name:
            raise FieldError("delegation: the device's name is not the person's")
        if not self.issued < self.expires <= self.issued + MAX_DELEGATION_SECONDS:
            raise FieldError("delegation: it must expire after it was issued, within a year")
        self.person.verify(self.signature, "delegation", self.body())

    def check(self, device: PublicIdentity, now: int | None = None) -> None:
        """Raise unless this delegation lets ``device`` act for its person at ``now``
        (revocation is the service's to check: it holds the revocations)."""
        self.verify()
        if not device.same_keys(self.device):
            raise FieldError("delegation: it is for another device than the request's signer")
        now = int(time.time()) if now is None else now
        if self.issued > now + _ISSUED_AHEAD_SECONDS:
            raise FieldError("delegation: issued in the future")
        if now >= self.expires:
            raise DelegationExpiredError(
                f"the delegation of {self.person.name}'s device {self.label!r} expired"
            )


def delegate(
    person: Identity, device: PublicIdentity, label: str, seconds: int, now: int | None = None
) -> Delegation:
    """``person``'s signed delegation to ``device`` for ``seconds`` from ``now``."""
    now = int(time.time()) if now is None else now
    matching(label, "label", _LABEL, "a device label (letters, digits, space . _ @ + -)")
    if not 0 < seconds <= MAX_DELEGATION_SECONDS:
        raise FieldError("a delegation lasts from a second to a year")
    unsigned = Delegation(person.public, device, label, now, now + seconds, b"")
    signature = person.sign("delegation", unsigned.body())
    signed = Delegation(**{**unsigned.__dict__, "signature": signature})
    signed.verify()
    return signed


@dataclass(frozen=True)
class Revocation:
    """``person`` says the device whose fingerprint is ``device`` acts for them no more."""

    person: PublicIdentity
    device: str
    revoked: int
    signature: bytes

    def body(self) -> dict[str, Any]:
        return {
            "v": 1,
            "person": self.person.to_json(),
            "device": self.device,
            "revoked": self.revoked,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": b64encode(self.signature)}

    @classmethod
    def from_json(cls, obj: object, *, field: str = "revocation") -> Revocation:
        members = {"v", "person", "device", "revoked", "signature"}
        obj = expect_object(obj, field, members, versioned=True)
        return cls(
            person=PublicIdentity.from_json(obj["person"], field=f"{field}.person"),
            device=fingerprint_hex(obj["device"], f"{field}.device"),
            revoked=integer(obj["revoked"], f"{field}.revoked", 0, _MAX_TIME),
            signature=b64decode(
                obj["signature"], field=f"{field}.signature", length=SIGNATURE_LENGTH_BYTES
            ),
        )

    def verify(self) -> None:
        self.person.verify(self.signature, "revocation", self.body())


def revoke(person: Identity, device_fingerprint: str, now: int | None = None) -> Revocation:
    now = int(time.time()) if now is None else now
    unsigned = Revocation(person.public, fingerprint_hex(device_fingerprint, "device"), now, b"")
    return Revocation(
        **{**unsigned.__dict__, "signature": person.sign("revocation", unsigned.body())}
    )


def revocation_receipt(service: str, revocation: Revocation) -> dict[str, Any]:
    """What a service signs (purpose ``revoked``) once it holds ``revocation``."""
    return {
        "v": 1,
        "service": service,
        "person": revocation.person.fingerprint_hex,
        "device": revocation.device,
    }


def _key_info(person: PublicIdentity, device: PublicIdentity) -> bytes:
    return hpke.info(
        "device-key", {"person": person.fingerprint_hex, "device": device.fingerprint_hex}
    )


def seal_person_key(person: Identity, device: PublicIdentity) -> bytes:
    """The person's X25519 private key, HPKE-sealed to ``device`` (and bound to both)."""
    raw = person.kem_private_key.private_bytes_raw()
    return hpke.seal(raw, device.kem_key, _key_info(person.public, device))


def open_person_key(sealed: bytes, device: Identity, person: PublicIdentity) -> X25519PrivateKey:
    """The person's X25519 key from what :func:`seal_person_key` sealed to ``device``;
    refused unless it is the key of ``person``'s public identity."""
    raw = hpke.open(sealed, device.kem_private_key, _key_info(person, device.public))
    key = X25519PrivateKey.from_private_bytes(raw)
    if key.public_key().public_bytes_raw() != person.kem_key.public_bytes_raw():
        raise IdentityError(f"the key sealed to this device is not {person.name}'s")
    return key


class DeviceKeys:
    """A device acting for its person: requests signed by the device's key, with the
    delegation beside them; shares opened with the person's X25519 key."""

    def __init__(self, device: Identity, delegation: Delegation, person_kem: X25519PrivateKey):
        if not device.public.same_keys(delegation.device):
            raise IdentityError("the delegation is for another device")
        self._device = device
        self._kem = person_kem
        self.delegation = delegation
        self.delegation_header: str | None = delegation.header()
        self.name = delegation.person.name
        self.public = delegation.person
        self.signer = device.public
        #: What to do once the person revoked this device, for the error that says so.
        self.revoked_hint: str | None = None

    def __repr__(self) -> str:
        return f"DeviceKeys({self.name!r}, device {self.signer.short_fingerprint()})"

    def sign(self, purpose: str, obj: Any) -> bytes:
        raise DeviceCannotSignError(
            f"this device signs requests for {self.name} but not their {purpose}s:"
            f" only {self.name}'s own key does"
        )

    def sign_bytes(self, data: bytes) -> bytes:
        return self._device.sign_bytes(data)

    def unseal(self, sealed: bytes, info: bytes) -> bytes:
        return hpke.open(sealed, self._kem, info)

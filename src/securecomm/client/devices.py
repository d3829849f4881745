"""A person's devices, from the client's side (spec/sessions.md section 3): the person adds
a device (a delegation and their X25519 key sealed to it, kept by the relay), lists and
revokes them (the revocation posted to the relay and to every custodian); a device fetches
what was added for it once, and from then on acts for the person with
:class:`~securecomm.devices.DeviceKeys`."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import canonical
from .._encoding import b64decode, b64encode
from .._files import write_atomic
from ..config import Settings
from ..devices import (
    Delegation,
    DeviceKeys,
    Revocation,
    open_person_key,
    revocation_receipt,
    seal_person_key,
)
from ..errors import IdentityError
from ..identity import SIGNATURE_LENGTH_BYTES as SIGNATURE_BYTES
from ..identity import Identity, PublicIdentity
from .flows import RELAY, _parallel, _relay
from .transport import ServiceClient, answer_json
from .trust import KnownKeys

__all__ = [
    "Device",
    "add",
    "device_key_path",
    "devices",
    "grant_path",
    "keys_of_device",
    "revoke",
]


@dataclass(frozen=True)
class Device:
    """One of a person's devices as the relay's directory lists it, its delegation
    checked against the person's pinned key."""

    delegation: Delegation
    revocation: Revocation | None

    @property
    def fingerprint_hex(self) -> str:
        return self.delegation.device.fingerprint_hex

    def state(self, now: int) -> str:
        if self.revocation is not None:
            return "revoked"
        return "expired" if now >= self.delegation.expires else "valid"


def device_key_path(home: Path, name: str) -> Path:
    """Where a device keeps its own key, acting for ``name``."""
    return home / "users" / f"{name}.device.key"


def grant_path(home: Path, name: str) -> Path:
    """Where a device keeps what ``name`` added for it: the delegation and the key sealed
    to it (no secret in the clear, 0600 all the same)."""
    return home / "users" / f"{name}.device.json"


def add(
    settings: Settings, person: Identity, device: PublicIdentity, label: str, seconds: int
) -> Delegation:
    """Let ``device`` act for ``person`` for ``seconds``: the delegation and the person's
    X25519 key sealed to the device, handed to the relay for the device to fetch."""
    from ..devices import delegate

    delegation = delegate(person, device, label, seconds)
    body = {
        "v": 1,
        "delegation": delegation.to_json(),
        "sealed_key": b64encode(seal_person_key(person, device)),
    }
    with _relay(settings, person) as relay:
        relay.request(
            "PUT", f"/api/v1/directory/{person.name}/devices/{device.fingerprint_hex}", body=body
        )
    return delegation


def devices(settings: Settings, person: PublicIdentity) -> list[Device]:
    """``person``'s devices as the relay lists them; a delegation or revocation that
    ``person`` did not sign is refused (the relay cannot add a device for anyone)."""
    with _relay(settings, timeout=5.0) as relay:
        answer = answer_json(
            relay.request("GET", f"/api/v1/directory/{person.name}/devices", sign=False)
        )
    found = []
    for item in answer.get("devices", []):
        delegation = Delegation.from_json(item.get("delegation"))
        delegation.verify()
        revocation = None
        if item.get("revocation") is not None:
            revocation = Revocation.from_json(item["revocation"])
            revocation.verify()
            if revocation.device != delegation.device.fingerprint_hex:
                raise IdentityError("the relay listed a revocation of another device")
        for signed in (delegation.person, revocation.person if revocation else person):
            if not signed.same_keys(person):
                raise IdentityError(
                    f"the relay listed a device of {person.name} not signed by their key"
                )
        found.append(Device(delegation, revocation))
    return found


def revoke(settings: Settings, person: Identity, device_fingerprint: str) -> dict[str, str]:
    """Revoke a device at the relay and at every custodian, all at once; what each said that
    was not a success, by service (empty when every one holds the revocation). Posting it
    again is harmless, so a service that was down gets it from the same command run again."""
    from ..devices import revoke as signed_revocation

    revocation = signed_revocation(person, device_fingerprint)
    body = {"v": 1, "revocation": revocation.to_json()}
    known = KnownKeys.load(settings.home)

    def post(name: str, url: str, path: str) -> None:
        with ServiceClient(url, name, person, timeout=5.0, trust=settings.tls_ca) as client:
            answer = answer_json(client.request("POST", path, body=body))
        _check_receipt(answer, known.require(name), name, revocation)

    services = {RELAY: (settings.server_url, "/api/v1/revocations")}
    services |= {card.name: (card.url, "/v1/revocations") for card in settings.custodians}
    _, failures = _parallel(
        {name: functools.partial(post, name, *where) for name, where in services.items()},
        deadline=6.0,
    )
    return {name: failures[name] for name in services if name in failures}


def _check_receipt(answer: Any, service: PublicIdentity, name: str, revocation: Revocation) -> None:
    """Raise unless ``answer`` is ``service``'s signed word that it holds ``revocation``."""
    expected = revocation_receipt(name, revocation)
    if not isinstance(answer, dict) or answer.get("receipt") != expected:
        raise IdentityError(f"{name} did not answer with a receipt for this revocation")
    signature = b64decode(
        str(answer.get("signature", "")), field="signature", length=SIGNATURE_BYTES
    )
    service.verify(signature, "revoked", expected)


def fetch_grant(settings: Settings, device: Identity, name: str) -> dict[str, Any]:
    """What ``name`` added for this device, from the relay (the request signed by the
    device's own key), saved beside the device's key."""
    with _relay(settings, device) as relay:
        grant = answer_json(
            relay.request(
                "GET", f"/api/v1/directory/{name}/devices/{device.public.fingerprint_hex}/key"
            )
        )
    write_atomic(grant_path(settings.home, name), canonical.dumps(grant) + b"\n", private=True)
    return dict(grant)


def keys_of_device(settings: Settings, device: Identity, name: str) -> DeviceKeys:
    """The keys this device acts for ``name`` with: its delegation (fetched the first time
    and again once expired) checked against ``name``'s pinned key, and ``name``'s X25519
    key opened from what was sealed to this device."""
    path = grant_path(settings.home, name)
    grant = canonical.loads_file(path.read_bytes()) if path.exists() else None
    if grant is not None:
        kept = Delegation.from_json(grant.get("delegation"))
        if kept.expires <= int(time.time()) or not kept.device.same_keys(device.public):
            grant = None  # renewed since, perhaps; or a grant of a key this home replaced
    if grant is None:
        grant = fetch_grant(settings, device, name)
    delegation = Delegation.from_json(grant.get("delegation"))
    delegation.check(device.public)
    known = KnownKeys.load(settings.home)
    known.check(delegation.person)  # a key other than the one pinned for name: refused
    if known.pin(delegation.person):
        known.save()
    sealed = b64decode(str(grant.get("sealed_key", "")), field="sealed_key")
    return DeviceKeys(device, delegation, open_person_key(sealed, device, delegation.person))

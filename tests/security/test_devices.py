"""A device acting for a person (spec/sessions.md section 3), against the real relay and
custodians on both backends: while its delegation holds, each service takes the device's
request as the person's; once revoked, once expired, or with a delegation the person did
not sign, every service refuses it, each on its own (one case per service: a relay that
ignored the revocation would still be refused by every custodian)."""

from __future__ import annotations

import time

import pytest

from securecomm.client import devices, flows
from securecomm.client.transport import ServiceClient
from securecomm.codes import Code
from securecomm.devices import (
    Delegation,
    DeviceKeys,
    delegate,
    open_person_key,
    revoke,
    seal_person_key,
)
from securecomm.errors import DecryptionError, IdentityError, ServiceError
from securecomm.identity import Identity, Keys, PublicIdentity

from ._harness import RELAY, World

SERVICES = [RELAY, "alpha", "bravo", "charlie", "delta", "echo"]


def _ask(world: World, service: str, keys: Keys, message_id: str) -> str:
    """``ok`` if ``service`` serves ``keys`` bob's message (the relay: lists it in the
    inbox; a custodian: releases its share), else the error code it answered."""
    try:
        if service == RELAY:
            listed = flows.inbox(world.settings, keys)
            return "ok" if any(item["id"] == message_id for item in listed) else "not listed"
        url = world.settings.custodian(service).url
        with ServiceClient(url, service, keys) as client:
            client.request("POST", "/v1/releases", body={"v": 1, "message_id": message_id})
        return "ok"
    except ServiceError as exc:
        return exc.code


@pytest.fixture(scope="module")
def message_id(world: World) -> str:
    sent = flows.send(world.settings, world.known(), world.alice, ["bob"], b"for bob's devices")
    return sent.message_id


def _added_device(world: World, label: str) -> DeviceKeys:
    """A new device of bob's, added through the relay as ``devices add`` does, and its keys
    as the device builds them from what it fetches."""
    device = Identity.generate("bob")
    devices.add(world.settings, world.bob, device.public, label, 3600)
    return devices.keys_of_device(world.settings, device, "bob")


@pytest.mark.parametrize("service", SERVICES)
def test_a_revoked_device_is_refused(world: World, message_id: str, service: str) -> None:
    keys = _added_device(world, f"revoked-at-{service}")
    assert _ask(world, service, keys, message_id) == "ok"
    assert devices.revoke(world.settings, world.bob, keys.signer.fingerprint_hex) == {}
    assert _ask(world, service, keys, message_id) == Code.DEVICE_REVOKED
    # bob's own key is not affected.
    assert _ask(world, service, world.bob, message_id) == "ok"


def test_the_audit_log_names_the_device(world: World, message_id: str) -> None:
    """A release a device asked for is logged as bob's, with the device beside him; one
    bob asked for himself names no device."""
    keys = _added_device(world, "audited")
    assert _ask(world, "alpha", keys, message_id) == "ok"
    by_device = _last_release(world)
    assert by_device["recipient"] == world.bob.public.fingerprint_hex
    assert by_device["device"] == keys.signer.fingerprint_hex
    assert _ask(world, "alpha", world.bob, message_id) == "ok"
    by_bob = _last_release(world)
    assert by_bob["recipient"] == world.bob.public.fingerprint_hex and "device" not in by_bob


def _last_release(world: World) -> dict[str, str]:
    """The data of the last release in alpha's audit log, read by its operator."""
    operator = Identity.load(world.home / "operators" / "alpha-operator.key")
    alpha = world.settings.custodian("alpha")
    released: list[dict[str, str]] = []
    after: str | None = "0"
    with ServiceClient(alpha.url, "alpha", operator) as client:
        while after is not None:
            page = client.request("GET", "/v1/audit", params={"after": after}).json()
            released += [e["data"] for e in page["entries"] if e["event"] == "release"]
            after = None if page["next"] is None else str(page["next"])
    return released[-1]


@pytest.mark.parametrize("service", SERVICES)
def test_an_expired_delegation_is_refused(world: World, message_id: str, service: str) -> None:
    device = Identity.generate("bob")
    kem = world.bob.kem_private_key
    fresh = DeviceKeys(device, delegate(world.bob, device.public, "brief", 3600), kem)
    assert _ask(world, service, fresh, message_id) == "ok"
    issued = int(time.time()) - 7200
    expired = delegate(world.bob, device.public, "brief", 3600, now=issued)
    keys = DeviceKeys(device, expired, kem)
    assert _ask(world, service, keys, message_id) == Code.DELEGATION_EXPIRED


@pytest.mark.parametrize("service", SERVICES)
def test_a_delegation_forged_by_another_key_is_refused(
    world: World, message_id: str, service: str
) -> None:
    """carol signs a delegation that names bob as the person: refused, so her device
    cannot act as bob."""
    device = Identity.generate("bob")
    honest = delegate(world.bob, device.public, "forged", 3600)
    forged = Delegation(
        **{**honest.__dict__, "signature": world.carol.sign("delegation", honest.body())}
    )
    keys = DeviceKeys(device, forged, world.bob.kem_private_key)
    assert _ask(world, service, keys, message_id) == Code.BAD_DELEGATION


@pytest.mark.parametrize("service", [RELAY, "alpha"])
def test_another_devices_delegation_is_refused(world: World, message_id: str, service: str) -> None:
    """A delegation copied off the wire is of no use to a device it does not name."""
    theirs = Identity.generate("bob")
    stolen = delegate(world.bob, theirs.public, "theirs", 3600)
    mine = Identity.generate("bob")
    with pytest.raises(IdentityError):  # our client will not present it...
        DeviceKeys(mine, stolen, world.bob.kem_private_key)
    # ... an attacker's does: the delegation beside requests signed by their own key.
    keys = DeviceKeys(theirs, stolen, world.bob.kem_private_key)
    keys._device = mine
    keys.signer = mine.public
    assert _ask(world, service, keys, message_id) == Code.BAD_DELEGATION


def test_a_revocation_signed_by_another_person_revokes_nothing(
    world: World, message_id: str
) -> None:
    """carol posts a revocation of bob's device under her own key: bob's device goes on."""
    keys = _added_device(world, "not-carols")
    statement = revoke(world.carol, keys.signer.fingerprint_hex)
    for name, url, path in [(RELAY, world.settings.server_url, "/api/v1/revocations")] + [
        (c.name, c.url, "/v1/revocations") for c in world.settings.custodians
    ]:
        with ServiceClient(url, name, world.carol) as client:
            client.request("POST", path, body={"v": 1, "revocation": statement.to_json()})
    for service in SERVICES:
        assert _ask(world, service, keys, message_id) == "ok", service


def test_a_device_cannot_send_add_or_revoke_devices(world: World) -> None:
    """What outlasts a request takes the person's own key: a device (a stolen one, say)
    can neither deposit a share, open an upload, add another device nor revoke bob's
    other devices."""
    keys = _added_device(world, "limited")
    alpha = world.settings.custodian("alpha")
    with ServiceClient(alpha.url, "alpha", keys) as custodian:
        with pytest.raises(ServiceError) as deposited:
            custodian.request("POST", "/v1/deposits", body={"v": 1})
    assert deposited.value.code == Code.NOT_YOUR_KEY
    with ServiceClient(world.settings.server_url, RELAY, keys) as relay:
        with pytest.raises(ServiceError) as opened:
            relay.request("PUT", f"/api/v1/uploads/{'ab' * 16}", body={"v": 2, "length": 1})
    assert opened.value.code == Code.NOT_YOUR_KEY
    other = Identity.generate("bob")
    body = {
        "v": 1,
        "delegation": delegate(world.bob, other.public, "sneaked", 3600).to_json(),
        "sealed_key": "A" * 108,
    }
    with ServiceClient(world.settings.server_url, RELAY, keys) as relay:
        with pytest.raises(ServiceError) as added:
            relay.request(
                "PUT", f"/api/v1/directory/bob/devices/{other.public.fingerprint_hex}", body=body
            )
    assert added.value.code == Code.NOT_YOUR_KEY
    victim = _added_device(world, "victim")
    statement = revoke(world.bob, victim.signer.fingerprint_hex)
    with ServiceClient(world.settings.server_url, RELAY, keys) as relay:
        with pytest.raises(ServiceError) as revoked:
            relay.request(
                "POST", "/api/v1/revocations", body={"v": 1, "revocation": statement.to_json()}
            )
    assert revoked.value.code == Code.NOT_YOUR_KEY


def test_the_listed_devices_are_checked_against_the_persons_key(world: World) -> None:
    """The directory's list shows each device's state; the client takes only entries bob
    signed, so a relay cannot slip in a device of its own."""
    keys = _added_device(world, "listed")
    found = {d.fingerprint_hex: d for d in devices.devices(world.settings, world.bob.public)}
    assert found[keys.signer.fingerprint_hex].state(int(time.time())) == "valid"
    assert devices.revoke(world.settings, world.bob, keys.signer.fingerprint_hex) == {}
    found = {d.fingerprint_hex: d for d in devices.devices(world.settings, world.bob.public)}
    assert found[keys.signer.fingerprint_hex].state(int(time.time())) == "revoked"
    # Pinned under bob, a key that is not the one that signed bob's delegations.
    impostor = PublicIdentity("bob", world.carol.public.signing_key, world.carol.public.kem_key)
    with pytest.raises(IdentityError, match="not signed by their key"):
        devices.devices(world.settings, impostor)


def test_the_sealed_key_opens_only_on_its_device(world: World) -> None:
    device = Identity.generate("bob")
    other = Identity.generate("bob")
    sealed = seal_person_key(world.bob, device.public)
    opened = open_person_key(sealed, device, world.bob.public)
    assert opened.private_bytes_raw() == world.bob.kem_private_key.private_bytes_raw()
    with pytest.raises(DecryptionError):
        open_person_key(sealed, other, world.bob.public)

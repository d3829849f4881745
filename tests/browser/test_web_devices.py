"""Devices in the page (spec/sessions.md section 3) in real headless Chromium against
``securecomm up`` on loopback. bob, in the page, adds a device the CLI made (``securecomm
devices init`` in a home that joined the same network); the device reads a message sent to
bob; bob revokes it in the page, the relay and every custodian confirm with a receipt
signed by their key, and from then on each of them refuses the device. The page takes the
relay's list of devices only if bob signed every entry, takes a receipt only signed by the
pinned key of the service that gives it, and shows nothing of devices while bob is locked.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Route, expect

from securecomm import canonical
from securecomm.client import devices, flows
from securecomm.client.devices import device_key_path
from securecomm.client.transport import ServiceClient
from securecomm.codes import Code
from securecomm.config import Settings, load_settings
from securecomm.devices import Delegation, DeviceKeys, delegate, open_person_key
from securecomm.errors import ServiceError
from securecomm.identity import Identity
from securecomm.local.home import user_key_path
from securecomm.testing.mitm import encodings_of
from tests.browser._web import PASSPHRASE, Person, shot
from tests.integration.conftest import NAMES
from tests.integration.test_cli_system import Up, cli, explain, running_up, send
from tests.integration.test_devices_cli import device_home

RELAY = "relay"
SERVICES = [RELAY, *NAMES]
DAY = 86400


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("web-devices") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def bob(browser: Browser, up: Up) -> Iterator[Person]:
    """bob of ``up`` in the page: his key file imported (it is not encrypted, so the page
    locks it with PASSPHRASE and keeps it encrypted with it)."""
    person = Person(browser, up.relay_url)
    person.import_key(user_key_path(up.home, "bob"))
    try:
        yield person
    finally:
        person.close()


def device_keys(home: Path) -> tuple[Settings, DeviceKeys]:
    """The settings of the device at ``home`` and the keys it acts for bob with, as its CLI
    builds them (the first time, from what it fetches from the relay)."""
    settings = load_settings(home, env={})
    device = Identity.load(device_key_path(home, "bob"))
    return settings, devices.keys_of_device(settings, device, "bob")


def ask(settings: Settings, keys: DeviceKeys, service: str, message_id: str) -> str:
    """``ok`` if ``service`` serves the device bob's message (the relay: lists it in bob's
    inbox; a custodian: releases its share), else the error code it answered."""
    try:
        if service == RELAY:
            listed = flows.inbox(settings, keys)
            return "ok" if any(item["id"] == message_id for item in listed) else "not listed"
        with ServiceClient(settings.custodian(service).url, service, keys) as client:
            client.request("POST", "/v1/releases", body={"v": 1, "message_id": message_id})
        return "ok"
    except ServiceError as exc:
        return exc.code


def add(
    person: Person, code: str, label: str, *, days: str = "90", passphrase: str = PASSPHRASE
) -> Locator:
    """Fill in the form to add a device and press Add device; its status."""
    form = person.page.locator("#device-add-form")
    form.get_by_label("Device code").fill(code)
    form.get_by_label("Label", exact=True).fill(label)
    form.get_by_label("Days it may act for you").fill(days)
    form.get_by_label("bob's passphrase").fill(passphrase)
    form.get_by_role("button", name="Add device").click()
    return form.locator(".status")


def revoke(person: Person, row: Locator, *, accept: bool = True) -> str:
    """Press Revoke on ``row`` and answer the confirmation; what it asked."""
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    person.page.once("dialog", answer)
    row.get_by_role("button", name=re.compile("^Revoke the device ")).click()
    assert asked, "Revoke asked for no confirmation"
    return asked[0]


def relay_rows(up: Up) -> dict[str, tuple[str, str]]:
    """The relay's stored devices: device fingerprint -> (delegation, sealed key)."""
    with sqlite3.connect(up.home / "relay" / "relay" / "relay.db") as conn:
        rows = conn.execute("SELECT device_fp, delegation, sealed_key FROM devices").fetchall()
    return {device: (delegation, sealed) for device, delegation, sealed in rows}


def test_a_device_added_in_the_page_reads_until_the_page_revokes_it(bob: Person, up: Up) -> None:
    laptop, code = device_home(up, "laptop")
    device = Identity.load(device_key_path(laptop, "bob"))
    person = Identity.load(user_key_path(up.home, "bob"))
    page = bob.page
    bob.open("identity")
    listing = page.locator("#devices-listing .status")
    expect(listing).to_have_text("bob has added no device.")
    bob.requests.clear()
    expect(add(bob, code, "laptop")).to_contain_text(
        f"Added laptop ({device.public.short_fingerprint()}) for bob until "
    )
    row = page.locator(f"#devices-table tr[data-device='{device.public.fingerprint_hex}']")
    expect(row).to_have_attribute("data-state", "valid")
    expect(row).to_contain_text("laptop")
    expect(row).to_contain_text(device.public.short_fingerprint())
    expect(row).to_contain_text("valid until")
    expect(listing).to_have_text("1 device(s), each signed by your key.")
    expect(page.locator("#device-passphrase")).to_have_value("")
    shot(page, "devices-added")

    # What the relay holds: bob's delegation for 90 days, and his X25519 key sealed to the
    # laptop, which opens it; neither that key nor the passphrase went anywhere in the clear.
    stored, sealed = relay_rows(up)[device.public.fingerprint_hex]
    delegation = Delegation.from_json(canonical.loads(stored.encode()))
    delegation.check(device.public)
    assert delegation.person.same_keys(person.public) and delegation.label == "laptop"
    assert delegation.expires - delegation.issued == 90 * DAY
    assert abs(delegation.issued - time.time()) < 120
    opened = open_person_key(base64.b64decode(sealed), device, person.public)
    kem = person.kem_private_key.private_bytes_raw()
    assert opened.private_bytes_raw() == kem
    put = [r for r in bob.requests if r.method == "PUT"]
    assert [r.url for r in put] == [
        f"{up.relay_url}/api/v1/directory/bob/devices/{device.public.fingerprint_hex}"
    ]
    for request in bob.requests:
        sent = (
            request.url.encode()
            + "\n".join(f"{k}: {v}" for k, v in request.headers.items()).encode()
            + (request.post_data_buffer or b"")
        )
        for secret in [*encodings_of(kem), PASSPHRASE.encode()]:
            assert secret not in sent, request.url

    # The device reads as bob (the CLI's read), and every service serves it.
    text = "for bob, read on the laptop his page added"
    message_id = send(up.home, text)
    read = cli(laptop, "read", message_id, "--as", "bob")
    assert read.returncode == 0 and text in read.stdout, explain(read)
    settings, keys = device_keys(laptop)
    assert {s: ask(settings, keys, s, message_id) for s in SERVICES} == dict.fromkeys(
        SERVICES, "ok"
    )

    # Revoking asks first; said no, nothing is posted.
    bob.requests.clear()
    question = revoke(bob, row, accept=False)
    assert "laptop" in question and "cannot be undone" in question
    assert not [r for r in bob.requests if r.url.endswith("/revocations")]
    expect(page.locator("#device-revoke > *")).to_have_count(0)
    # Said yes: posted to every service, each confirming with a receipt the page checked.
    revoke(bob, row)
    box = page.locator("#device-revoke")
    expect(box.locator(".status")).to_have_text(
        "Revoked laptop at the relay and all 5 custodians: each confirmed it with a signed"
        " receipt and refuses its requests from now on. What it read stays read, and it still"
        " holds the key it was given."
    )
    confirmed = box.locator("li[data-state=confirmed]")
    expect(confirmed).to_have_count(len(SERVICES))
    assert sorted(
        confirmed.nth(i).get_attribute("data-service") or "" for i in range(len(SERVICES))
    ) == sorted(SERVICES)
    posted = [r for r in bob.requests if r.method == "POST" and r.url.endswith("/revocations")]
    assert sorted(r.url for r in posted) == sorted(
        [f"{up.relay_url}/api/v1/revocations"] + [f"{up.url(n)}/v1/revocations" for n in NAMES]
    )
    expect(row).to_have_attribute("data-state", "revoked")
    expect(row).to_contain_text("revoked ")
    expect(row.get_by_role("button")).to_have_count(0)
    shot(page, "devices-revoked")

    # Each service refuses the device on its own, and the device's next read is refused.
    assert {s: ask(settings, keys, s, message_id) for s in SERVICES} == dict.fromkeys(
        SERVICES, Code.DEVICE_REVOKED
    )
    after = cli(laptop, "read", message_id, "--as", "bob")
    assert after.returncode == 1 and "revoked" in after.stderr, explain(after)
    assert text not in after.stdout
    # A revoked device stays revoked: adding it again is refused before anything is put,
    # saying how the device starts over (before, the relay's bare refusal, after the PUT).
    bob.requests.clear()
    expect(add(bob, code, "laptop")).to_contain_text(
        f"bob revoked that device (laptop, {device.public.short_fingerprint()}) on "
    )
    expect(page.locator("#device-add-form .status")).to_contain_text(
        "run 'securecomm devices init --as bob' again: it makes a new key"
    )
    assert not [r for r in bob.requests if r.method == "PUT"]
    expect(row).to_have_attribute("data-state", "revoked")
    made = cli(laptop, "devices", "init", "--as", "bob", "--no-passphrase")
    assert made.returncode == 0 and "a new key replaces it" in made.stdout, explain(made)
    new_code = re.search(r"--label LABEL (\S+)", made.stdout)
    assert new_code, explain(made)
    expect(add(bob, new_code.group(1), "laptop")).to_contain_text("Added laptop (")
    read = cli(laptop, "read", message_id, "--as", "bob")
    assert read.returncode == 0 and text in read.stdout, explain(read)


def test_a_receipt_not_signed_by_its_service_is_not_taken_and_revoke_again_posts_again(
    bob: Person, up: Up
) -> None:
    tablet, code = device_home(up, "tablet")
    device = Identity.load(device_key_path(tablet, "bob"))
    page = bob.page
    bob.open("identity")
    expect(add(bob, code, "tablet", days="1")).to_contain_text("Added tablet")
    row = page.locator(f"#devices-table tr[data-device='{device.public.fingerprint_hex}']")
    expect(row).to_have_attribute("data-state", "valid")
    stored, _ = relay_rows(up)[device.public.fingerprint_hex]
    delegation = Delegation.from_json(canonical.loads(stored.encode()))
    assert delegation.expires - delegation.issued == DAY
    message_id = send(up.home, "for bob's tablet")
    settings, keys = device_keys(tablet)
    assert ask(settings, keys, "echo", message_id) == "ok"

    def forged_receipt(route: Route) -> None:
        """echo's real answer, its receipt's signature altered on the way."""
        if route.request.method != "POST":
            route.fallback()
            return
        response = route.fetch()
        answer = response.json()
        signature = bytearray(base64.b64decode(answer["signature"]))
        signature[0] ^= 1
        route.fulfill(
            response=response,
            json={**answer, "signature": base64.b64encode(bytes(signature)).decode()},
        )

    def unreachable(route: Route) -> None:
        if route.request.method != "POST":
            route.fallback()
            return
        route.abort()

    echo, charlie = (f"{up.url(n)}/v1/revocations" for n in ("echo", "charlie"))
    page.route(echo, forged_receipt)
    page.route(charlie, unreachable)
    try:
        revoke(bob, row)
        box = page.locator("#device-revoke")
        expect(box.locator(".status")).to_have_text(
            "tablet is revoked at 4 of 6 services; not confirmed by charlie, echo. Revoke"
            " again to post it to them again (a service that holds it already confirms it"
            " again)."
        )
        expect(box.locator(".status")).to_have_class(re.compile("error"))
        expect(box.locator("li[data-state=confirmed]")).to_have_count(4)
        expect(box.locator("li[data-service=echo]")).to_have_attribute("data-state", "unconfirmed")
        expect(box.locator("li[data-service=echo]")).to_contain_text(
            "revoked signature does not verify under echo's key"
        )
        expect(box.locator("li[data-service=charlie]")).to_contain_text("cannot be reached")
        shot(page, "devices-revoke-unconfirmed")
    finally:
        page.unroute(echo)
        page.unroute(charlie)
    # echo holds it already (only its receipt was altered) and refuses the device.
    assert ask(settings, keys, "echo", message_id) == Code.DEVICE_REVOKED
    assert ask(settings, keys, "charlie", message_id) == "ok"
    page.get_by_role("button", name="Revoke again").click()
    box = page.locator("#device-revoke")
    expect(box.locator(".status")).to_contain_text("Revoked tablet at the relay and all 5")
    expect(box.locator("li[data-state=confirmed]")).to_have_count(len(SERVICES))
    expect(page.get_by_role("button", name="Revoke again")).to_have_count(0)
    assert {s: ask(settings, keys, s, message_id) for s in SERVICES} == dict.fromkeys(
        SERVICES, Code.DEVICE_REVOKED
    )


def test_a_device_the_relay_lists_without_bobs_signature_is_an_error_not_a_list(
    bob: Person, up: Up
) -> None:
    person = Identity.load(user_key_path(up.home, "bob"))
    device = Identity.generate("bob")
    # A delegation by another key named bob, put in the relay's store behind its back.
    forged = delegate(Identity.generate("bob"), device.public, "planted", 3600)
    database = up.home / "relay" / "relay" / "relay.db"
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO devices (person_fp, device_fp, name, delegation, sealed_key, expires,"
            " updated_at) VALUES (?, ?, 'bob', ?, ?, ?, ?)",
            (
                person.public.fingerprint_hex,
                device.public.fingerprint_hex,
                canonical.dumps(forged.to_json()).decode(),
                base64.b64encode(bytes(80)).decode(),
                forged.expires,
                int(time.time()),
            ),
        )
    page = bob.page
    status = page.locator("#devices-listing .status")
    try:
        bob.open("identity")
        expect(status).to_have_text(
            "The relay's list of devices was refused: the relay listed a device of bob not"
            " signed by their key"
        )
        expect(status).to_have_class(re.compile("error"))
        expect(page.locator("#devices-table")).to_have_count(0)
        assert "planted" not in page.locator("#identity-devices").inner_text()
        shot(page, "devices-forged")
    finally:
        with sqlite3.connect(database) as conn:
            conn.execute(
                "DELETE FROM devices WHERE device_fp = ?", (device.public.fingerprint_hex,)
            )
    bob.open("identity")
    expect(status).to_have_text(
        re.compile(r"^(bob has added no device|\d+ device\(s\), each signed by your key)\.$")
    )


def test_mistakes_are_named_and_nothing_is_added(bob: Person, up: Up) -> None:
    _, code = device_home(up, "phone")
    alice = base64.b64encode(canonical.dumps(Identity.generate("alice").public.to_json())).decode()
    bob.open("identity")
    bob.requests.clear()
    for given, told in [
        ({"passphrase": "not bob's passphrase"}, "key file for bob: wrong passphrase"),
        ({"passphrase": ""}, "Enter bob's passphrase: it opens your key file"),
        ({"code": alice}, "That device's key was made for alice, not bob."),
        ({"code": "not a code"}, "That is not a device's code"),
        ({"label": "-phone"}, "Give the device a label of 1 to 64 letters"),
        ({"days": "367"}, "A device may act for you from 1 to 366 days."),
        ({"days": "0"}, "A device may act for you from 1 to 366 days."),
    ]:
        fields = {"code": code, "label": "phone", "days": "90", "passphrase": PASSPHRASE}
        fields |= given
        status = add(
            bob,
            fields["code"],
            fields["label"],
            days=fields["days"],
            passphrase=fields["passphrase"],
        )
        expect(status).to_contain_text(told)
        expect(status).to_have_class(re.compile("error"))
        expect(bob.page.locator("#device-passphrase")).to_have_value("")
    assert not [r for r in bob.requests if r.method == "PUT"]


def test_a_locked_identity_shows_only_a_prompt_to_unlock(bob: Person, up: Up) -> None:
    page = bob.page
    bob.open("identity")
    card = page.locator("#identity-devices")
    expect(card.locator("#device-add-form")).to_be_visible()
    page.get_by_role("button", name="Lock", exact=True).click()
    expect(card.locator("#devices-locked")).to_have_text(
        "Unlock bob above to list, add or revoke its devices."
    )
    expect(card.locator("table, form, input, textarea, button, #device-revoke")).to_have_count(0)
    assert [line for line in card.inner_text().split("\n") if line] == [
        "Devices",
        "Unlock bob above to list, add or revoke its devices.",
    ]
    # Loaded afresh, locked: the list is not even fetched.
    bob.requests.clear()
    bob.open("identity", unlock=False)
    expect(card.locator("#devices-locked")).to_be_visible()
    assert not [r for r in bob.requests if "/api/v1/directory/bob/devices" in r.url]
    shot(page, "devices-locked")
    bob.unlock()
    expect(card.locator("#device-add-form")).to_be_visible()


def test_a_new_identity_is_not_said_unregistered_once_it_is_registered(
    browser: Browser, up: Up
) -> None:
    """Creating an identity drew its devices before registering it, and nothing drew them
    again: "fay is not registered in this relay's directory: register it to add devices"
    stayed beside "Created fay (...) and registered it in the directory"."""
    fay = Person(browser, up.relay_url)
    try:
        fay.create("fay")
        listing = fay.page.locator("#devices-listing .status")
        expect(listing).to_have_text("fay has added no device.")
        expect(fay.page.locator("#identity-registered")).to_have_text(
            "Registered in this relay's directory with this key."
        )
    finally:
        fay.close()

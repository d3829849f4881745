"""The page's lock (spec/sessions.md section 2) in real headless Chromium against
``securecomm up`` on loopback: identities kept wrapped under their passphrase, unlocked into
memory only, locked after a time without input or with Lock; a locked page shows no message
and asks for the passphrase. The idle limit is shortened with ``?idle=SECONDS``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from securecomm.identity import PASSPHRASE_ITERATIONS, Identity
from tests.browser._web import PASSPHRASE, READ, Person, shot
from tests.integration.test_cli_system import Up, running_up, send

IDLE_S = 3
SENDER = "alice"  # a CLI user of `up`, whose key the reader's page never pins here


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("web-lock") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def lena(browser: Browser, up: Up) -> Iterator[Person]:
    person = Person(browser, up.relay_url)
    person.create("lena")
    try:
        yield person
    finally:
        person.close()


def keep_using(page: Page, until: Locator, *, at_least_s: float = 0.0) -> float:
    """Move the pointer (input, which keeps the page unlocked) every 0.3 s until ``until`` is
    visible and ``at_least_s`` seconds have passed; return when the last input was made."""
    start = time.monotonic()
    step = 0
    while not until.is_visible() or time.monotonic() - start < at_least_s:
        assert time.monotonic() < start + 30, f"{until} did not show"
        step += 1
        page.mouse.move(5 + step % 2 * 10, 5)
        page.wait_for_timeout(300)
    page.mouse.move(20, 5)
    return time.monotonic()


def read_in(person: Person, message_id: str) -> Locator:
    """Open the inbox (unlocking), read ``message_id`` without pausing input; its text."""
    page = person.page
    person.open("inbox")
    item = page.locator(f"li[data-message='{message_id}']")
    keep_using(page, item)
    item.get_by_role("button", name=READ).click()
    text = page.locator("#plaintext")
    keep_using(page, text)
    return text


def shows_nothing_of(page: Page, *secrets: str) -> None:
    """Neither the DOM (text and attributes, hidden sections too) nor any field holds these."""
    content = page.content()
    fields = page.evaluate(
        "[...document.querySelectorAll('input, textarea')].map((f) => f.value).join('\\n')"
    )
    for secret in secrets:
        assert secret not in content, secret
        assert secret not in fields, secret


def stored(page: Page) -> Any:
    """Every record of every store of the page's IndexedDB, with the CryptoKeys in them
    counted and the types of the identities' members named."""
    return page.evaluate(
        """async () => {
            const store = await import('/web/js/store.js');
            const keysIn = (value) =>
                value instanceof CryptoKey ? 1
                : ArrayBuffer.isView(value) || typeof value !== 'object' || value === null ? 0
                : Object.values(value).reduce((sum, v) => sum + keysIn(v), 0);
            const kind = (value) => value?.constructor?.name ?? typeof value;
            const result = { cryptoKeys: 0, identities: {} };
            for (const name of ['identities', 'known', 'pending', 'settings']) {
                for (const record of await store.values(name)) result.cryptoKeys += keysIn(record);
            }
            for (const name of await store.keys('identities')) {
                const record = await store.get('identities', name);
                result.identities[name] = {
                    members: Object.keys(record).sort(),
                    wrapped: record.wrapped && Object.fromEntries(
                        Object.entries(record.wrapped).map(([k, v]) => [k, kind(v)])),
                    iterations: record.wrapped?.iterations ?? null,
                    keyFile: record.keyFile,
                };
            }
            return result;
        }"""
    )


def unlocked_names(page: Page) -> list[str]:
    """The identities whose keys the page holds in memory now."""
    names: list[str] = page.evaluate(
        """async () => {
            const { state } = await import('/web/js/views/ui.js');
            return [...state.identities.values()].filter((r) => r.identity).map((r) => r.name);
        }"""
    )
    return names


def test_after_the_idle_limit_the_inbox_is_gone_and_reading_asks_for_the_passphrase(
    up: Up, lena: Person
) -> None:
    text = "the safe is behind the third painting"
    message_id = send(up.home, text, sender=SENDER, to="lena")
    lena.query = f"?idle={IDLE_S}"
    try:
        page = lena.page
        shown = read_in(lena, message_id)
        expect(shown).to_have_text(text)
        # Input more often than the limit, for longer than it: the page stays unlocked.
        keep_using(page, shown, at_least_s=IDLE_S + 2)
        expect(shown).to_have_text(text)
        last_input = keep_using(page, shown)
        # Then no input: locked after the limit, not before.
        unlock = page.locator("#unlock-form")
        expect(unlock).to_be_visible(timeout=(IDLE_S + 10) * 1000)
        waited = time.monotonic() - last_input
        assert waited >= IDLE_S - 0.2, f"locked after {waited:.1f} s without input"
        expect(unlock.locator(".status")).to_have_text(f"Locked after {IDLE_S} s without use.")
        shot(page, "lock-idle")
        assert unlocked_names(page) == []
        expect(page.locator("#inbox-list > *")).to_have_count(0)
        expect(page.locator("#read-result > *")).to_have_count(0)
        shows_nothing_of(page, text, message_id, message_id[:8], SENDER)
        # Reading asks for the passphrase: the inbox shows nothing, even when refreshed.
        status = page.locator("#inbox > .card > .status")
        expect(status).to_have_text("lena is locked: enter its passphrase above to unlock it.")
        page.get_by_role("button", name="Refresh").click()
        expect(status).to_have_text("lena is locked: enter its passphrase above to unlock it.")
        expect(page.locator("#unlock-passphrase")).to_be_focused()
        # A wrong passphrase unlocks nothing and shows nothing.
        page.locator("#unlock-passphrase").fill("not lena's passphrase")
        unlock.get_by_role("button", name="Unlock").click()
        expect(unlock.locator(".status")).to_have_text(
            "wrong passphrase for lena: nothing was unlocked"
        )
        expect(unlock).to_be_visible()
        assert unlocked_names(page) == []
        expect(page.locator("#inbox-list > *")).to_have_count(0)
        shows_nothing_of(page, text, message_id, message_id[:8], SENDER)
        # The right one: the inbox is back and the message reads.
        page.locator("#unlock-passphrase").fill(PASSPHRASE)
        unlock.get_by_role("button", name="Unlock").click()
        item = page.locator(f"li[data-message='{message_id}']")
        keep_using(page, item)
        expect(unlock).to_be_hidden()
        item.get_by_role("button", name=READ).click()
        keep_using(page, page.locator("#plaintext"))
        expect(page.locator("#plaintext")).to_have_text(text)
    finally:
        lena.query = ""


def test_the_stored_identity_holds_no_usable_key_and_a_reload_locks_it(
    up: Up, lena: Person
) -> None:
    lena.open("identity")
    page = lena.page
    found = stored(page)
    assert found["cryptoKeys"] == 0, found
    record = found["identities"]["lena"]
    assert record["members"] == ["keyFile", "name", "public", "v", "wrapped"]
    assert record["wrapped"] == {
        "iterations": "Number",
        "kdf": "String",
        "kem": "Uint8Array",
        "salt": "Uint8Array",
        "sign": "Uint8Array",
        "wrap": "String",
    }
    assert record["iterations"] >= PASSPHRASE_ITERATIONS
    assert "ENCRYPTED PRIVATE KEY" in record["keyFile"]
    assert "BEGIN PRIVATE KEY" not in record["keyFile"]
    # Reloaded, the page holds no key: nothing can be signed until the passphrase is given.
    lena.open("send", unlock=False)
    expect(page.locator("#unlock-form")).to_be_visible()
    expect(page.locator("#unlock-title")).to_have_text("lena is locked")
    assert unlocked_names(page) == []
    lena.requests.clear()
    page.get_by_label("To (names, separated by commas)").fill("bob")
    page.get_by_label("Message", exact=True).fill("not while locked")
    page.get_by_role("button", name="Encrypt and send").click()
    expect(page.locator("#send-form .status")).to_have_text(
        "lena is locked: enter its passphrase above to unlock it."
    )
    assert [r.url for r in lena.requests] == []
    lena.unlock()
    assert unlocked_names(page) == ["lena"]
    page.get_by_role("button", name="Encrypt and send").click()
    expect(page.locator("#send-form .status")).to_contain_text("Sent to bob")


def test_the_lock_button_locks_at_once(up: Up, lena: Person) -> None:
    text = "gone the moment Lock is pressed"
    message_id = send(up.home, text, sender=SENDER, to="lena")
    page = lena.page
    expect(read_in(lena, message_id)).to_have_text(text)
    page.locator("#tab-send").click()
    page.get_by_label("Message", exact=True).fill("a draft nobody may see")
    expect(page.locator("#identity-lock")).to_contain_text("locked after 15 min without use")
    page.get_by_role("button", name="Lock", exact=True).click()
    expect(page.locator("#unlock-form")).to_be_visible()
    expect(page.locator("#unlock-form .status")).to_have_text("Locked.")
    expect(page.get_by_role("button", name="Lock", exact=True)).to_be_hidden()
    assert unlocked_names(page) == []
    expect(page.locator("#plaintext")).to_have_count(0)
    shows_nothing_of(page, text, message_id, message_id[:8], SENDER, "a draft nobody may see")
    page.locator("#tab-inbox").click()
    expect(page.locator("#inbox-list > *")).to_have_count(0)
    expect(page.locator("#inbox > .card > .status")).to_contain_text("lena is locked")
    shot(page, "lock-button")
    lena.unlock()
    expect(page.locator(f"li[data-message='{message_id}']")).to_be_visible()


def test_the_lock_button_locks_every_tab_of_the_profile(up: Up, lena: Person) -> None:
    """Lock pressed in one tab left another tab of the same profile unlocked, reading
    messages that came after."""
    lena.open("inbox")
    second = lena.context.new_page()
    try:
        second.goto(f"{lena.base_url}/#inbox")
        expect(second.locator("body[data-ready=true]")).to_be_attached()
        second.locator("#unlock-passphrase").fill(PASSPHRASE)
        second.locator("#unlock-form").get_by_role("button", name="Unlock").click()
        expect(second.locator("#unlock-form")).to_be_hidden()
        assert unlocked_names(second) == ["lena"]
        lena.page.get_by_role("button", name="Lock", exact=True).click()
        expect(lena.page.locator("#unlock-form .status")).to_have_text("Locked.")
        expect(second.locator("#unlock-form")).to_be_visible()
        expect(second.locator("#unlock-form .status")).to_have_text("Locked in another tab.")
        assert unlocked_names(second) == []
        expect(second.locator("#inbox-list > *")).to_have_count(0)
    finally:
        second.close()
    lena.unlock()


def test_the_idle_limit_can_be_shortened_never_lengthened(up: Up, lena: Person) -> None:
    note = lena.page.locator("#identity-lock")
    for query, limit in [("?idle=90", "90 s"), ("?idle=86400", "15 min"), ("?idle=0", "15 min")]:
        lena.query = query
        try:
            lena.open("identity")
        finally:
            lena.query = ""
        expect(note).to_contain_text(f"locked after {limit} without use")


def earlier_record(page: Page, name: str, passphrase: str | None) -> str:
    """Store ``name`` as the page's first version did: its keys as non-extractable
    CryptoKeys, which any script of the page could use, beside its key file. Returns the
    fingerprint."""
    fingerprint: str = page.evaluate(
        """async ([name, passphrase]) => {
            const { Identity } = await import('/web/js/identity.js');
            const { writeKeyFile } = await import('/web/js/keyfile.js');
            const store = await import('/web/js/store.js');
            const made = await Identity.generate(name);
            const keyFile = await writeKeyFile(
                name, made.ed25519Pkcs8, made.x25519Pkcs8, passphrase);
            const { identity } = made;
            const stored = {
                name, publicJson: identity.public.toJson(),
                signKey: identity.signKey, kemKey: identity.kemKey,
            };
            await store.put('identities', name,
                { name, stored, keyFile, encrypted: passphrase !== null });
            await store.put('settings', 'active', name);
            return identity.public.shortFingerprint();
        }""",
        [name, passphrase],
    )
    return fingerprint


def test_an_identity_stored_by_the_earlier_page_is_locked_then_wrapped(
    browser: Browser, up: Up
) -> None:
    with Person(browser, up.relay_url) as person:
        page = person.page
        fingerprint = earlier_record(page, "olga", "olga's passphrase")
        assert stored(page)["cryptoKeys"] == 2  # the test is not void
        person.open("identity", unlock=False)
        expect(page.locator("#identity-fingerprint")).to_have_text(fingerprint)
        expect(page.locator("#unlock-title")).to_have_text("olga is locked")
        assert unlocked_names(page) == []
        # Its usable keys are gone from the storage at once, before any unlock.
        found = stored(page)
        assert found["cryptoKeys"] == 0
        assert found["identities"]["olga"]["wrapped"] is None
        unlock = page.locator("#unlock-form")
        page.locator("#unlock-passphrase").fill("not olga's")
        unlock.get_by_role("button", name="Unlock").click()
        expect(unlock.locator(".status")).to_contain_text("wrong passphrase")
        assert unlocked_names(page) == []
        person.passphrases["olga"] = "olga's passphrase"
        person.unlock()
        found = stored(page)
        assert found["cryptoKeys"] == 0
        assert found["identities"]["olga"]["wrapped"]["sign"] == "Uint8Array"
        # Wrapped now: a reload locks it, and the passphrase unwraps keys the relay accepts.
        person.open("identity")
        page.get_by_role("button", name="Register in the directory").click()
        expect(page.locator("#identity-card .status")).to_contain_text("olga is registered")


def test_an_earlier_identity_without_a_passphrase_gets_one(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    with Person(browser, up.relay_url) as person:
        page = person.page
        fingerprint = earlier_record(page, "pia", None)
        person.open("identity", unlock=False)
        expect(page.locator("#unlock-title")).to_have_text("pia has no passphrase yet")
        found = stored(page)
        assert found["cryptoKeys"] == 0
        unlock = page.locator("#unlock-form")
        page.locator("#unlock-passphrase").fill("pia's new passphrase")
        unlock.get_by_label("Confirm the new passphrase").fill("something else")
        unlock.get_by_role("button", name="Unlock").click()
        expect(unlock.locator(".status")).to_have_text("The two passphrases differ.")
        assert unlocked_names(page) == []
        unlock.get_by_label("Confirm the new passphrase").fill("pia's new passphrase")
        unlock.get_by_role("button", name="Unlock").click()
        expect(unlock).to_be_hidden()
        record = stored(page)["identities"]["pia"]
        assert record["wrapped"]["kem"] == "Uint8Array"
        assert "BEGIN PRIVATE KEY" not in record["keyFile"]
        # The key file it exports is encrypted with the new passphrase.
        with page.expect_download() as download:
            page.get_by_role("button", name="Export key file").click()
        path = tmp_path / "pia.key"
        download.value.save_as(path)
        loaded = Identity.load(path, b"pia's new passphrase")
        assert loaded.public.short_fingerprint() == fingerprint
        person.passphrases["pia"] = "pia's new passphrase"
        person.open("identity")
        assert unlocked_names(page) == ["pia"]
        expect(page.locator("#identity-lock")).to_have_class(re.compile("hint"))


def test_an_empty_new_passphrase_is_asked_for_not_called_short(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    """An unencrypted key file imported with the new passphrase left empty was refused as
    "shorter than 8 characters", as if a passphrase had been given."""
    with Person(browser, up.relay_url) as person:
        plain = tmp_path / "wendy.key"
        Identity.generate("wendy").save(plain, None)
        form = person.page.locator("#import-form")
        person.page.get_by_label("Key file", exact=True).set_input_files(str(plain))
        form.get_by_role("button", name="Import").click()
        status = form.locator(".status")
        expect(status).to_contain_text("Type a passphrase (twice) to protect the keys")
        assert "shorter than" not in status.inner_text()
        assert person.stored_identities() == []


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("12345678", "That passphrase is only digits: it is too easy to guess"),
        ("aaaa1111", "That passphrase has fewer than 5 different characters"),
        ("qwertyuiop", "That passphrase is a run of the alphabet, the digits or a keyboard row"),
        ("Password1", "That passphrase is one of the passphrases guessers try first"),
    ],
)
def test_a_weak_new_passphrase_is_refused_saying_why(
    browser: Browser, up: Up, tmp_path: Path, weak: str, why: str
) -> None:
    """The page locked a new identity with "12345678" (it asked for 8 characters only). An
    existing key file locked with such a passphrase still opens: only a new one is held."""
    with Person(browser, up.relay_url) as person:
        page = person.page
        status = person.try_create("wanda", weak)
        expect(status).to_contain_text(why)
        expect(status).to_contain_text("such as four words that do not go together")
        # An unencrypted key file imported is locked with a new passphrase: held the same.
        plain = tmp_path / "wanda.key"
        Identity.generate("wanda").save(plain, None)
        form = page.locator("#import-form")
        page.get_by_label("Key file", exact=True).set_input_files(str(plain))
        form.get_by_label("New passphrase, for an unencrypted file").fill(weak)
        form.get_by_label("Confirm the new passphrase").fill(weak)
        form.get_by_role("button", name="Import").click()
        expect(form.locator(".status")).to_contain_text(why)
        assert person.stored_identities() == []
        # A key file locked with it before is a passphrase given, not chosen: it opens.
        locked = tmp_path / "wanda-locked.key"
        Identity.generate("wanda").save(locked, weak.encode())
        person.import_key(locked, weak)
        expect(page.locator("#identity-name")).to_have_text("wanda")

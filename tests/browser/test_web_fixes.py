"""Fixes to the web client from issue 15, each tried in real headless Chromium against
``securecomm up`` on loopback: where a message read appears, what the Identity tab says of
the directory, and the receipts table at phone width.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from securecomm.identity import Identity
from tests.browser._web import Person, shot
from tests.integration.test_cli_system import Up, cli, explain, finish_up, run, start_up

MESSAGE_ID = re.compile(r"^message id:\s+([0-9a-f]{32})$", re.MULTILINE)
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 375, "height": 667}
# Enough messages that the inbox list is taller than a screen, as it is after a while.
INBOX_LENGTH = 14


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = start_up(tmp_path_factory.mktemp("web-fixes") / "home")
    try:
        yield running
    finally:
        finish_up(running)


@pytest.fixture(scope="module")
def rita(browser: Browser, up: Up) -> Iterator[Person]:
    """The reader: an identity made in the page, with a long inbox."""
    person = Person(browser, up.relay_url)
    person.create("rita")
    for number in range(INBOX_LENGTH):
        cli_send(up, "rita", f"filler {number}")
    try:
        yield person
    finally:
        person.close()


def cli_send(up: Up, to: str, text: str, *flags: str, sender: str = "alice") -> str:
    result = cli(up.home, "send", "--from", sender, "--to", to, text, *flags)
    assert result.returncode == 0, explain(result)
    found = MESSAGE_ID.search(result.stdout)
    assert found, explain(result)
    return found.group(1)


# A. The message read is brought into view and focused.


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_message_read_is_scrolled_into_view_and_focused(
    browser: Browser, up: Up, rita: Person, viewport: dict[str, int]
) -> None:
    text = f"shown where you are looking ({viewport['width']} px)"
    message_id = cli_send(up, "rita", text)
    # The same identity in a profile of this viewport: its key file, exported from rita's.
    rita.open("identity")
    with rita.page.expect_download() as download:
        rita.page.get_by_role("button", name="Export key file").click()
    key = Path(download.value.path())
    person = Person(browser, up.relay_url, **viewport)
    try:
        person.import_key(key, "correct horse battery")
        page = person.read(message_id)  # the newest, at the top of a long list
        message = page.locator("#plaintext")
        expect(message).to_have_text(text)
        assert page.evaluate("document.documentElement.scrollHeight > 2 * innerHeight")
        box = message.bounding_box()
        assert box is not None
        height = page.evaluate("innerHeight")
        assert 0 <= box["y"] and box["y"] + box["height"] <= height, (box, height)
        focused = page.evaluate("document.activeElement.id")
        assert focused == "message", focused
        assert page.locator("#message").get_attribute("tabindex") == "-1"
        shot(page, f"read-in-view-{viewport['width']}")
    finally:
        person.close()


# B. No stray "null" above a message from a pinned sender.


def test_a_pinned_sender_s_message_has_no_stray_null(up: Up, rita: Person) -> None:
    message_id = cli_send(up, "rita", "from a sender rita has pinned")
    page = rita.read(message_id)
    page.get_by_role("button", name="I compared it: pin alice's key").click()
    expect(page.locator("#reading")).to_contain_text("alice's key is pinned")
    page = rita.read(message_id)
    reading = page.locator("#reading")
    expect(reading.locator(".badge", has_text=re.compile("^known key$"))).to_have_count(1)
    expect(page.locator("#plaintext")).to_have_text("from a sender rita has pinned")
    assert "null" not in reading.inner_text()


# C. The Identity tab says what the relay's directory holds.


def test_an_imported_identity_registered_with_its_key_says_so(browser: Browser, up: Up) -> None:
    person = Person(browser, up.relay_url)
    try:
        person.import_key(up.home / "users" / "alice.key")  # `up` registered alice
        page = person.page
        expect(page.locator("#identity-registered")).to_have_text(
            "Registered in this relay's directory with this key."
        )
        expect(page.locator("#register-button")).to_have_count(0)
    finally:
        person.close()


def test_an_unregistered_identity_offers_register_then_does_not(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    made = run("keygen", "hana", "--out", str(tmp_path))
    assert made.returncode == 0, explain(made)
    person = Person(browser, up.relay_url)
    try:
        person.import_key(tmp_path / "hana.key")
        page = person.page
        registered = page.locator("#identity-registered")
        expect(registered).to_have_text("Not registered in this relay's directory.")
        page.get_by_role("button", name="Register in the directory").click()
        expect(page.locator("#identity-card .status")).to_contain_text("hana is registered")
        expect(registered).to_have_text("Registered in this relay's directory with this key.")
        expect(page.locator("#register-button")).to_have_count(0)
        person.open("identity")  # and again from the directory, on a fresh load
        expect(registered).to_have_text("Registered in this relay's directory with this key.")
        expect(page.locator("#register-button")).to_have_count(0)
    finally:
        person.close()


def test_a_name_registered_with_another_key_says_so(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    made = run("keygen", "bob", "--out", str(tmp_path))  # not the bob `up` registered
    assert made.returncode == 0, explain(made)
    person = Person(browser, up.relay_url)
    try:
        person.import_key(tmp_path / "bob.key")
        registered = person.page.locator("#identity-registered")
        expect(registered).to_contain_text("registered in this relay's directory with another key")
        listed = Identity.load(up.home / "users" / "bob.key").public.short_fingerprint()
        expect(registered).to_contain_text(listed)
        expect(person.page.locator("#register-button")).to_have_count(0)
    finally:
        person.close()


# D. The custody receipts fit a phone's width.


def test_the_receipts_table_fits_at_phone_width(browser: Browser, up: Up) -> None:
    phone = Person(browser, up.relay_url, **PHONE)
    try:
        phone.import_key(up.home / "users" / "alice.key")
        phone.send("bob", "receipts on a small screen")
        page = phone.page
        expect(page.locator("#receipts tbody tr")).to_have_count(5)
        shot(page, "phone-receipts")
        # Every cell is in sight: inside the viewport and inside the box around the table,
        # not past an edge where only a sideways scroll (with no visible scrollbar on a phone)
        # would reach it.
        cut = page.evaluate(
            """() => {
                const box = document.querySelector('#receipts').parentElement;
                const edge = Math.min(box.getBoundingClientRect().right, innerWidth);
                return [...document.querySelectorAll('#receipts th, #receipts td')]
                    .filter((cell) => cell.getBoundingClientRect().right > edge + 0.5)
                    .map((cell) => cell.textContent);
            }"""
        )
        assert cut == [], cut
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    finally:
        phone.close()

"""A read in the page that succeeded withdraws the release requests it did not need (spec
12.2), as the CLI's does: before, they stayed on the other custodians' operators' lists for
good, to be approved for nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.browser._web import Person
from tests.browser.test_web_fixes import (
    cli_send,
    decide,
    releases_of,
    short_read,
    withdrawn_of,
)
from tests.integration.test_cli_system import Up, events_of, running_up


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("web-withdraw") / "home") as running:
        yield running


def test_a_read_that_succeeded_withdraws_the_requests_it_did_not_need(
    browser: Browser, up: Up
) -> None:
    wanda = Person(browser, up.relay_url)
    wanda.create("wanda")
    try:
        message_id = cli_send(up, "wanda", "three of five said yes", "--require-approval")
        short_read(wanda, message_id, 0)  # five requests wait for their operators
        for name in ("delta", "echo"):
            assert len(releases_of(up, name, message_id, "pending")) == 1, name
        for name in ("alpha", "bravo", "charlie"):
            decide(up, name, message_id, "approve")
        page = wanda.read(message_id)
        expect(page.locator("#plaintext")).to_have_text("three of five said yes")
        for name in ("delta", "echo"):
            assert len(withdrawn_of(up, name, message_id)) == 1, name
    finally:
        wanda.close()


def test_a_read_of_a_burnt_message_tells_its_custodians_it_arrived(
    browser: Browser, up: Up
) -> None:
    """A custodian keeps a release it gives once for its reader for an hour, in case the
    answer is lost on the way (spec 12.2). The page, once the message is shown, tells each
    it arrived, as the CLI does, and they delete it: a second read in the page finds the
    shares destroyed, not served again."""
    ursula = Person(browser, up.relay_url)
    ursula.create("ursula")
    try:
        message_id = cli_send(up, "ursula", "once, and said so", "--burn-after-reading")
        page = ursula.read(message_id)
        expect(page.locator("#plaintext")).to_have_text("once, and said so")
        for name in ("alpha", "bravo", "charlie", "delta", "echo"):
            waited = time.monotonic() + 10  # told in the background, after the message shows
            while "release_acknowledged" not in (events := events_of(up, name, message_id)):
                assert time.monotonic() < waited, f"{name}: {events}"
                time.sleep(0.1)
            assert events.count("release") == 1 and "release_repeated" not in events, events
    finally:
        ursula.close()


def test_deleting_a_message_withdraws_its_requests_and_drops_what_is_kept(
    browser: Browser, up: Up
) -> None:
    """As the CLI's delete: a short read left four requests on their operators' lists and
    alpha's release kept here (alpha keeps a copy for the reader an hour). Deleting the
    message from the inbox left both behind; it now withdraws the requests and tells alpha
    to drop its copy."""
    vera = Person(browser, up.relay_url)
    vera.create("vera")
    try:
        message_id = cli_send(up, "vera", "deleted unread", "--require-approval")
        short_read(vera, message_id, 0)
        decide(up, "alpha", message_id, "approve")
        short_read(vera, message_id, 1)
        vera.open("inbox")
        page = vera.page
        page.once("dialog", lambda dialog: dialog.accept())
        item = page.locator(f"li[data-message='{message_id}']")
        item.get_by_role("button", name=re.compile(r"^Delete the message ")).click()
        expect(page.locator("#inbox .card .status")).to_contain_text("Deleted the message")
        for name in ("bravo", "charlie", "delta", "echo"):
            assert len(withdrawn_of(up, name, message_id)) == 1, name
        waited = time.monotonic() + 10  # told in the background, as after a read
        while "release_acknowledged" not in (events := events_of(up, "alpha", message_id)):
            assert time.monotonic() < waited, events
            time.sleep(0.1)
    finally:
        vera.close()

"""The page's read with a custodian hung (its processes stopped with SIGSTOP), in real
headless Chromium against ``securecomm up`` on loopback. As the CLI's read does
(``tests/integration/test_send_read_robust.py``), the page goes on about a second after it
has t good shares instead of waiting out the hung custodian's 15 s timeout, and a reader
who has not pinned that custodian's key yet loses its share only, not the whole read (the
page fetched every custodian's key first, so the read failed: "alpha: alpha no answer
within 5 s"). A message whose shares are burnt says it can no longer be read, and the
share a hung custodian releases once it resumes, after the read, is its only release.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from securecomm.local.home import user_key_path
from tests.browser._web import READ, Person
from tests.integration.conftest import NAMES
from tests.integration.test_cli_system import (
    Up,
    audit,
    events_of,
    explain,
    processes_of,
    running_up,
    send,
)
from tests.integration.test_cli_system import read as read_cli

# Well under the page's 15 s per request (and 5 s per key): what the read waits for a hung
# custodian once t good shares are in is a second, plus a loaded machine's slowness.
QUICK_S = 6.0


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("web-read-hung") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def bob(browser: Browser, up: Up) -> Iterator[Person]:
    """bob (made by ``up``) in a profile that has read a message already, so it has pinned
    every custodian's key."""
    person = Person(browser, up.relay_url)
    person.import_key(user_key_path(up.home, "bob"))
    message_id = send(up.home, "pins the custodians")
    expect(person.read(message_id).locator("#plaintext")).to_have_text("pins the custodians")
    assert set(NAMES) <= set(known_keys(person)), known_keys(person)
    try:
        yield person
    finally:
        person.close()


@contextmanager
def stopped(up: Up, *names: str) -> Iterator[None]:
    """Custodians ``names`` hung for the block: every process of each stopped (SIGSTOP),
    and resumed after it whatever happens."""
    pids = []
    for name in names:
        marker = f"custodian serve --home {up.home / name} "
        found = [pid for pid, command in processes_of(up.home) if marker in command]
        assert found, f"no process for {name}: {processes_of(up.home)}"
        pids += found
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def timed_read(person: Person, message_id: str) -> float:
    """Read ``message_id`` in the page: seconds from the click on Read to the read's end."""
    page = person.page
    person.open("inbox")
    button = page.locator(f"li[data-message='{message_id}']").get_by_role("button", name=READ)
    expect(button).to_be_enabled()
    started = time.monotonic()
    button.click()
    expect(page.locator("#reading")).not_to_have_attribute("aria-busy", "true")
    return time.monotonic() - started


def known_keys(person: Person) -> list[str]:
    names: list[str] = person.page.evaluate(
        "async () => (await import('/web/js/store.js')).keys('known')"
    )
    return names


def releases(up: Up, name: str, message_id: str) -> list[dict[str, Any]]:
    """The releases of ``message_id`` in custodian ``name``'s audit log."""
    return [
        entry
        for entry in audit(up.home, up.url(name), name)
        if entry["event"] == "release" and entry["data"].get("message_id") == message_id
    ]


def test_a_hung_custodian_does_not_hold_the_read(up: Up, bob: Person) -> None:
    message_id = send(up.home, "read without charlie")
    with stopped(up, "charlie"):
        took = timed_read(bob, message_id)
        assert took < QUICK_S, f"the read took {took:.1f} s with charlie hung"
        page = bob.page
        expect(page.locator("#plaintext")).to_have_text("read without charlie")
        charlie = page.locator("#custody-status li[data-custodian=charlie]")
        expect(charlie).to_have_attribute("data-state", "down")
        expect(charlie).to_contain_text("no answer within")
        expect(charlie).to_contain_text("not waited for, as 3 good shares were in")
    states = bob.status_of()
    assert [states[n] for n in NAMES if n != "charlie"] == ["released"] * 4, states


def test_a_hung_custodian_whose_key_is_not_pinned_costs_its_share_only(
    browser: Browser, up: Up
) -> None:
    message_id = send(up.home, "read by a new profile without delta")
    with Person(browser, up.relay_url) as fresh:  # nothing pinned in this profile yet
        fresh.import_key(user_key_path(up.home, "bob"))
        assert not set(NAMES) & set(known_keys(fresh))
        with stopped(up, "delta"):
            took = timed_read(fresh, message_id)
            page = fresh.page
            expect(page.locator("#plaintext")).to_have_text("read by a new profile without delta")
            expect(page.locator("#custody-status li[data-custodian=delta]")).to_have_attribute(
                "data-state", "down"
            )
        assert took < QUICK_S, f"the read took {took:.1f} s with delta hung"
        # Each custodian that answered was pinned on the way; delta was not.
        assert sorted(set(NAMES) & set(known_keys(fresh))) == sorted(set(NAMES) - {"delta"})


def test_too_many_hung_custodians_are_each_named_once(browser: Browser, up: Up) -> None:
    """Three hung custodians whose keys this profile has not pinned: the read comes up
    short after their key's 5 s, naming each once ("no answer within 5 s"), where the page
    said "alpha: alpha no answer within 5 s" and failed the whole read on the first."""
    message_id = send(up.home, "two of three")
    hung = ("alpha", "charlie", "echo")
    with Person(browser, up.relay_url) as fresh:
        fresh.import_key(user_key_path(up.home, "bob"))
        with stopped(up, *hung):
            timed_read(fresh, message_id)
            page = fresh.page
            expect(page.locator("#reading .status")).to_contain_text(
                "Not enough custodians released a good share: 2 of the 3 needed"
            )
            expect(page.locator("#plaintext")).to_have_count(0)
            for name in hung:
                item = page.locator(f"#custody-status li[data-custodian={name}]")
                expect(item).to_have_attribute("data-state", "down")
                expect(item).to_contain_text("no answer within 5 s")
            text = page.locator("#reading").inner_text()
            for name in hung:
                assert f"{name}: {name}" not in text and f"{name} no answer" not in text, text
        states = fresh.status_of()
        assert [states[n] for n in ("bravo", "delta")] == ["released"] * 2, states


def test_a_burnt_message_says_it_can_no_longer_be_read(
    browser: Browser, up: Up, bob: Person
) -> None:
    """Burn after reading, with echo hung while the message is read: the read does not
    wait for echo, and echo, resumed, burns its share in the release it was asked for
    (which the page no longer uses). Each custodian released the share once, and the next
    read (in another browser of bob's: his own offers Read no more) says the message can no
    longer be read, with how many destroyed their share. echo keeps, for an hour, the
    release it gave bob (spec 12.2): unless the page's word that bob has the message reached
    it once resumed, it gives that release to bob's other browser."""
    message_id = send(up.home, "read me once", "--burn-after-reading")
    with stopped(up, "echo"):
        took = timed_read(bob, message_id)
        assert took < QUICK_S, f"the read took {took:.1f} s with echo hung"
        expect(bob.page.locator("#plaintext")).to_have_text("read me once")
    deadline = time.monotonic() + 20
    while not releases(up, "echo", message_id):
        assert time.monotonic() < deadline, "echo, resumed, did not release its share"
        time.sleep(0.2)
    item = bob.page.locator(f"li[data-message='{message_id}']")
    expect(item.get_by_role("button", name=READ)).to_have_count(0)
    time.sleep(1)  # a word from the page still queued at echo is served by now
    destroyed = 5 if "release_acknowledged" in events_of(up, "echo", message_id) else 4
    with Person(browser, up.relay_url) as elsewhere:
        elsewhere.import_key(user_key_path(up.home, "bob"))
        page = elsewhere.read(message_id)
        expect(page.locator("#plaintext")).to_have_count(0)
        status = page.locator("#reading .status")
        expect(status).to_contain_text(
            f"This message can no longer be read: {destroyed} of its 5 custodians destroyed"
            " their share"
        )
        expect(status).to_contain_text(f"{5 - destroyed} of the 3 needed")
        states = elsewhere.status_of()
        assert [states[n] for n in NAMES[:4]] == ["refused"] * 4, states
        assert states["echo"] == ("refused" if destroyed == 5 else "released"), states
    for name in NAMES:
        assert len(releases(up, name, message_id)) == 1, name


def test_a_read_that_can_no_longer_succeed_does_not_wait_for_a_hung_custodian(
    browser: Browser, up: Up
) -> None:
    """A burnt message read again, in another browser of bob's, while echo hangs: the four
    others say their share is destroyed, so nothing echo could answer would make three. The
    read says so within its grace (1 s); before, it waited for echo: here 5 s, for echo's
    key (this browser has not pinned it yet), else its whole deadline (15 s)."""
    message_id = send(up.home, "read me once, then ask no more", "--burn-after-reading")
    first = read_cli(up.home, message_id)
    assert first.returncode == 0, explain(first)
    with Person(browser, up.relay_url) as elsewhere, stopped(up, "echo"):
        elsewhere.import_key(user_key_path(up.home, "bob"))
        took = timed_read(elsewhere, message_id)
        status = elsewhere.page.locator("#reading .status")
        expect(status).to_contain_text(
            "This message can no longer be read: 4 of its 5 custodians destroyed their share"
        )
        echo = elsewhere.page.locator("#custody-status li[data-custodian=echo]")
        expect(echo).to_contain_text("as the others' answers decided it")
        assert took < 4.0, f"the read took {took:.1f} s with echo hung"


@pytest.mark.parametrize("set_right", [True, False], ids=["clock-set-right", "clock-behind"])
def test_an_expired_message_says_it_expired_and_when(
    browser: Browser, up: Up, set_right: bool
) -> None:
    """Read after the sender's expiry: the page said only "0 of the 3 needed" (the CLI
    says the message expired, and when); now it says so too, each custodian refusing.
    The inbox offers no Read once the expiry comes by the page's clock: this page drew its
    inbox with its clock two minutes behind, and Read is clicked as soon as the clock is set
    right, before the list looks at the time again (at most a minute after).

    The custodians say "expired" by their clocks: a page whose clock stays behind (within
    the five minutes a signed request may be off) got only "0 of the 3 needed", its clock
    saying the expiry was to come. It says the message expired, and that its clock says
    otherwise."""
    with Person(browser, up.relay_url) as late:
        late.import_key(user_key_path(up.home, "bob"))
        sent = time.monotonic()
        message_id = send(up.home, "only for a moment", "--expires", "1s")
        late.page.clock.set_fixed_time(time.time() - 120)  # within the services' 5 min
        late.open("inbox")
        page = late.page
        read = page.locator(f"li[data-message='{message_id}']").get_by_role("button", name=READ)
        expect(read).to_be_visible()
        time.sleep(max(0.0, sent + 1.5 - time.monotonic()))
        if set_right:
            late.page.clock.set_fixed_time(time.time())  # past the expiry
        read.click()
        expect(page.locator("#reading")).not_to_have_attribute("aria-busy", "true")
        expect(page.locator("#plaintext")).to_have_count(0)
        status = page.locator("#reading .status")
        # In UTC, as the inbox, the CLI and the custodians say it (it said local time).
        expired = (
            r"This message expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(its sender's"
            r" policy\): 5 of its 5 custodians release its share no more\."
        )
        behind = (
            r" This browser's clock says \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, before that"
            r" expiry: if it is behind, set it right\."
        )
        expect(status).to_contain_text(re.compile(expired + ("" if set_right else behind)))
        if set_right:
            expect(status).not_to_contain_text("This browser's clock")
        expect(status).to_contain_text("0 of the 3 needed")
        assert set(late.status_of().values()) == {"refused"}, late.status_of()


def test_a_page_reloaded_mid_read_loses_no_burnt_share(up: Up, bob: Person) -> None:
    """Burn after reading, 4 of 5 needed: three custodians release (and burn) their
    shares, the other two do not answer yet, and the page is reloaded meanwhile. The
    releases were kept only when a read ended, so the three were lost with the page and
    the message could never be read ("can no longer be read"). Now each is kept as it
    arrives, and the next read uses them."""
    message_id = send(up.home, "burn, then reload", "--burn-after-reading", "--threshold", "4")
    page = bob.page
    held = [f"{up.url(name)}/v1/releases" for name in ("delta", "echo")]
    for url in held:
        page.route(url, lambda route: None)  # no answer until the page goes
    try:
        bob.open("inbox")
        page.locator(f"li[data-message='{message_id}']").get_by_role("button", name=READ).click()
        released = page.locator("#custody-status li[data-state='released']")
        expect(released).to_have_count(3)
        page.reload()
    finally:
        for url in held:
            page.unroute(url)
    for name in ("alpha", "bravo", "charlie"):
        assert len(releases(up, name, message_id)) == 1, name
    expect(bob.read(message_id).locator("#plaintext")).to_have_text("burn, then reload")
    for name in NAMES:  # each share released once: the kept three, and delta's and echo's
        assert len(releases(up, name, message_id)) == 1, name


def test_a_read_with_every_custodian_up_names_no_one_down(up: Up, bob: Person) -> None:
    """The grace after t shares is for the hung: with all five up, each answers in it."""
    message_id = send(up.home, "all five")
    expect(bob.read(message_id).locator("#plaintext")).to_have_text("all five")
    assert set(bob.status_of().values()) == {"released"}, bob.status_of()

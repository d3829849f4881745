"""Fixes to the web client from issue 15, each tried in real headless Chromium against
``securecomm up`` on loopback: where a message read appears, what the Identity tab says of
the directory, the receipts table at phone width, and a read that comes up short keeping
the releases it collected (spec §12.2) instead of using up the approvals; then what a
newcomer met walking through the page.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, Route, expect

from securecomm.client import flows
from securecomm.client.transport import ServiceClient
from securecomm.client.trust import KnownKeys
from securecomm.config import load_settings
from securecomm.envelope import Policy, utc_text
from securecomm.identity import Identity
from securecomm.local.home import user_key_path
from securecomm.local.layout import person_home
from tests.browser._web import READ, Person, shot
from tests.integration.conftest import NAMES
from tests.integration.test_cli_system import (
    CLI,
    Up,
    clean_env,
    cli,
    events_of,
    explain,
    run,
    running_up,
)

MESSAGE_ID = re.compile(r"^message id:\s+([0-9a-f]{32})$", re.MULTILINE)
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 375, "height": 667}
# Enough messages that the inbox list is taller than a screen, as it is after a while.
INBOX_LENGTH = 14


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("web-fixes") / "home") as running:
        yield running


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


def stdin_send(up: Up, to: str, content: bytes) -> str:
    """alice sends ``to`` ``content`` on the CLI's standard input (one envelope, without
    a file name): the message id."""
    sent = subprocess.run(
        [*CLI, "send", "--from", "alice", "--to", to, "--quiet", "--home", str(up.home)],
        input=content,
        capture_output=True,
        timeout=60,
        env=clean_env(),
    )
    assert sent.returncode == 0, sent.stderr
    return sent.stdout.decode().strip()


def send_with_policy(up: Up, text: bytes, policy: Policy) -> str:
    """alice sends bob ``text`` under ``policy`` through the library, which takes what the
    CLI does not offer (a not_before, max_releases above one): the message id."""
    own = person_home(up.home, "alice")
    return flows.send(
        load_settings(own, env={}),
        KnownKeys.load(own),
        Identity.load(user_key_path(up.home, "alice")),
        ["bob"],
        text,
        policy=policy,
    ).message_id


def decide(up: Up, custodian: str, message_id: str, verdict: str) -> None:
    """As ``custodian``'s operator, over its HTTP API: approve or deny the one pending
    release of ``message_id``."""
    operator = Identity.load(user_key_path(up.home, f"{custodian}-operator"))
    with ServiceClient(up.url(custodian), custodian, operator) as client:
        pending = client.request("GET", "/v1/releases", params={"status": "pending"}).json()
        ids = [r["release_id"] for r in pending["releases"] if r["message_id"] == message_id]
        assert len(ids) == 1, (custodian, pending)
        client.request("POST", f"/v1/releases/{ids[0]}/{verdict}")


def releases_of(up: Up, custodian: str, message_id: str, status: str) -> list[dict[str, Any]]:
    operator = Identity.load(user_key_path(up.home, f"{custodian}-operator"))
    with ServiceClient(up.url(custodian), custodian, operator) as client:
        listed = client.request("GET", "/v1/releases", params={"status": status}).json()
    return [r for r in listed["releases"] if r["message_id"] == message_id]


def withdrawn_of(up: Up, custodian: str, message_id: str) -> list[dict[str, Any]]:
    """The releases of ``message_id`` a read withdrew at ``custodian``, once none of them is
    pending (the page withdraws them in the background, after the message is shown)."""
    waited = time.monotonic() + 10
    while releases_of(up, custodian, message_id, "pending") and time.monotonic() < waited:
        time.sleep(0.1)
    assert releases_of(up, custodian, message_id, "pending") == [], custodian
    return releases_of(up, custodian, message_id, "withdrawn")


def kept(page: Page, message_id: str) -> Any:
    """The page's pending record for this message (any reader), or None. Its key is
    "FINGERPRINT:ID": the store's other records have a prefix ("gone:", "sending:")."""
    return page.evaluate(
        """async (id) => {
            const store = await import('/web/js/store.js');
            const key = (await store.keys('pending'))
                .find((k) => k.split(':').length === 2 && k.endsWith(`:${id}`));
            return key === undefined ? null : await store.get('pending', key);
        }""",
        message_id,
    )


def keep(page: Page, message_id: str, record: Any) -> None:
    page.evaluate(
        """async ([id, record]) => {
            const store = await import('/web/js/store.js');
            const key = (await store.keys('pending'))
                .find((k) => k.split(':').length === 2 && k.endsWith(`:${id}`));
            await store.put('pending', key, record);
        }""",
        [message_id, record],
    )


def short_read(person: Person, message_id: str, good: int) -> None:
    page = person.read(message_id)
    expect(page.locator("#reading .status")).to_contain_text(
        f"Not enough custodians released a good share: {good} of the 3 needed"
    )
    expect(page.locator("#plaintext")).to_have_count(0)


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
    with Person(browser, up.relay_url, **viewport) as person:
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
    with Person(browser, up.relay_url) as person:
        person.import_key(user_key_path(up.home, "alice"))  # `up` registered alice
        page = person.page
        expect(page.locator("#identity-registered")).to_have_text(
            "Registered in this relay's directory with this key."
        )
        expect(page.locator("#register-button")).to_have_count(0)


def test_an_unregistered_identity_offers_register_then_does_not(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    made = run("keygen", "hana", "--out", str(tmp_path))
    assert made.returncode == 0, explain(made)
    with Person(browser, up.relay_url) as person:
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


def test_a_name_registered_with_another_key_says_so(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    made = run("keygen", "bob", "--out", str(tmp_path))  # not the bob `up` registered
    assert made.returncode == 0, explain(made)
    with Person(browser, up.relay_url) as person:
        person.import_key(tmp_path / "bob.key")
        registered = person.page.locator("#identity-registered")
        expect(registered).to_contain_text("registered in this relay's directory with another key")
        listed = Identity.load(user_key_path(up.home, "bob")).public.short_fingerprint()
        expect(registered).to_contain_text(listed)
        expect(person.page.locator("#register-button")).to_have_count(0)


def test_no_identity_is_made_under_a_name_taken_or_a_partys(browser: Browser, up: Up) -> None:
    """Creating "bob" (registered by the CLI) or "alpha" (a custodian) made and kept a
    local identity, and pinned its key under that name, so that every send to bob, or
    every send at all (alpha checked as a changed custodian key), was refused after."""
    with Person(browser, up.relay_url) as person:
        page = person.page
        person.open("identity")
        for name, said in (
            ("bob", "bob is registered in this relay's directory already"),
            ("alpha", "alpha is the name of a custodian of this network"),
            ("relay", "relay is the name of the relay of this network"),
        ):
            expect(person.try_create(name)).to_contain_text(said)
        assert person.stored_identities() == []
        expect(page.locator("#known-keys")).not_to_contain_text("bob")
        # The page still sends to the real bob, and the custodians' keys are as pinned.
        person.create("tess")
        person.send("bob", "from tess")


def test_no_identity_is_made_under_a_lookalike_name(browser: Browser, up: Up) -> None:
    """Beside bob (registered by the CLI), "b.ob" or "bob-" made an identity the relay
    registered, and a sender picked the impostor easily; "al-pha" stood beside custodian
    alpha. Each is refused before a key is made, saying why."""
    with Person(browser, up.relay_url) as person:
        person.open("identity")
        for name, said in (
            ("bob-", "bob- ends in “-”, which a reader misses"),
            ("al-pha", "al-pha looks like alpha, a name taken already"),
            ("b.ob", "The relay refuses the name b.ob: 'b.ob' looks like 'bob'"),
        ):
            expect(person.try_create(name)).to_contain_text(said)
        assert person.stored_identities() == []
        assert not [r.url for r in person.requests if r.method == "PUT"]


def test_a_refused_registration_reads_as_sentences(browser: Browser, up: Up) -> None:
    """A name registered by someone else between the page's check and its registration
    (here, as the page's PUT goes out) answered "... (HTTP 409, key_changed) Try
    “Register” again.": two sentences run together."""
    other = Identity.generate("quinn")

    def first_someone_else(route: Route) -> None:
        with ServiceClient(up.relay_url, "relay", other) as relay:
            relay.request(
                "PUT", "/api/v1/directory/quinn", body={"v": 1, "identity": other.public.to_json()}
            )
        route.continue_()

    with Person(browser, up.relay_url) as person:
        page = person.page
        page.route("**/api/v1/directory/quinn", lambda route: (
            first_someone_else(route) if route.request.method == "PUT" else route.continue_()
        ))  # fmt: skip
        status = person.try_create("quinn")
        expect(status).to_contain_text("Created quinn, but registering it failed: relay:")
        expect(status).to_contain_text(
            re.compile(r"\(HTTP 409, key_changed\)\. Try “Register” again\.$")
        )


def test_a_blank_message_is_not_sent(browser: Browser, up: Up) -> None:
    """Spaces and line breaks alone went out as a message: deposits, an envelope, and a
    recipient reading nothing."""
    with Person(browser, up.relay_url) as person:
        person.create("blanche")
        before = len(person.requests)
        person.compose("bob", "  \n\t \n ")
        status = person.page.locator("#send-form .status")
        expect(status).to_contain_text(
            "The message is only spaces or line breaks: write something, or choose a file."
            " Nothing was sent."
        )
        assert [r.url for r in person.requests[before:] if r.method != "GET"] == []
        # A file of blanks is a file, and goes.
        person.compose("bob", file=b"  \n", filename="blank.txt")
        expect(status).to_contain_text("Sent to bob")


def test_a_recipient_named_twice_is_sent_to_once_as_the_cli_does(browser: Browser, up: Up) -> None:
    """The page refused "bob, alice, bob" where `send --to bob,alice,bob` sends to each once."""
    with Person(browser, up.relay_url) as person:
        person.create("twyla")
        person.compose("bob, alice, bob", "to each once")
        expect(person.page.locator("#send-form .status")).to_contain_text("Sent to bob, alice.")
        message_id = person.page.locator("#sent-id").inner_text()
        for reader in ("bob", "alice"):
            read = cli(up.home, "read", message_id, "--as", reader)
            assert read.returncode == 0 and read.stdout == "to each once", explain(read)


def test_a_send_to_no_one_registered_says_nothing_was_sent(browser: Browser, up: Up) -> None:
    """It said only "nobody called nobody-here is registered with this relay", leaving the
    sender to wonder whether the others got it."""
    with Person(browser, up.relay_url) as person:
        person.create("nemo")
        person.compose("bob, nobody-here", "hello")
        expect(person.page.locator("#send-form .status")).to_contain_text(
            "nobody called nobody-here is registered with this relay; nothing was sent"
        )


def test_a_send_to_the_relay_or_a_custodian_is_refused(browser: Browser, up: Up) -> None:
    """ "alpha" or "relay" as a recipient said "Sent to alpha.": the custodian's key, pinned
    from the network, was taken for a person's, so custodian alpha could have read the
    message with any two others' shares. Refused before anything is deposited."""
    with Person(browser, up.relay_url) as person:
        person.create("olga")
        for to in ("alpha", "bob, relay"):
            person.compose(to, "for a service?")
            named = to.split(", ")[-1]
            expect(person.page.locator("#send-form .status")).to_contain_text(
                f"{named}: the name of the relay or a custodian of this network, not a"
                " person's; nothing was sent"
            )
        assert not [r.url for r in person.requests if "/v1/deposits" in r.url]


# D. The custody receipts fit a phone's width.


def test_a_recipient_deletes_a_message_from_the_inbox(browser: Browser, up: Up) -> None:
    """The page offered no way to remove a message from the inbox (nor did the CLI). A
    message from someone else has a Delete button: after the confirmation the relay no
    longer lists it for the reader, and the other messages stay. A message the reader sent
    to themselves has none: deleting it would leave its shares (only unsending destroys
    them)."""
    with Person(browser, up.relay_url) as person:
        person.create("della")
        kept = cli_send(up, "della", "keep me")
        gone = cli_send(up, "della", "delete me")
        own = person.send("della", "a note to myself")
        person.open("inbox")
        page = person.page
        delete = re.compile(r"^Delete the message ")
        own_item = page.locator(f"li[data-message='{own}']")
        expect(own_item.get_by_role("button", name=READ)).to_be_visible()
        expect(own_item.get_by_role("button", name=delete)).to_have_count(0)
        asked: list[str] = []

        def confirm(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept()

        page.once("dialog", confirm)
        page.locator(f"li[data-message='{gone}']").get_by_role("button", name=delete).click()
        expect(page.locator("#inbox .card .status")).to_contain_text(
            "Deleted the message from alice"
        )
        assert asked and "from your inbox" in asked[0], asked
        expect(page.locator(f"li[data-message='{gone}']")).to_have_count(0)
        person.open("inbox")  # the relay's list, fetched afresh
        expect(page.locator(f"li[data-message='{kept}']")).to_have_count(1)
        expect(page.locator(f"li[data-message='{own}']")).to_have_count(1)
        expect(page.locator(f"li[data-message='{gone}']")).to_have_count(0)


def test_the_receipts_table_fits_at_phone_width(browser: Browser, up: Up) -> None:
    phone = Person(browser, up.relay_url, **PHONE)
    try:
        phone.import_key(user_key_path(up.home, "alice"))
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


# E. A read that comes up short keeps what it collected.


def test_approvals_with_reads_in_between_yield_the_message(up: Up, rita: Person) -> None:
    message_id = cli_send(up, "rita", "three approvals, one at a time", "--require-approval")
    rita.read(message_id)
    assert set(rita.status_of().values()) == {"pending"}
    expect(rita.page.locator("#reading .status")).to_contain_text(
        "5 release(s) wait for their custodian's operator: read again once enough are approved."
    )
    record = kept(rita.page, message_id)
    assert set(record["pending"]) == set(NAMES) and record["released"] == {}
    decide(up, "alpha", message_id, "approve")
    short_read(rita, message_id, 1)
    record = kept(rita.page, message_id)
    assert set(record["released"]) == {"alpha"}
    assert set(record["pending"]) == {"bravo", "charlie", "delta", "echo"}
    assert record["released"]["alpha"]["status"] == "released"
    decide(up, "bravo", message_id, "approve")
    decide(up, "charlie", message_id, "approve")
    page = rita.read(message_id)
    expect(page.locator("#plaintext")).to_have_text("three approvals, one at a time")
    expect(page.locator("#custody-status li[data-custodian=alpha]")).to_contain_text(
        "released (kept from an earlier read)"
    )
    assert kept(rita.page, message_id) is None
    shot(page, "read-kept-release")


def test_an_old_pending_record_is_read_as_pending_only(up: Up, rita: Person) -> None:
    message_id = cli_send(up, "rita", "kept by an older page", "--require-approval")
    rita.read(message_id)
    ids = kept(rita.page, message_id)["pending"]
    keep(rita.page, message_id, ids)  # as the page wrote it before it kept releases
    for name in ("alpha", "bravo", "charlie"):
        decide(up, name, message_id, "approve")
    page = rita.read(message_id)
    expect(page.locator("#plaintext")).to_have_text("kept by an older page")
    # Asked with the ids kept, not asked afresh: the one request each has is the one kept,
    # withdrawn once the read succeeded without it.
    for name in ("delta", "echo"):
        assert [r["release_id"] for r in withdrawn_of(up, name, message_id)] == [ids[name]]


def test_three_approved_and_one_denied_with_reads_in_between(up: Up, rita: Person) -> None:
    message_id = cli_send(up, "rita", "approved by three, denied by one", "--require-approval")
    rita.read(message_id)
    decide(up, "alpha", message_id, "approve")
    short_read(rita, message_id, 1)
    decide(up, "bravo", message_id, "approve")
    short_read(rita, message_id, 2)
    decide(up, "delta", message_id, "deny")
    decide(up, "charlie", message_id, "approve")
    page = rita.read(message_id)
    expect(page.locator("#plaintext")).to_have_text("approved by three, denied by one")
    states = rita.status_of()
    assert [states[n] for n in ("alpha", "bravo", "charlie")] == ["released"] * 3
    assert states["delta"] == "refused" and states["echo"] == "pending"
    expect(page.locator("#custody-status li[data-custodian=delta]")).to_contain_text("denied")


def test_three_denied_say_the_message_cannot_be_read_and_a_new_read_asks_no_one(
    up: Up, rita: Person
) -> None:
    """A denial is final: with three, the page says this reader can never read it (not to
    wait for approvals), and reading again opens no new request for those operators."""
    message_id = cli_send(up, "rita", "denied by three", "--require-approval")
    rita.read(message_id)
    for name in ("alpha", "bravo", "charlie"):
        decide(up, name, message_id, "deny")
    for _ in range(2):
        page = rita.read(message_id)
        status = page.locator("#reading .status")
        expect(status).to_contain_text(
            "This message cannot be read by you: the operators of 3 of its 5 custodians"
            " denied you their share (a denial is final), so at most 2 of the 3 needed"
        )
        expect(status).not_to_contain_text("read again once enough are approved")
        expect(page.locator("#plaintext")).to_have_count(0)
        for name in ("alpha", "bravo", "charlie"):
            assert releases_of(up, name, message_id, "pending") == [], name


def test_burn_and_approval_release_each_share_once(up: Up, rita: Person) -> None:
    message_id = cli_send(
        up, "rita", "once, approved", "--require-approval", "--burn-after-reading"
    )
    rita.read(message_id)
    decide(up, "alpha", message_id, "approve")
    short_read(rita, message_id, 1)  # alpha's share is burned now: only the page has it
    decide(up, "bravo", message_id, "approve")
    decide(up, "charlie", message_id, "approve")
    rita.requests.clear()
    page = rita.read(message_id)
    expect(page.locator("#plaintext")).to_have_text("once, approved")
    asked = [r for r in rita.requests if r.url.startswith(up.url("alpha") + "/v1/releases")]
    # Not asked again; only told, once the message is shown, that rita has it (spec 12.2).
    assert [r.method for r in asked] in ([], ["DELETE"]), asked
    expect(page.locator("#custody-status li[data-custodian=alpha]")).to_contain_text(
        "released (kept from an earlier read)"
    )
    assert kept(page, message_id) is None  # what the read kept went with its success
    # and the message, burnt, is offered for reading no more
    item = page.locator(f"li[data-message='{message_id}']")
    expect(item.get_by_role("button", name=READ)).to_have_count(0)
    expect(item).to_contain_text("can no longer be read")
    for name in ("alpha", "bravo", "charlie"):
        assert len(releases_of(up, name, message_id, "released")) == 1, name


def test_a_kept_release_that_fails_its_check_is_dropped(up: Up, rita: Person) -> None:
    message_id = cli_send(up, "rita", "a kept release altered", "--require-approval")
    rita.read(message_id)
    decide(up, "alpha", message_id, "approve")
    short_read(rita, message_id, 1)
    record = kept(rita.page, message_id)
    signature = record["released"]["alpha"]["signature"]
    record["released"]["alpha"]["signature"] = ("B" if signature[0] == "A" else "A") + signature[1:]
    keep(rita.page, message_id, record)
    decide(up, "bravo", message_id, "approve")
    decide(up, "charlie", message_id, "approve")
    page = rita.read(message_id)
    # alpha, asked afresh, gives again the release it keeps for rita for an hour (spec 12.2):
    # the page's altered copy was dropped, not used.
    expect(page.locator("#plaintext")).to_have_text("a kept release altered")
    alpha = page.locator("#custody-status li[data-custodian=alpha]")
    expect(alpha).to_have_attribute("data-state", "released")
    expect(alpha).to_contain_text("kept from an earlier read failed its check")
    assert "release_repeated" in events_of(up, "alpha", message_id)


# F. What a newcomer met walking through the page.


def test_a_name_with_capitals_or_a_space_says_what_to_type(browser: Browser, up: Up) -> None:
    """ "Bob" or "bob smith" as a new identity's name got only Chromium's "Please match the
    requested format.": now the field says what is wrong and what to type instead, and
    nothing is made or asked of the relay."""
    with Person(browser, up.relay_url) as person:
        name = person.page.get_by_label("Name", exact=True)
        for typed, said in (
            ("Bob", "Names are lower-case: try “bob”."),
            ("bob smith", "Names have no spaces: try “bob-smith”."),
            ("Bob Smith", "Names are lower-case, with no spaces: try “bob-smith”."),
            (
                "bob!",
                "A name cannot hold “!”. Only a-z, 0-9, “.”, “-” and “_”, starting with a"
                " letter or digit.",
            ),
        ):
            expect(person.try_create(typed)).to_be_empty()  # the form was not sent
            assert name.evaluate("(field) => field.validationMessage") == said, typed
        assert person.stored_identities() == []
        asked = [r.url for r in person.requests if "/api/v1/names/" in r.url or r.method == "PUT"]
        assert asked == [], asked
        person.create("bob-smith")  # the name it offered, taken as it is


def test_a_public_key_file_picked_for_import_says_to_pick_the_key_file(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    """The .pub file `securecomm keygen` writes beside NAME.key, picked instead of it, said
    "key file: does not start with 'securecomm-identity: '", which did not tell the
    newcomer that the private key is in the other file. Any other file says what it said."""
    made = run("keygen", "pat", "--out", str(tmp_path))
    assert made.returncode == 0, explain(made)
    (tmp_path / "notes.txt").write_text("milk, eggs, bread\n")
    with Person(browser, up.relay_url) as person:
        page = person.page
        person.open("identity")
        status = page.locator("#import-form .status")
        for picked, said in (
            (
                "pat.pub",
                "key file: this is a public key file (pat.pub), which holds no private key:"
                " import pat.key instead, the file written beside it",
            ),
            ("notes.txt", "key file: does not start with 'securecomm-identity: '"),
        ):
            page.get_by_label("Key file", exact=True).set_input_files(str(tmp_path / picked))
            page.get_by_role("button", name="Import").click()
            expect(status).to_have_text(said)
            expect(status).to_have_class(re.compile("error"))
        assert person.stored_identities() == []
        person.import_key(tmp_path / "pat.key")  # the file it named


def test_a_message_that_can_no_longer_be_read_offers_no_read(browser: Browser, up: Up) -> None:
    """A burn-after-reading message, once read, still offered Read, which could only say
    "can no longer be read"; so did a message a read had found so. Neither does now, in the
    list as it stands and on a fresh load; Delete stays. A message that does not burn keeps
    Read after a read. Another browser of the same reader, which knows nothing of that
    read, offers Read until a read there finds the shares destroyed."""
    burnt = cli_send(up, "bob", "read me once", "--burn-after-reading")
    again = cli_send(up, "bob", "read me as often as you like")
    delete = re.compile(r"^Delete the message ")
    with Person(browser, up.relay_url) as first, Person(browser, up.relay_url) as other:
        first.import_key(user_key_path(up.home, "bob"))
        expect(first.read(again).locator("#plaintext")).to_have_text("read me as often as you like")
        page = first.read(burnt)
        expect(page.locator("#plaintext")).to_have_text("read me once")
        for fresh in (False, True):
            if fresh:
                first.open("inbox")
            item = page.locator(f"li[data-message='{burnt}']")
            expect(item.get_by_role("button", name=READ)).to_have_count(0)
            expect(item).to_contain_text("can no longer be read")
            expect(item.get_by_role("button", name=delete)).to_be_visible()
            kept_item = page.locator(f"li[data-message='{again}']")
            expect(kept_item.get_by_role("button", name=READ)).to_be_visible()
            expect(kept_item).not_to_contain_text("can no longer be read")
        other.import_key(user_key_path(up.home, "bob"))
        page = other.read(burnt)
        expect(page.locator("#reading .status")).to_contain_text(
            "This message can no longer be read: "
        )
        item = page.locator(f"li[data-message='{burnt}']")
        expect(item.get_by_role("button", name=READ)).to_have_count(0)
        other.open("inbox")
        expect(item.get_by_role("button", name=READ)).to_have_count(0)
        expect(item).to_contain_text("can no longer be read")


def test_a_message_past_its_expiry_offers_no_read(browser: Browser, up: Up) -> None:
    """A message past its sender's expiry still offered Read, which could only say it had
    expired. Its entry now says when it expired, in UTC as the read does, and offers no
    Read; Delete stays. A message without expiry keeps Read."""
    expiring = cli_send(up, "bob", "read me soon", "--expires", "3s")
    lasting = cli_send(up, "bob", "read me whenever")
    time.sleep(4)  # past the expiry
    with Person(browser, up.relay_url) as person:
        person.import_key(user_key_path(up.home, "bob"))
        person.open("inbox")
        page = person.page
        item = page.locator(f"li[data-message='{expiring}']")
        expect(item).to_be_visible()
        expect(item.get_by_role("button", name=READ)).to_have_count(0)
        expect(item).to_contain_text(re.compile(r"expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
        expect(item.get_by_role("button", name=re.compile(r"^Delete the message "))).to_be_visible()
        kept_item = page.locator(f"li[data-message='{lasting}']")
        expect(kept_item.get_by_role("button", name=READ)).to_be_visible()
        expect(kept_item).not_to_contain_text("expired")


def test_an_inbox_drawn_before_an_expiry_offers_no_read_after_it(browser: Browser, up: Up) -> None:
    """The inbox judged the expiry only when it drew the list: one drawn before the expiry
    went on offering Read after it, until reloaded, and that Read asked every custodian in
    vain. Now the entry turns when the expiry comes, without a reload: "expired at ...
    UTC", no Read, Delete still there; the other entries keep theirs."""
    expires_in = 8  # the time the page takes to open and unlock, and then some
    sent = time.monotonic()
    expiring = cli_send(up, "bob", "read me soon", "--expires", f"{expires_in}s")
    lasting = cli_send(up, "bob", "read me whenever")
    with Person(browser, up.relay_url) as person:
        person.import_key(user_key_path(up.home, "bob"))
        person.open("inbox")
        page = person.page
        item = page.locator(f"li[data-message='{expiring}']")
        read = item.get_by_role("button", name=READ)
        expect(read).to_be_visible()
        assert time.monotonic() < sent + expires_in, "the inbox was drawn after the expiry"
        expect(item).to_contain_text("expires ")
        expect(item).not_to_contain_text("expired")
        # Once the expiry comes, with no reload.
        expect(read).to_have_count(0, timeout=(expires_in + 10) * 1000)
        expect(item).to_contain_text(
            re.compile(r"expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: can no longer be read")
        )
        expect(item).not_to_contain_text("expires ")
        expect(item.get_by_role("button", name=re.compile(r"^Delete the message "))).to_be_visible()
        kept_item = page.locator(f"li[data-message='{lasting}']")
        expect(kept_item.get_by_role("button", name=READ)).to_be_visible()
        # As a list drawn after the expiry says it.
        said = item.text_content()
        person.open("inbox")
        expect(item).to_be_visible()
        assert item.text_content() == said


def test_a_message_before_its_not_before_offers_read_once_it_comes(
    browser: Browser, up: Up
) -> None:
    """A message whose sender's policy says not before a time to come offered Read, which
    could only fail (each custodian refuses it: too early). Its entry now says from when
    it can be read, in UTC as an expiry is said, and offers no Read until then; Delete
    stays. When the time comes, Read does, without a reload, and reads it."""
    opens_in = 8  # the time the page takes to open and unlock, and then some
    not_before = int(time.time()) + opens_in
    message_id = send_with_policy(up, b"not yet", Policy(not_before=not_before))
    with Person(browser, up.relay_url) as person:
        person.import_key(user_key_path(up.home, "bob"))
        person.open("inbox")
        page = person.page
        item = page.locator(f"li[data-message='{message_id}']")
        expect(item).to_be_visible()
        assert time.time() < not_before, "the inbox was drawn after the message's not_before"
        expect(item.get_by_role("button", name=READ)).to_have_count(0)
        expect(item).to_contain_text(f"not before {utc_text(not_before)}: cannot be read yet")
        delete = item.get_by_role("button", name=re.compile(r"^Delete the message "))
        expect(delete).to_be_visible()
        # Once the time comes, with no reload.
        read = item.get_by_role("button", name=READ)
        expect(read).to_be_visible(timeout=(opens_in + 10) * 1000)
        assert time.time() >= not_before
        expect(item).not_to_contain_text("not before")
        expect(delete).to_be_visible()
        read.click()
        expect(page.locator("#plaintext")).to_have_text("not yet")


def test_the_inbox_says_max_releases_counts_each_custodians_releases(
    browser: Browser, up: Up
) -> None:
    """The entry of a message each custodian releases twice said "at most 2 reads": each
    custodian counts its own releases, to whoever asks, so with 5 custodians and threshold
    3 up to three readers can open it. It says what the custodians count."""
    message_id = send_with_policy(up, b"twice per custodian", Policy(max_releases=2))
    with Person(browser, up.relay_url) as person:
        person.import_key(user_key_path(up.home, "bob"))
        person.open("inbox")
        item = person.page.locator(f"li[data-message='{message_id}']")
        expect(item).to_contain_text("each share released at most 2 times")
        expect(item).not_to_contain_text("reads")


def test_an_inbox_entry_with_two_badges_keeps_its_buttons_beside_it(
    browser: Browser, up: Up
) -> None:
    """At 1280 px, an entry with two badges (burn after reading, needs approval) had its
    Read and Delete buttons pushed onto a line of their own under it."""
    message_id = cli_send(up, "bob", "two badges", "--burn-after-reading", "--require-approval")
    with Person(browser, up.relay_url, width=1280, height=800) as person:
        person.import_key(user_key_path(up.home, "bob"))
        person.open("inbox")
        item = person.page.locator(f"li[data-message='{message_id}']")
        expect(item.locator(".badge")).to_have_count(2)
        shot(person.page, "inbox-two-badges")
        text, *buttons = item.evaluate(
            """(item) => [item.firstElementChild, ...item.querySelectorAll('button')]
                .map((node) => node.getBoundingClientRect().toJSON())"""
        )
        assert len(buttons) == 2, buttons  # Read and Delete
        # On one line, and on the entry's first line, beside its text, not under it.
        assert buttons[0]["top"] == buttons[1]["top"], buttons
        beside = [b["top"] < text["bottom"] and b["left"] >= text["right"] for b in buttons]
        assert beside == [True, True], (text, buttons)


def test_a_text_saved_without_a_file_name_is_named_as_text(
    up: Up, rita: Person, tmp_path: Path
) -> None:
    """A text message saved from the page, or read with `--out DIR`, was named
    message-xxxxxxxx.bin / ID.bin; a text is now .txt, anything else still .bin."""
    message_id = cli_send(up, "rita", "a plain sentence")
    page = rita.read(message_id)
    expect(page.locator("#plaintext")).to_have_text("a plain sentence")
    with page.expect_download() as download:
        page.locator("#save-message").click()
    assert download.value.suggested_filename == f"message-{message_id[:8]}.txt"
    into = tmp_path / "into"
    into.mkdir()
    for content in (b"a plain sentence", b"\x00\x01 not text"):
        other = stdin_send(up, "bob", content)
        read = cli(up.home, "read", other, "--as", "bob", "--out", str(into))
        assert read.returncode == 0, explain(read)
        kind = "bin" if content.startswith(b"\x00") else "txt"
        assert (into / f"{other}.{kind}").read_bytes() == content


def test_a_text_too_long_to_show_is_said_to_be_text_and_saved_as_text(
    up: Up, rita: Person, tmp_path: Path
) -> None:
    """A text over 1 MiB (sent from standard input, so one envelope without a name) was
    "a file, not text" in the page and saved as .bin, while `read --out DIR` wrote .txt."""
    content = ("a line of a long report\n" * 50_000).encode()  # 1.2 MB
    message_id = stdin_send(up, "rita", content)
    page = rita.read(message_id)
    expect(page.locator("#not-shown")).to_have_text(
        f"This message is text, {len(content)} bytes: too long to show here; save it as a file."
    )
    expect(page.locator("#plaintext")).to_have_count(0)
    with page.expect_download() as download:
        page.locator("#save-message").click()
    assert download.value.suggested_filename == f"message-{message_id[:8]}.txt"
    saved = tmp_path / "saved"
    download.value.save_as(saved)
    assert saved.read_bytes() == content


def test_an_empty_file_from_the_cli_is_read_in_the_page(
    up: Up, rita: Person, tmp_path: Path
) -> None:
    """The page sends an empty file; `send --file` of one said "the message is empty"
    and sent nothing. Sent now, it is read in the page as the empty file it is."""
    empty = tmp_path / "done.flag"
    empty.write_bytes(b"")
    message_id = cli_send(up, "rita", "--file", str(empty))
    page = rita.read(message_id)
    with page.expect_download() as download:
        page.locator("#save-message").click()
    assert download.value.suggested_filename == "done.flag"
    saved = tmp_path / "saved"
    download.value.save_as(saved)
    assert saved.read_bytes() == b""

"""The web client with a man in the middle on every link (``securecomm.testing.mitm.Proxy``).

The page is loaded through a proxy in front of the relay, and the relay tells it to reach
each custodian through another proxy; the custodians accept that page's origin. Watching
only, the proxies must see no plaintext; altering a custodian's answer must cost that share
alone, and altering the relay's copy must stop the read with no text shown. The relay signs
its answers (spec §11.4): the page must refuse one that is not its signed answer to the
request, and show nothing of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Route, expect

from securecomm.identity import Identity
from securecomm.testing.mitm import Proxy
from tests.browser._web import Person, pick_file_in_the_origin_storage, saved_file, shot
from tests.integration.conftest import NAMES, free_port
from tests.integration.test_cli_system import Up, finish_up, start_up

SECRET = "the launch code is 0000, do not tell anyone"
MIB = 1024 * 1024


@dataclass
class Wire:
    up: Up
    relay: Proxy
    custodians: dict[str, Proxy]

    def all(self) -> list[Proxy]:
        return [self.relay, *self.custodians.values()]

    def watch_only(self) -> None:
        for proxy in self.all():
            arm(proxy, "passive", "request", None)
            proxy.answer_signature = None


def arm(
    proxy: Proxy, mode: str, direction: str, path: str | None, field: str | None = None
) -> None:
    """From now on ``proxy`` applies ``mode`` to the ``direction`` of exchanges whose path
    matches ``path`` (a regex; None: all), in the JSON member ``field`` if given."""
    proxy.mode, proxy.direction = mode, direction
    proxy.match = re.compile(path) if path else None
    proxy.field_name = field


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    watch = [SECRET.encode()]
    relay = Proxy(f"http://127.0.0.1:{relay_port}", watch=watch, audience="relay").start()
    custodians = {
        name: Proxy(f"http://127.0.0.1:{port}", watch=watch, audience=name).start()
        for name, port in ports.items()
    }
    env = {"SECURECOMM_SERVER_URL": relay.url} | {
        f"SECURECOMM_CUSTODIAN_{name.upper()}_URL": proxy.url for name, proxy in custodians.items()
    }
    try:
        up = start_up(tmp_path_factory.mktemp("mitm") / "home", env, ports, relay_port)
        try:
            yield Wire(up, relay, custodians)
        finally:
            finish_up(up)
    finally:
        for proxy in [relay, *custodians.values()]:
            proxy.stop()


@pytest.fixture(scope="module")
def pair(browser: Browser, wire: Wire) -> Iterator[tuple[Person, Person]]:
    grace, heidi = Person(browser, wire.relay.url), Person(browser, wire.relay.url)
    grace.create("grace")
    heidi.create("heidi")
    try:
        yield grace, heidi
    finally:
        grace.close()
        heidi.close()


@pytest.fixture(autouse=True)
def passive(wire: Wire) -> Iterator[None]:
    wire.watch_only()
    yield
    wire.watch_only()


def test_watching_every_link_sees_no_secret(wire: Wire, pair: tuple[Person, Person]) -> None:
    grace, heidi = pair
    message_id = grace.send("heidi", SECRET)
    expect(heidi.read(message_id).locator("#plaintext")).to_have_text(SECRET)
    for proxy in wire.all():
        assert proxy.exchanges, f"nothing went through {proxy.upstream}: the test is void"
        assert not proxy.alarms, proxy.alarms
        assert SECRET.encode() not in proxy.captured()
    # The page itself came through the relay's proxy, and every share through its own.
    paths = {exchange.path for exchange in wire.relay.exchanges}
    assert "/" in paths and "/web/js/app.js" in paths
    for name, proxy in wire.custodians.items():
        deposits = [e for e in proxy.exchanges if (e.method, e.path) == ("POST", "/v1/deposits")]
        assert len(deposits) == 1 and deposits[0].status == 201, name


def test_a_share_altered_on_one_link_costs_that_share_only(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    grace, heidi = pair
    message_id = grace.send("heidi", SECRET)
    bravo = wire.custodians["bravo"]
    arm(bravo, "flip", "response", r"^/v1/releases", "sealed_share")
    page = heidi.read(message_id)
    expect(page.locator("#plaintext")).to_have_text(SECRET)
    states = heidi.status_of()
    assert states["bravo"] == "bad", states
    assert sorted(n for n, s in states.items() if s == "released") == [
        "alpha",
        "charlie",
        "delta",
        "echo",
    ]
    assert bravo.alterations, "the proxy altered nothing: the test is void"
    shot(page, "mitm-bad-share")


def test_the_relays_copy_altered_on_the_way_shows_no_text(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    grace, heidi = pair
    message_id = grace.send("heidi", SECRET)
    relay = wire.relay
    arm(relay, "flip", "response", r"^/api/v1/messages/", "ciphertext")
    page = heidi.read(message_id)
    expect(page.locator("#reading .status")).to_contain_text("altered or is not genuine")
    expect(page.locator("#plaintext")).to_have_count(0)
    assert SECRET not in page.content()
    assert relay.alterations, "the proxy altered nothing: the test is void"


def test_a_relay_answer_altered_on_send_withdraws_everything(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    grace, _ = pair
    relay = wire.relay
    arm(relay, "flip", "response", r"^/api/v1/messages$", "digest")
    grace.compose("heidi", SECRET)
    status = grace.page.locator("#send-form .status")
    # The receipt is no longer the one the relay signed.
    expect(status).to_contain_text("not the one it signed")
    expect(status).to_have_class(re.compile("error"))
    assert relay.alterations, "the proxy altered nothing: the test is void"
    # Every custodian was told to destroy its share, and did; and the relay its copy.
    for name, proxy in wire.custodians.items():
        withdrawals = [e for e in proxy.exchanges if e.method == "DELETE"]
        assert withdrawals and withdrawals[-1].status == 204, name
    deleted = [e for e in relay.exchanges if e.method == "DELETE"]
    assert deleted and deleted[-1].status == 204


def _losing_post_answers(lost: list[int]) -> Callable[[Route], None]:
    """A route that lets a POST reach the relay, notes the status it was answered, and
    loses that answer on its way back to the page."""

    def lose_the_answer(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        lost.append(route.fetch().status)  # the relay stored it
        route.abort()

    return lose_the_answer


def _posted_then_lost(relay: Proxy, lost: list[int]) -> str:
    """The id of the message the relay stored though the page never heard so."""
    assert lost == [201], "the post did not reach the relay: the test is void"
    posts = [e for e in relay.exchanges if e.method == "POST" and e.path == "/api/v1/messages"]
    return str(json.loads(posts[-1].response_body)["id"])


def _every_share_withdrawn(wire: Wire) -> None:
    for name, proxy in wire.custodians.items():
        withdrawals = [e for e in proxy.exchanges if e.method == "DELETE"]
        assert withdrawals and withdrawals[-1].status == 204, name


def test_a_post_the_relay_stored_whose_answer_was_lost_is_taken_back(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    """The post reaches the relay, which stores the envelope; its answer is lost on the way.
    The page cannot know the message was stored: it deletes the relay's copy as it
    withdraws the shares, so heidi is left no message whose shares are gone."""
    grace, _ = pair
    wire.watch_only()
    relay = wire.relay
    pattern = re.compile(r"/api/v1/messages$")
    lost: list[int] = []

    lose_the_answer = _losing_post_answers(lost)
    grace.context.route(pattern, lose_the_answer)
    try:
        grace.compose("heidi", SECRET)
        status = grace.page.locator("#send-form .status")
        expect(status).to_contain_text("the relay may have stored the envelope")
        expect(status).to_contain_text("its copy, if any, was deleted")
        expect(status).to_have_class(re.compile("error"))
    finally:
        grace.context.unroute(pattern, lose_the_answer)
    message_id = _posted_then_lost(relay, lost)
    # The relay's copy was there and was deleted; every custodian destroyed its share.
    deleted = [e for e in relay.exchanges if e.method == "DELETE" and message_id in e.path]
    assert [e.status for e in deleted] == [204], deleted
    _every_share_withdrawn(wire)


def test_a_copy_the_relay_did_not_delete_is_not_said_deleted(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    """The post's answer is lost, and so is the delete the page sends after it: the page
    said "its copy, if any, was deleted" all the same."""
    grace, _ = pair
    wire.watch_only()
    relay = wire.relay
    posted = re.compile(r"/api/v1/messages$")
    deleted = re.compile(r"/api/v1/messages/[0-9a-f]{32}$")
    lost: list[int] = []

    lose_the_answer = _losing_post_answers(lost)

    def lose_the_delete(route: Route) -> None:
        if route.request.method == "DELETE":
            route.abort()  # never reaches the relay
        else:
            route.continue_()

    grace.context.route(posted, lose_the_answer)
    grace.context.route(deleted, lose_the_delete)
    try:
        grace.compose("heidi", SECRET)
        status = grace.page.locator("#send-form .status")
        expect(status).to_contain_text("its copy, if any, could not be deleted")
        expect(status).to_have_class(re.compile("error"))
        assert "was deleted" not in status.inner_text()
    finally:
        grace.context.unroute(posted, lose_the_answer)
        grace.context.unroute(deleted, lose_the_delete)
    message_id = _posted_then_lost(relay, lost)
    assert message_id in status.inner_text()
    assert not [e for e in relay.exchanges if e.method == "DELETE" and message_id in e.path]
    _every_share_withdrawn(wire)


def test_a_relay_answer_re_signed_by_the_relay_itself_is_still_caught(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    """A relay that lies about its copy signs the lie: the page compares the digest."""
    grace, _ = pair
    relay = wire.relay
    arm(relay, "flip", "response", r"^/api/v1/messages$", "digest")
    relay.answer_signature = Identity.load(wire.up.home / "relay" / "relay" / "identity.key")
    grace.compose("heidi", SECRET)
    status = grace.page.locator("#send-form .status")
    expect(status).to_contain_text("differs from what was sent")
    assert relay.alterations, "the proxy altered nothing: the test is void"


def test_an_old_inbox_answer_replayed_to_hide_a_message_is_refused(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    """The attacker keeps heidi's inbox as the relay signed it, and serves it again, with its
    signature, once a new message has come: the page lists nothing and says why."""
    grace, heidi = pair
    heidi.open("inbox")
    expect(heidi.page.locator("#inbox > .card > .status")).to_have_class(re.compile("ok"))
    message_id = grace.send("heidi", "a message to hide")
    relay = wire.relay
    arm(relay, "swap", "response", r"^/api/v1/inbox$")
    heidi.open("inbox")
    status = heidi.page.locator("#inbox > .card > .status")
    expect(status).to_contain_text("for another request (its nonce differs)")
    expect(status).to_have_class(re.compile("error"))
    expect(heidi.page.locator("#inbox-list li")).to_have_count(0)
    assert relay.alterations, "the proxy altered nothing: the test is void"
    assert "with the signature it was recorded with" in relay.alterations[-1].detail
    shot(heidi.page, "mitm-old-inbox-refused")
    wire.watch_only()
    heidi.open("inbox")
    expect(heidi.page.locator(f"li[data-message='{message_id}']")).to_have_count(1)


def test_the_relays_copy_without_its_signature_shows_no_text(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    grace, heidi = pair
    message_id = grace.send("heidi", SECRET)
    relay = wire.relay
    arm(relay, "unsign", "response", r"^/api/v1/messages/[0-9a-f]{32}$")
    page = heidi.read(message_id)
    status = page.locator("#reading .status")
    expect(status).to_contain_text("altered or is not genuine")
    expect(status).to_contain_text("carries no Securecomm-Answer-Signature")
    expect(page.locator("#plaintext")).to_have_count(0)
    assert SECRET not in page.content()
    assert relay.alterations, "the proxy altered nothing: the test is void"


def test_a_front_s_unsigned_502_reads_as_unavailable_and_shows_no_text(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    """nginx before the relay's replicas answers 502 itself when none can be reached: the
    page says the relay is unavailable (not that it was attacked) and believes nothing of
    the body."""
    grace, heidi = pair
    message_id = grace.send("heidi", SECRET)
    heidi.page.route(
        f"**/api/v1/messages/{message_id}",
        lambda route: route.fulfill(
            status=502, content_type="application/json", body='{"code":"x","message":"forged"}'
        ),
    )
    try:
        page = heidi.read(message_id)
        status = page.locator("#reading .status")
        expect(status).to_contain_text("a proxy in front of it answered HTTP 502")
        expect(status).not_to_contain_text("altered or is not genuine")
        expect(status).not_to_contain_text("forged")
        expect(page.locator("#plaintext")).to_have_count(0)
    finally:
        heidi.page.unroute(f"**/api/v1/messages/{message_id}")
    expect(heidi.read(message_id).locator("#plaintext")).to_have_text(SECRET)


def test_a_copy_that_cannot_be_fetched_back_is_said_so(
    wire: Wire, pair: tuple[Person, Person]
) -> None:
    grace, heidi = pair
    relay = wire.relay
    arm(relay, "drop", "request", r"^/api/v1/messages/[0-9a-f]{32}$")
    grace.compose("heidi", "posted, but not fetched back")
    page = grace.page
    expect(page.locator("#copy-check")).to_contain_text("could not be fetched back")
    message_id = page.locator("#sent-id").inner_text()
    assert relay.alterations, "the proxy dropped nothing: the test is void"
    wire.watch_only()
    expect(heidi.read(message_id).locator("#plaintext")).to_have_text(
        "posted, but not fetched back"
    )


@pytest.mark.parametrize(
    ("signed_by", "refusal"),
    [("the relay", "StreamChunkError"), ("nobody", "AnswerSignatureError")],
    ids=["re-signed", "signature-kept"],
)
def test_a_stream_altered_on_the_way_is_refused_and_nothing_is_saved(
    wire: Wire, pair: tuple[Person, Person], signed_by: str, refusal: str
) -> None:
    """A version 2 message: a bit of the stream flipped in every range after the first,
    either under the relay's own signature (a relay that lies, or its disk altered: only
    the chunks' authentication can tell) or with the signature it came with (which no
    longer matches). The page refuses with that error's class, and the file picked to
    save it in keeps what it held."""
    grace, heidi = pair
    content = os.urandom(2 * MIB + 1000)
    message_id = grace.send("heidi", file=content, filename="plan.bin")
    page = heidi.read(message_id)
    save = page.locator("#save-message")
    expect(save).to_have_text(f"Save plan.bin ({len(content)} bytes)")
    relay = wire.relay
    arm(relay, "flip", "response", r"^/api/v1/messages/[0-9a-f]{32}/payload$")
    if signed_by == "the relay":
        relay.answer_signature = Identity.load(wire.up.home / "relay" / "relay" / "identity.key")
    before = b"what the file held before"
    pick_file_in_the_origin_storage(page, "plan.bin", before)
    save.click()
    box = page.locator("#stream-save")
    expect(box).to_have_attribute("data-error", refusal)
    status = box.locator(".status")
    expect(status).to_have_class(re.compile("error"))
    if refusal == "StreamChunkError":
        expect(status).to_contain_text("Refused (StreamChunkError)")
    else:
        expect(status).to_contain_text("not the one it signed (altered on the way)")
    expect(status).to_contain_text("othing was saved")
    assert relay.alterations, "the proxy altered nothing: the test is void"
    saved = saved_file(page, "plan.bin")
    assert (saved["size"], bytes(saved["head"])) == (len(before), before[:16])
    assert box.get_attribute("data-saved") is None
    shot(page, f"mitm-stream-{refusal}")
    # Left alone, the same Save button saves it whole.
    wire.watch_only()
    save.click()
    expect(status).to_contain_text("every chunk opened and checked")
    saved = saved_file(page, "plan.bin")
    assert saved["sha256"] == hashlib.sha256(content).hexdigest()

"""Every attack the suite makes: one case per link, mode and thing altered, with its checks.

Links and who attacks: ``client → relay`` is the relay's proxy altering
requests; ``relay → client`` the same proxy altering answers; the custodian
links are custodian bravo's proxy (charlie's and delta's too in one case),
on deposit during send, on release during read.

A mode the proxy only has for requests is played on an answer with the
proxy's swap mode: a *replayed* answer is an old answer served again, an
*injected* one a forged answer served instead. Each such case says so.

The relay signs its answers (spec §11.4). An answer the proxy alters keeps
the relay's signature unless the case says it is removed, re-signed with a
key of the attacker's that calls itself the relay, or re-signed with the
relay's own key (the relay itself lies: then the signatures of the sender
and the custodians must still catch it).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Callable

from securecomm import httpsig
from securecomm.client.transport import ServiceClient
from securecomm.envelope import Envelope
from securecomm.errors import (
    AnswerSignatureError,
    KeyChangedError,
    QuorumError,
    ServiceError,
    SignatureError,
)
from securecomm.identity import Identity

from ._harness import (
    ALL_LINKS,
    ANSWER_LINK,
    CUSTODIANS,
    DEPOSIT_LINK,
    RELAY,
    RELAY_LINK,
    RELEASE_LINK,
    Attack,
    Case,
    Check,
    Donors,
    Run,
    World,
    passive_read,
)

POST_MESSAGE = r"^/api/v1/messages$"
GET_MESSAGE = r"^/api/v1/messages/[0-9a-f]{32}$"
INBOX = r"^/api/v1/inbox$"
DAVE_ENTRY = r"^/api/v1/directory/dave$"
DEPOSITS = r"^/v1/deposits$"
RELEASES = r"^/v1/releases$"
BRAVO = ("bravo",)

# Checks. Each asserts, and may return a note for the report.


def _refusal(status: int) -> bool:
    return status >= 400


def service_said(*expected: tuple[int | None, str | None]) -> Check:
    """The altered (or forged) requests got exactly these answers, in this order."""

    def check(world: World, run: Run) -> None:
        got = run.server_answers()
        for (want, _), (status, code) in zip(expected, got, strict=False):
            if want is not None and _refusal(want) and (status is None or not _refusal(status)):
                raise AssertionError(
                    f"ATTACK SUCCEEDED: the service accepted an altered request ({status} {code})"
                )
        assert got == list(expected), f"the service answered {got}, expected {list(expected)}"

    return check


def send_refused(code: str, *fragments: str) -> Check:
    def check(world: World, run: Run) -> None:
        assert run.sent is None, "ATTACK SUCCEEDED: send reported success over an altered link"
        error = run.send_error
        assert isinstance(error, ServiceError), f"send failed with {error!r}"
        assert error.code == code, f"send refused with {error.code}, expected {code}: {error}"
        for fragment in fragments:
            assert fragment in str(error), f"{fragment!r} not in the error: {error}"

    return check


def send_refused_unsigned(*fragments: str) -> Check:
    """Send refused the relay's answer as not its signed answer to this request."""

    def check(world: World, run: Run) -> None:
        assert run.sent is None, "ATTACK SUCCEEDED: send took an answer the relay did not sign"
        error = run.send_error
        assert isinstance(error, AnswerSignatureError), f"send failed with {error!r}"
        for fragment in (*fragments, "nothing was sent"):
            assert fragment in str(error), f"{fragment!r} not in the error: {error}"

    return check


def inbox_refused(*fragments: str) -> Check:
    """Bob's inbox refused the answer as not the relay's to his request: nothing listed."""

    def check(world: World, run: Run) -> None:
        assert run.listed is None, (
            f"ATTACK SUCCEEDED: the inbox listed {len(run.listed)} message(s) from an answer"
            " the relay did not sign for it"
        )
        error = run.inbox_error
        assert isinstance(error, AnswerSignatureError), f"inbox failed with {error!r}"
        for fragment in fragments:
            assert fragment in str(error), f"{fragment!r} not in the error: {error}"

    return check


def nothing_encrypted(world: World, run: Run) -> str:
    """Send stopped while checking keys: no message was made, so none can be anywhere."""
    assert not run.drafts, "send went on to encrypt after a refused key check"
    return "Nothing was encrypted, deposited or posted"


def not_pinned(name: str) -> Check:
    def check(world: World, run: Run) -> str:
        assert world.known().get(name) is None, (
            f"ATTACK SUCCEEDED: {name}'s key was pinned from an answer the relay did not sign"
        )
        return f"{name}'s key not pinned"

    return check


def send_ok(world: World, run: Run) -> None:
    assert run.send_error is None, f"send failed: {run.send_error}"
    assert run.sent is not None and run.sent.message_id == run.message_id


def nothing_posted(world: World, run: Run) -> str:
    answer = world.relay_answer(run.message_id)
    assert answer == "not_found", f"the relay has message {run.message_id}: {answer}"
    return "The relay holds nothing"


def one_copy(world: World, run: Run) -> str:
    copies = world.copies_in_inbox(run.message_id)
    assert copies == 1, f"bob's inbox lists the message {copies} times"
    return "The relay holds one copy"


_STATE = {"destroyed": "withdrawn at", "no_deposit": "never taken by", "held": "still held by"}


def custody(**attacked: str) -> Check:
    """Every custodian not named has had its deposit withdrawn; each named one is in its state
    (``any``: whatever it is, reported but not asserted)."""

    def check(world: World, run: Run) -> str:
        states = world.custody(run.message_id)
        for name, state in states.items():
            want = attacked.get(name, "destroyed")
            if want != "any":
                assert state == want, f"custodian {name}: {state}, expected {want}"
        groups: dict[str, list[str]] = defaultdict(list)
        for name, state in states.items():
            groups[_STATE.get(state, f"{state} at")].append(name)
        return "Deposits: " + "; ".join(
            f"{state} {', '.join(names)}" for state, names in groups.items()
        )

    return check


def read_right(*warned: str, because: str = "") -> Check:
    """Read gave the plaintext sent, naming exactly the custodians ``warned`` (and why)."""

    def check(world: World, run: Run) -> None:
        assert run.result is not None, f"read failed: {run.read_error}"
        named = {}
        for line in run.warnings:
            found = re.match(r"custodian ([a-z]+) skipped: (.*)", line)
            assert found, f"unexpected warning: {line}"
            named[found.group(1)] = found.group(2)
        assert sorted(named) == sorted(warned), f"read warned about {named}, expected {warned}"
        for name in warned:
            assert because in named[name], f"{name} skipped because {named[name]!r}"

    return check


def read_refused(error: type[Exception], *fragments: str) -> Check:
    def check(world: World, run: Run) -> None:
        assert run.result is None, "ATTACK SUCCEEDED: read accepted an altered answer"
        assert isinstance(run.read_error, error), f"read failed with {run.read_error!r}"
        for fragment in fragments:
            assert fragment in str(run.read_error), f"{fragment!r} not in: {run.read_error}"

    return check


def capture_holds_the_traffic(world: World, run: Run) -> str:
    """The capture is worth searching: the ciphertext and the sealed shares crossed it."""
    from securecomm.testing.mitm import encodings_of

    draft = run.drafts[0]
    ciphertext = draft.ciphertext_and_tag[:-16]
    relay = run.phase("send")[RELAY].captured()
    assert any(s in relay for s in encodings_of(ciphertext)), "the ciphertext never crossed"
    for phase, path in (("send", "/v1/deposits"), ("read", "/v1/releases")):
        for name, proxy in run.phase(phase).items():
            if name == RELAY:
                continue
            carried = [e for e in proxy.exchanges if e.path == path and e.status < 300]
            assert carried and all(
                b'"sealed_share"' in e.request_body + e.response_body for e in carried
            ), f"no sealed share crossed {name}'s link on {path}"
    return "The capture held the ciphertext and each custodian's sealed share, both ways"


# What the attacker recorded, for swap and replay.

Donate = Callable[[World, Run], Donors]


def recorded_request(service: str, method: str, route: str) -> Donate:
    """The request the attacker saw on ``service``'s link in the recorded message."""

    def donors(world: World, run: Run) -> Donors:
        exchange = world.recorded(service, method, route)
        return Donors(requests=[(exchange.path, exchange.request_body)])

    return donors


def recorded_answer(service: str, method: str, route: str) -> Donate:
    """The answer the attacker saw on ``service``'s link in the recorded message."""

    def donors(world: World, run: Run) -> Donors:
        exchange = world.recorded(service, method, route)
        return Donors(responses=[(exchange.path, exchange.response_body)])

    return donors


def recorded_signed_answer(
    service: str, method: str, route: str, *, served_at: str | None = None
) -> Donate:
    """The answer the attacker saw on ``service``'s link, with the relay's signature; to be
    served on ``served_at`` (a path of another route) if given."""

    def donors(world: World, run: Run) -> Donors:
        exchange = world.recorded(service, method, route)
        signature = next(
            value
            for name, value in exchange.response_headers.items()
            if name.lower() == httpsig.ANSWER_HEADER.lower()
        )
        answer = (served_at or exchange.path, exchange.response_body)
        return Donors(responses=[answer], answer_signatures={answer: signature})

    return donors


def forged_answer(path: str, body: bytes) -> Donate:
    def donors(world: World, run: Run) -> Donors:
        return Donors(responses=[(path, body)])

    return donors


def _compact(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def bobs_inbox_without_an_entry(world: World, run: Run) -> Donors:
    """The first page of bob's inbox as the relay will answer it, with this run's message
    (or, when it is on a later page, the page's last entry) left out: what an attacker
    makes of the answer it sees on the wire."""
    with ServiceClient(world.settings.server_url, RELAY, world.bob) as relay:
        page = relay.request("GET", "/api/v1/inbox", params={"limit": "100"}).json()
    entries = page["messages"]
    hidden = next((m for m in entries if m["id"] == run.message_id), entries[-1])
    page["messages"] = [m for m in entries if m is not hidden]
    return Donors(responses=[("/api/v1/inbox", _compact(page))])


def the_attackers_own_empty_inbox(world: World, run: Run) -> Donors:
    """A genuine answer of the relay: the attacker's own inbox (empty), signed by the relay
    for the attacker's request."""
    mallory = Identity.generate("mallory")
    with ServiceClient(world.settings.server_url, RELAY, mallory) as relay:
        answer = relay.request("GET", "/api/v1/inbox", params={"limit": "100"})
    page = (answer.request.url.path, answer.content)
    signature = answer.headers[httpsig.ANSWER_HEADER]
    return Donors(responses=[page], answer_signatures={page: signature})


def daves_entry_with_another_key(world: World, run: Run) -> Donors:
    """A directory entry for dave with a key the attacker holds."""
    impostor = Identity.generate("dave")
    entry = {
        "identity": impostor.public.to_json(),
        "fingerprint": impostor.public.fingerprint_hex,
        "updated_at": 1_800_000_000,
    }
    return Donors(responses=[("/api/v1/directory/dave", _compact(entry))])


def alphas_answer_to_an_earlier_read(world: World, run: Run) -> Donors:
    """Bob reads the message once (recorded); alpha's release answer from that read."""
    proxies = passive_read(world, run, "recon")
    exchange = next(e for e in proxies["alpha"].exchanges if e.path == "/v1/releases")
    return Donors(responses=[(exchange.path, exchange.response_body)])


def forged_envelope(world: World, run: Run) -> Donors:
    """The envelope seen on the wire during send, re-signed by a new key that calls itself
    alice (an attacker who can make keys, not steal them)."""
    posted = next(e for e in run.phase("send")[RELAY].exchanges if e.path == "/api/v1/messages")
    envelope = Envelope.from_bytes(posted.request_body)
    impostor = Identity.generate("alice")
    unsigned = dataclasses.replace(
        envelope, header=dataclasses.replace(envelope.header, sender=impostor.public)
    )
    signature = impostor.sign("envelope", unsigned._signed_body())
    forged = dataclasses.replace(unsigned, signature=signature).to_bytes()
    return Donors(responses=[(f"/api/v1/messages/{run.message_id}", forged)])


def forged_release(world: World, run: Run) -> Donors:
    """A release answer made from nothing: a well-formed share of this message, sealed to
    bob and signed by a new key that calls itself bravo."""
    from securecomm.protocol import Release
    from securecomm.shares import Share

    impostor = Identity.generate("bravo")
    fake = Share(bytes.fromhex(run.message_id), 3, 2, bytes(range(32)))
    answer = Release.issue(impostor, fake, run.message_id, world.bob.public).to_json()
    body = json.dumps(answer, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return Donors(responses=[("/v1/releases", body)])


def recipients_swapped(world: World, run: Run) -> None:
    """Tell a swap the proxy did not make from one the custodian took."""
    answers = run.server_answers()
    if not answers or answers[0][0] is None or _refusal(answers[0][0]):
        return
    bravo = world.settings.custodian("bravo")
    with ServiceClient(bravo.url, "bravo", world.carol) as client:
        try:
            client.request("POST", "/v1/releases", body={"v": 1, "message_id": run.message_id})
        except ServiceError:
            pass
        else:
            raise AssertionError(
                "ATTACK SUCCEEDED: bravo released to carol, whom alice never named"
            )
    raise AssertionError(
        "the attack was not made: mitm.py recorded the 'recipients' swap, but bravo took the"
        " deposit with bob alone as recipient: the proxy's field swap looks for the compact"
        " JSON spelling of the value, and the client's bodies use json.dumps' default one"
    )


def _every(state: str) -> dict[str, str]:
    return dict.fromkeys(CUSTODIANS, state)


PASSIVE = Case(
    "passive",
    ALL_LINKS,
    "passive",
    "send and read",
    None,
    "nothing: every exchange of a message to bob and carol, sent and read, is recorded",
    "no plaintext, key or share in any spelling on any link, though the capture holds the"
    " ciphertext and every sealed share",
    (capture_holds_the_traffic, send_ok, read_right()),
    recipients=("bob", "carol"),
)

_RELAY_POST = recorded_request(RELAY, "POST", "/api/v1/messages")
_RELAY_GET_ANSWER = recorded_answer(RELAY, "GET", "/api/v1/messages/ID")
_RELAY_GET_SIGNED = recorded_signed_answer(RELAY, "GET", "/api/v1/messages/ID")
_RELAY_POST_ANSWER = recorded_answer(RELAY, "POST", "/api/v1/messages")
_DEPOSIT = recorded_request("bravo", "POST", "/v1/deposits")
_RECEIPT = recorded_answer("bravo", "POST", "/v1/deposits")
_RELEASE = recorded_request("bravo", "POST", "/v1/releases")
_RELEASE_ANSWER = recorded_answer("bravo", "POST", "/v1/releases")
_FORGED = (
    "three forged copies beside the real one: unsigned, signed by a stranger's key,"
    " re-signed 10 minutes in the past"
)
_WITHDRAWN = "withdraws the other four deposits and posts nothing"


def _relay(
    mode: str,
    match: str,
    *,
    direction: str = "request",
    field_name: str | None = None,
    donors: Donate | None = None,
    signature: str | None = None,
) -> Attack:
    return Attack((RELAY,), mode, direction, match, field_name, donors, signature)


def _bravo(
    mode: str,
    match: str,
    *,
    direction: str = "request",
    field_name: str | None = None,
    donors: Donate | None = None,
) -> Attack:
    return Attack(BRAVO, mode, direction, match, field_name, donors)


CASES: tuple[Case, ...] = (
    # client → relay
    Case(
        "relay-post-flip",
        RELAY_LINK,
        "flip",
        "send",
        _relay("flip", POST_MESSAGE, field_name="ciphertext"),
        "one bit of the ciphertext in the envelope alice posts",
        "the relay refuses it (400 bad_signature); send fails, withdraws every deposit and"
        " stores nothing",
        (
            service_said((400, "bad_signature")),
            send_refused("bad_signature"),
            nothing_posted,
            custody(),
        ),
    ),
    Case(
        "relay-get-flip",
        RELAY_LINK,
        "flip",
        "read",
        _relay("flip", GET_MESSAGE),
        "one bit of the message id in the path of bob's signed GET",
        "the relay refuses it (401 bad_signature: the path is signed); read refuses the relay's"
        " signed refusal as an answer to another path than it asked, no plaintext",
        (
            service_said((401, "bad_signature")),
            send_ok,
            read_refused(AnswerSignatureError, "its path differs"),
        ),
    ),
    Case(
        "relay-post-swap",
        RELAY_LINK,
        "swap",
        "send",
        _relay("swap", POST_MESSAGE, donors=_RELAY_POST),
        "the whole envelope alice posts replaced by the recorded one (another message)",
        "no effect on the relay (200: it already holds that envelope); send sees the stored copy"
        " is not its own and fails (bad_copy); nothing stored under the new id",
        (
            service_said((200, None)),
            send_refused("bad_copy", "stored copy differs"),
            nothing_posted,
            custody(**_every("any")),
        ),
    ),
    Case(
        "relay-post-swap-recipients",
        RELAY_LINK,
        "swap",
        "send",
        _relay("swap", POST_MESSAGE, field_name="recipients", donors=_RELAY_POST),
        "the recipients in the envelope alice posts replaced by the recorded ones (bob, carol)",
        "the relay refuses it (400 bad_signature); send fails, withdraws every deposit",
        (
            service_said((400, "bad_signature")),
            send_refused("bad_signature"),
            nothing_posted,
            custody(),
        ),
    ),
    Case(
        "relay-post-swap-receipts",
        RELAY_LINK,
        "swap",
        "send",
        _relay("swap", POST_MESSAGE, field_name="receipts", donors=_RELAY_POST),
        "the custody receipts (custody references) in the envelope replaced by the recorded ones",
        "the relay refuses it (400 bad_field: the receipts are for another message); send fails,"
        " withdraws every deposit",
        (service_said((400, "bad_field")), send_refused("bad_field"), nothing_posted, custody()),
    ),
    Case(
        "relay-post-replay",
        RELAY_LINK,
        "replay",
        "send",
        _relay("replay", POST_MESSAGE),
        "alice's POST of the envelope sent to the relay a second time",
        "no effect, by design: the same envelope again is answered 200 and stored once (posting"
        " needs no request signature: the envelope carries the sender's)",
        (service_said((200, None)), send_ok, one_copy, read_right()),
    ),
    Case(
        "relay-get-replay",
        RELAY_LINK,
        "replay",
        "read",
        _relay("replay", GET_MESSAGE),
        "bob's signed GET sent a second time (a reused request signature)",
        "the relay refuses the copy (401 replayed_request); read gives the right plaintext",
        (service_said((401, "replayed_request")), send_ok, read_right()),
    ),
    Case(
        "relay-post-drop",
        RELAY_LINK,
        "drop",
        "send",
        _relay("drop", POST_MESSAGE),
        "alice's POST not forwarded, the connection closed",
        "denial of service only: send fails, naming the relay unreachable, withdraws every"
        " deposit; nothing stored",
        (service_said((None, None)), send_refused("unreachable"), nothing_posted, custody()),
    ),
    Case(
        "relay-get-drop",
        RELAY_LINK,
        "drop",
        "read",
        _relay("drop", GET_MESSAGE),
        "bob's GET not forwarded, the connection closed",
        "denial of service only: read fails, naming the relay unreachable; no plaintext",
        (service_said((None, None)), send_ok, read_refused(ServiceError, "unreachable")),
    ),
    Case(
        "relay-post-truncate",
        RELAY_LINK,
        "truncate",
        "send",
        _relay("truncate", POST_MESSAGE),
        "the envelope alice posts cut in half",
        "the relay refuses it (400 bad_format); send fails, withdraws every deposit",
        (service_said((400, "bad_format")), send_refused("bad_format"), nothing_posted, custody()),
    ),
    Case(
        "relay-post-inject",
        RELAY_LINK,
        "inject",
        "send",
        _relay("inject", POST_MESSAGE),
        f"alice's POST: {_FORGED}",
        "no effect, by design: posting is not a signed request (the envelope is signed by its"
        " sender), so each copy is the same envelope again: 200, stored once",
        (service_said((200, None), (200, None), (200, None)), send_ok, one_copy, read_right()),
    ),
    Case(
        "relay-get-inject",
        RELAY_LINK,
        "inject",
        "read",
        _relay("inject", GET_MESSAGE),
        f"bob's signed GET: {_FORGED}",
        "the relay refuses each: 401 missing_signature; 404 not_found (a stranger gets what a"
        " missing message gets); 401 stale_timestamp. Read gives the right plaintext",
        (
            service_said((401, "missing_signature"), (404, "not_found"), (401, "stale_timestamp")),
            send_ok,
            read_right(),
        ),
    ),
    # client → custodian, deposit (send)
    Case(
        "deposit-flip",
        DEPOSIT_LINK,
        "flip",
        "send",
        _bravo("flip", DEPOSITS, field_name="sealed_share"),
        "one bit of the sealed share in alice's signed deposit to bravo (Content-Digest"
        " recomputed)",
        f"bravo refuses it (401 bad_signature); send fails naming bravo, {_WITHDRAWN}",
        (
            service_said((401, "bad_signature")),
            send_refused("deposit_failed", "bravo:"),
            nothing_posted,
            custody(bravo="no_deposit"),
        ),
    ),
    Case(
        "deposit-swap",
        DEPOSIT_LINK,
        "swap",
        "send",
        _bravo("swap", DEPOSITS, donors=_DEPOSIT),
        "alice's deposit to bravo replaced by the recorded deposit to bravo (another message)",
        f"bravo refuses it (401 bad_signature); send fails naming bravo, {_WITHDRAWN}",
        (
            service_said((401, "bad_signature")),
            send_refused("deposit_failed", "bravo:"),
            nothing_posted,
            custody(bravo="no_deposit"),
        ),
    ),
    Case(
        "deposit-swap-recipients",
        DEPOSIT_LINK,
        "swap",
        "send",
        _bravo("swap", DEPOSITS, field_name="recipients", donors=_DEPOSIT),
        "the recipients of alice's deposit to bravo replaced by the recorded ones (bob, carol)",
        f"bravo refuses it (401 bad_signature); send fails naming bravo, {_WITHDRAWN}",
        (
            recipients_swapped,
            service_said((401, "bad_signature")),
            send_refused("deposit_failed", "bravo:"),
            nothing_posted,
            custody(bravo="no_deposit"),
        ),
    ),
    Case(
        "deposit-replay",
        DEPOSIT_LINK,
        "replay",
        "send",
        _bravo("replay", DEPOSITS),
        "alice's signed deposit sent to bravo a second time (a reused request signature)",
        "bravo refuses the copy (401 replayed_request); send and read succeed",
        (service_said((401, "replayed_request")), send_ok, read_right()),
    ),
    Case(
        "deposit-drop",
        DEPOSIT_LINK,
        "drop",
        "send",
        _bravo("drop", DEPOSITS),
        "alice's deposit to bravo not forwarded, the connection closed",
        f"denial of service only: send fails naming bravo unreachable, {_WITHDRAWN}",
        (
            service_said((None, None)),
            send_refused("deposit_failed", "bravo:", "unreachable"),
            nothing_posted,
            custody(bravo="no_deposit"),
        ),
    ),
    Case(
        "deposit-truncate",
        DEPOSIT_LINK,
        "truncate",
        "send",
        _bravo("truncate", DEPOSITS),
        "alice's deposit to bravo cut in half (Content-Digest recomputed)",
        f"bravo refuses it (401 bad_signature); send fails naming bravo, {_WITHDRAWN}",
        (
            service_said((401, "bad_signature")),
            send_refused("deposit_failed", "bravo:"),
            nothing_posted,
            custody(bravo="no_deposit"),
        ),
    ),
    Case(
        "deposit-inject",
        DEPOSIT_LINK,
        "inject",
        "send",
        _bravo("inject", DEPOSITS),
        f"alice's deposit to bravo: {_FORGED}",
        "bravo refuses each: 401 missing_signature; 400 bad_seal (the share is sealed to"
        " bravo for alice, so no one else can lodge it); 401 stale_timestamp. Send and read"
        " succeed",
        (
            service_said((401, "missing_signature"), (400, "bad_seal"), (401, "stale_timestamp")),
            send_ok,
            read_right(),
        ),
    ),
    Case(
        "deposit-answer-flip",
        DEPOSIT_LINK,
        "flip",
        "send",
        _bravo("flip", DEPOSITS, direction="response", field_name="share_digest"),
        "one bit of the share digest in bravo's signed receipt",
        f"send refuses the receipt (bravo's signature fails), {_WITHDRAWN}",
        (
            service_said(),
            send_refused("deposit_failed", "bravo: receipt signature does not"),
            nothing_posted,
            custody(bravo="any"),
        ),
    ),
    Case(
        "deposit-answer-swap-ref",
        DEPOSIT_LINK,
        "swap",
        "send",
        _bravo("swap", DEPOSITS, direction="response", field_name="ref", donors=_RECEIPT),
        "the custody reference in bravo's receipt replaced by the recorded receipt's",
        f"send refuses the receipt (bravo's signature fails), {_WITHDRAWN}",
        (
            service_said(),
            send_refused("deposit_failed", "bravo: receipt signature does not"),
            nothing_posted,
            custody(bravo="any"),
        ),
    ),
    Case(
        "deposit-answer-replay",
        DEPOSIT_LINK,
        "replay",
        "send",
        _bravo("swap", DEPOSITS, direction="response", donors=_RECEIPT),
        "bravo's receipt replaced by its recorded receipt for another message (an old answer"
        " replayed, with the proxy's swap mode)",
        f"send refuses it as a receipt for another share, {_WITHDRAWN}",
        (
            service_said(),
            send_refused("deposit_failed", "bravo: its receipt is for another share"),
            nothing_posted,
            custody(bravo="any"),
        ),
    ),
    Case(
        "deposit-answer-drop",
        DEPOSIT_LINK,
        "drop",
        "send",
        _bravo("drop", DEPOSITS, direction="response"),
        "bravo's receipt withheld, the connection closed (bravo did take the share)",
        f"denial of service only: send fails naming bravo unreachable, {_WITHDRAWN}",
        (
            service_said(),
            send_refused("deposit_failed", "bravo:", "unreachable"),
            nothing_posted,
            custody(bravo="any"),
        ),
    ),
    Case(
        "deposit-answer-truncate",
        DEPOSIT_LINK,
        "truncate",
        "send",
        _bravo("truncate", DEPOSITS, direction="response"),
        "bravo's receipt cut in half",
        f"send refuses bravo's answer as unusable, {_WITHDRAWN}",
        (
            service_said(),
            send_refused("deposit_failed", "bravo: unusable answer"),
            nothing_posted,
            custody(bravo="any"),
        ),
    ),
    # client → custodian, release (read)
    Case(
        "release-flip",
        RELEASE_LINK,
        "flip",
        "read",
        _bravo("flip", RELEASES),
        "one bit of the message id in bob's signed release request to bravo",
        "bravo refuses it (401 bad_signature); read names bravo and gives the right plaintext"
        " from the others",
        (
            service_said((401, "bad_signature")),
            send_ok,
            read_right("bravo", because="bad_signature"),
        ),
    ),
    Case(
        "release-swap",
        RELEASE_LINK,
        "swap",
        "read",
        _bravo("swap", RELEASES, field_name="message_id", donors=_RELEASE),
        "the message id in bob's release request to bravo replaced by the recorded message's",
        "bravo refuses it (401 bad_signature); read names bravo and gives the right plaintext"
        " from the others",
        (
            service_said((401, "bad_signature")),
            send_ok,
            read_right("bravo", because="bad_signature"),
        ),
    ),
    Case(
        "release-replay",
        RELEASE_LINK,
        "replay",
        "read",
        _bravo("replay", RELEASES),
        "bob's signed release request sent to bravo a second time (a replayed release request)",
        "bravo refuses the copy (401 replayed_request); read gives the right plaintext",
        (service_said((401, "replayed_request")), send_ok, read_right()),
    ),
    Case(
        "release-drop",
        RELEASE_LINK,
        "drop",
        "read",
        _bravo("drop", RELEASES),
        "bob's release request to bravo not forwarded, the connection closed",
        "denial of service only: read names bravo unreachable and gives the right plaintext"
        " from the others",
        (service_said((None, None)), send_ok, read_right("bravo", because="unreachable")),
    ),
    Case(
        "release-truncate",
        RELEASE_LINK,
        "truncate",
        "read",
        _bravo("truncate", RELEASES),
        "bob's release request to bravo cut in half (Content-Digest recomputed)",
        "bravo refuses it (401 bad_signature); read names bravo and gives the right plaintext"
        " from the others",
        (
            service_said((401, "bad_signature")),
            send_ok,
            read_right("bravo", because="bad_signature"),
        ),
    ),
    Case(
        "release-inject",
        RELEASE_LINK,
        "inject",
        "read",
        _bravo("inject", RELEASES),
        f"bob's release request to bravo: {_FORGED}",
        "bravo refuses each: 401 missing_signature; 403 not_recipient; 401 stale_timestamp."
        " Read gives the right plaintext",
        (
            service_said(
                (401, "missing_signature"), (403, "not_recipient"), (401, "stale_timestamp")
            ),
            send_ok,
            read_right(),
        ),
    ),
    Case(
        "release-answer-flip",
        RELEASE_LINK,
        "flip",
        "read",
        _bravo("flip", RELEASES, direction="response", field_name="sealed_share"),
        "one bit of the sealed share in bravo's signed release answer",
        "read refuses the answer (bravo's signature fails), names bravo and gives the right"
        " plaintext from the others",
        (
            service_said(),
            send_ok,
            read_right("bravo", because="release signature does not verify under bravo's key"),
        ),
    ),
    Case(
        "release-answer-flip-three",
        RELEASE_LINK,
        "flip",
        "read",
        Attack(("bravo", "charlie", "delta"), "flip", "response", RELEASES, "sealed_share"),
        "one bit of the sealed share in bravo's, charlie's and delta's release answers",
        "read fails with 2 good shares of the 3 needed, naming bravo, charlie and delta and why;"
        " nothing decrypted",
        (
            service_said(),
            send_ok,
            read_refused(
                QuorumError,
                "bravo: release signature",
                "charlie: release signature",
                "delta: release signature",
                "nothing was decrypted",
            ),
        ),
    ),
    Case(
        "release-answer-swap",
        RELEASE_LINK,
        "swap",
        "read",
        _bravo("swap", RELEASES, direction="response", donors=alphas_answer_to_an_earlier_read),
        "bravo's release answer replaced by alpha's answer to bob for the same message"
        " (recorded from an earlier read)",
        "read refuses it as not bravo's, names bravo and gives the right plaintext from the others",
        (
            service_said(),
            send_ok,
            read_right("bravo", because="release: answered as 'alpha', expected 'bravo'"),
        ),
    ),
    Case(
        "release-answer-replay",
        RELEASE_LINK,
        "replay",
        "read",
        _bravo("swap", RELEASES, direction="response", donors=_RELEASE_ANSWER),
        "bravo's release answer replaced by its recorded answer to bob for another message (an"
        " old answer replayed, with the proxy's swap mode)",
        "read refuses it as a share of another message, names bravo and gives the right"
        " plaintext from the others",
        (
            service_said(),
            send_ok,
            read_right("bravo", because="released a share of another message"),
        ),
    ),
    Case(
        "release-answer-drop",
        RELEASE_LINK,
        "drop",
        "read",
        _bravo("drop", RELEASES, direction="response"),
        "bravo's release answer withheld, the connection closed (bravo did release and log it)",
        "denial of service only: read names bravo unreachable and gives the right plaintext"
        " from the others",
        (service_said(), send_ok, read_right("bravo", because="unreachable")),
    ),
    Case(
        "release-answer-truncate",
        RELEASE_LINK,
        "truncate",
        "read",
        _bravo("truncate", RELEASES, direction="response"),
        "bravo's release answer cut in half",
        "read refuses the answer as unusable, names bravo and gives the right plaintext from the"
        " others",
        (service_said(), send_ok, read_right("bravo", because="unusable answer")),
    ),
    Case(
        "release-answer-inject",
        RELEASE_LINK,
        "inject",
        "read",
        _bravo("swap", RELEASES, direction="response", donors=forged_release),
        "bravo's release answer replaced by a forgery: a well-formed share of this message"
        " sealed to bob, signed by a new key named bravo (with the proxy's swap mode)",
        "read refuses it (not signed by bravo's pinned key), names bravo and gives the right"
        " plaintext from the others",
        (
            service_said(),
            send_ok,
            read_right("bravo", because="release signature does not verify under bravo's key"),
        ),
    ),
    # relay → client
    Case(
        "answer-flip",
        ANSWER_LINK,
        "flip",
        "read",
        _relay("flip", GET_MESSAGE, direction="response", field_name="ciphertext"),
        "one bit of the ciphertext in the envelope the relay returns to bob",
        "read refuses the answer (its body is not what the relay signed) and outputs nothing",
        (
            service_said(),
            send_ok,
            read_refused(AnswerSignatureError, "not the one it signed"),
        ),
    ),
    Case(
        "answer-flip-relay-signed",
        ANSWER_LINK,
        "flip",
        "read",
        _relay(
            "flip", GET_MESSAGE, direction="response", field_name="ciphertext", signature="relay"
        ),
        "one bit of the ciphertext in the envelope the relay returns to bob, the answer"
        " re-signed with the relay's own key (the relay itself lies)",
        "read refuses the envelope (alice's signature fails) and outputs nothing",
        (
            service_said(),
            send_ok,
            read_refused(SignatureError, "envelope signature does not verify under alice's key"),
        ),
    ),
    Case(
        "answer-unsigned",
        ANSWER_LINK,
        "unsign",
        "read",
        _relay("unsign", GET_MESSAGE, direction="response"),
        "the relay's signature removed from its answer to bob's GET (the envelope untouched)",
        "read refuses an answer the relay did not sign and outputs nothing",
        (service_said(), send_ok, read_refused(AnswerSignatureError, "carries no")),
    ),
    Case(
        "answer-post-flip",
        ANSWER_LINK,
        "flip",
        "send",
        _relay("flip", POST_MESSAGE, direction="response", field_name="digest", signature="relay"),
        "one bit of the stored copy's digest in the relay's answer to alice's POST, re-signed"
        " with the relay's own key (a relay that lies about its copy)",
        "send reports that the relay's copy differs (bad_copy) and takes everything back:"
        " every deposit withdrawn, the envelope deleted, so bob's read finds nothing",
        (
            service_said(),
            send_refused("bad_copy"),
            custody(),
            read_refused(ServiceError, "not_found"),
        ),
    ),
    Case(
        "answer-post-forged",
        ANSWER_LINK,
        "inject",
        "send",
        _relay(
            "swap",
            POST_MESSAGE,
            direction="response",
            field_name="size",
            donors=_RELAY_POST_ANSWER,
            signature="impostor",
        ),
        "the relay's receipt for alice's POST forged: its size taken from the recorded receipt"
        " (id and digest still right) and signed by a key of the attacker's that calls itself"
        " the relay (with the proxy's swap mode)",
        "send refuses a receipt signed by another key than the relay's pinned one, and takes"
        " everything back: every deposit withdrawn, the envelope deleted, so bob's read finds"
        " nothing",
        (
            service_said(),
            send_refused_unsigned("signed by another key", "the relay's copy was deleted"),
            custody(),
            read_refused(ServiceError, "not_found"),
        ),
    ),
    Case(
        "answer-post-unsigned",
        ANSWER_LINK,
        "unsign",
        "send",
        _relay("unsign", POST_MESSAGE, direction="response"),
        "the relay's signature removed from its receipt for alice's POST (the receipt itself"
        " untouched, its digest right)",
        "send refuses a receipt the relay did not sign and takes everything back: every"
        " deposit withdrawn, the envelope deleted, so bob's read finds nothing",
        (
            service_said(),
            send_refused_unsigned("carries no", "the relay's copy was deleted"),
            custody(),
            read_refused(ServiceError, "not_found"),
        ),
    ),
    Case(
        "answer-swap",
        ANSWER_LINK,
        "swap",
        "read",
        _relay(
            "swap",
            GET_MESSAGE,
            direction="response",
            field_name="ciphertext",
            donors=_RELAY_GET_ANSWER,
            signature="relay",
        ),
        "the ciphertext in the envelope returned to bob replaced by the recorded message's, the"
        " answer re-signed with the relay's own key (the relay itself lies)",
        "read refuses the envelope (alice's signature fails) and outputs nothing",
        (
            service_said(),
            send_ok,
            read_refused(SignatureError, "envelope signature does not verify under alice's key"),
        ),
    ),
    Case(
        "answer-replay",
        ANSWER_LINK,
        "replay",
        "read",
        _relay("swap", GET_MESSAGE, direction="response", donors=_RELAY_GET_SIGNED),
        "the relay's answer to bob's GET replaced by its recorded answer to bob's GET of another"
        " message, with the relay's signature it was recorded with (an old answer replayed, with"
        " the proxy's swap mode)",
        "read refuses a signed answer to another request (its path and nonce are not this"
        " request's) and outputs nothing",
        (
            service_said(),
            send_ok,
            read_refused(AnswerSignatureError, "another request (its path, nonce differ)"),
        ),
    ),
    Case(
        "answer-drop",
        ANSWER_LINK,
        "drop",
        "read",
        _relay("drop", GET_MESSAGE, direction="response"),
        "the relay's answer to bob's GET withheld, the connection closed",
        "denial of service only: read fails naming the relay unreachable; no plaintext",
        (service_said(), send_ok, read_refused(ServiceError, "unreachable")),
    ),
    Case(
        "answer-truncate",
        ANSWER_LINK,
        "truncate",
        "read",
        _relay("truncate", GET_MESSAGE, direction="response"),
        "the envelope returned to bob cut in half",
        "read refuses the answer (its body is not what the relay signed) and outputs nothing",
        (service_said(), send_ok, read_refused(AnswerSignatureError, "not the one it signed")),
    ),
    Case(
        "answer-inject",
        ANSWER_LINK,
        "inject",
        "read",
        _relay(
            "swap", GET_MESSAGE, direction="response", donors=forged_envelope, signature="relay"
        ),
        "the envelope returned to bob replaced by a forgery: the real one with its sender's key"
        " swapped for a new key named alice, re-signed with it, and the answer signed with the"
        " relay's own key (the relay itself lies; with the proxy's swap mode)",
        "read refuses it: alice's key is pinned, and the error names both fingerprints",
        (service_said(), send_ok, read_refused(KeyChangedError, "the key of 'alice' changed")),
    ),
    # relay → client: bob's inbox
    Case(
        "inbox-answer-empty",
        ANSWER_LINK,
        "inject",
        "inbox",
        _relay(
            "swap",
            INBOX,
            direction="response",
            donors=forged_answer("/api/v1/inbox", b'{"messages":[],"next":null}\n'),
        ),
        "the relay's answer to bob's inbox replaced by an empty page, the relay's signature left"
        " on it (with the proxy's swap mode)",
        "inbox refuses the page (its body is not what the relay signed) and lists nothing",
        (service_said(), send_ok, inbox_refused("not the one it signed"), read_right()),
    ),
    Case(
        "inbox-answer-entry-removed",
        ANSWER_LINK,
        "inject",
        "inbox",
        _relay(
            "swap",
            INBOX,
            direction="response",
            donors=bobs_inbox_without_an_entry,
            signature="strip",
        ),
        "the relay's answer to bob's inbox with the new message left out, and the relay's"
        " signature removed (with the proxy's swap mode)",
        "inbox refuses a page the relay did not sign and lists nothing",
        (service_said(), send_ok, inbox_refused("carries no"), read_right()),
    ),
    Case(
        "inbox-answer-entry-removed-resigned",
        ANSWER_LINK,
        "inject",
        "inbox",
        _relay(
            "swap",
            INBOX,
            direction="response",
            donors=bobs_inbox_without_an_entry,
            signature="impostor",
        ),
        "the relay's answer to bob's inbox with the new message left out, signed by a key of"
        " the attacker's that calls itself the relay (with the proxy's swap mode)",
        "inbox refuses a page signed by another key than the relay's pinned one, naming both"
        " fingerprints, and lists nothing",
        (service_said(), send_ok, inbox_refused("signed by another key"), read_right()),
    ),
    Case(
        "inbox-answer-replay",
        ANSWER_LINK,
        "replay",
        "inbox",
        _relay("swap", INBOX, direction="response", donors=the_attackers_own_empty_inbox),
        "the relay's answer to bob's inbox replaced by a genuine one: the empty inbox the relay"
        " signed for the attacker's own request (with the proxy's swap mode)",
        "inbox refuses a signed answer to another request (its nonce and caller are not bob's"
        " request's) and lists nothing",
        (
            service_said(),
            send_ok,
            inbox_refused("another request (its nonce, caller differ)"),
            read_right(),
        ),
    ),
    # relay → client: the directory, for a contact alice has not pinned yet
    Case(
        "directory-answer-swap-resigned",
        ANSWER_LINK,
        "swap",
        "send",
        _relay(
            "swap",
            DAVE_ENTRY,
            direction="response",
            donors=daves_entry_with_another_key,
            signature="impostor",
        ),
        "the directory's answer for dave (whom alice writes to first) replaced by an entry"
        " with the attacker's key, signed by a key of the attacker's that calls itself the relay",
        "send refuses the entry (signed by another key than the relay's pinned one) before any"
        " deposit; dave's key is not pinned; nothing encrypted, deposited or posted",
        (
            service_said(),
            send_refused_unsigned("signed by another key"),
            not_pinned("dave"),
            nothing_encrypted,
        ),
        recipients=("bob", "dave"),
    ),
    Case(
        "directory-answer-swap-unsigned",
        ANSWER_LINK,
        "swap",
        "send",
        _relay(
            "swap",
            DAVE_ENTRY,
            direction="response",
            donors=daves_entry_with_another_key,
            signature="strip",
        ),
        "the directory's answer for dave (whom alice writes to first) replaced by an entry"
        " with the attacker's key, unsigned",
        "send refuses an entry the relay did not sign before any deposit; dave's key is not"
        " pinned; nothing encrypted, deposited or posted",
        (
            service_said(),
            send_refused_unsigned("carries no"),
            not_pinned("dave"),
            nothing_encrypted,
        ),
        recipients=("bob", "dave"),
    ),
    Case(
        "directory-answer-replay",
        ANSWER_LINK,
        "replay",
        "send",
        Attack(
            (RELAY,),
            "swap",
            "response",
            DAVE_ENTRY,
            donors=recorded_signed_answer(
                RELAY, "GET", "/api/v1/directory/carol", served_at="/api/v1/directory/dave"
            ),
        ),
        "the directory's answer for dave replaced by its recorded answer for carol, with the"
        " relay's signature it was recorded with (an old answer replayed, with the proxy's swap"
        " mode)",
        "send refuses a signed answer to another request (its path and nonce differ) before"
        " any deposit; dave's key is not pinned; nothing encrypted, deposited or posted",
        (
            service_said(),
            send_refused_unsigned("another request (its path, nonce differ)"),
            not_pinned("dave"),
            nothing_encrypted,
        ),
        recipients=("bob", "dave"),
    ),
)

"""What only a database server can race: the services on PostgreSQL with four gunicorn
workers each, so concurrent requests are served by different processes on different
connections. SQLite serializes every write transaction (BEGIN IMMEDIATE); PostgreSQL's
READ COMMITTED does not, so each check-then-act must lock what it checks. Each test
repeats its race a few times; each failed before the views locked (see git log).

- Burn after reading (and ``max_releases`` 2): 8 clients read one message at once, each
  asking all five custodians together. Each custodian releases exactly ``max_releases``
  times and refuses the rest as destroyed, at most that many reads succeed (each with the
  message sent), and each custodian's audit log records exactly those releases, one burn
  and the refusals.
- Concurrent audit appends: deposits and refusals at one custodian at once, each
  appending an audit entry in its own transaction; every request succeeds, and the log
  is one chain (seq 1, 2, 3, ... each entry linked to the one before, no link used
  twice) holding each request's entry once.
- Identical requests at once (a client retrying before its first try is answered): one
  envelope posted to the relay, one deposit, one directory registration; one is stored,
  the others answered as repetitions are, none with a 500.
- Look-alike names at once: people register names that differ only by separators at the
  same moment; one is listed, the others refused as its look-alikes.
- Deletions at once: every recipient deletes a message at the same moment, and the
  sender unsends each share twice at once; the relay no longer holds the envelope, and
  each custodian logs one deletion.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from securecomm import httpsig
from securecomm.custodian import audit as audit_log
from securecomm.envelope import Envelope, Policy, prepare
from securecomm.identity import Identity, PublicIdentity
from securecomm.protocol import DepositRequest, Release
from securecomm.shares import Share
from tests.backends import Backend

from .conftest import NAMES, Service, Stack, start_stack, stop_stack
from .test_cli_system import audit
from .test_services import custodian_keys, send

WORKERS = 4
CLIENTS = 8
TRIALS = 3
FRESH = itertools.count(1)


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, postgresql: Backend) -> Iterator[Stack]:
    """The relay and five custodians on PostgreSQL, four workers each."""
    stack = start_stack(tmp_path_factory.mktemp("busy") / "home", postgresql, workers=WORKERS)
    try:
        yield stack
    finally:
        stop_stack(stack)


def at_once(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run every action in a thread of its own, all released together; their results (an
    action's exception is raised here)."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)
    errors: list[BaseException] = []

    def run(index: int, action: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = action()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a request never finished"
    if errors:
        raise errors[0]
    return results


def signed(
    service: Service, who: Identity, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """One request signed by ``who`` for ``service``, on a connection of its own."""
    content = b"" if body is None else json.dumps(body).encode()
    headers = httpsig.sign_request(
        who, method=method, path=path, body=content, audience=service.name
    )
    if body is not None:
        headers["Content-Type"] = "application/json"
    return httpx.request(method, service.url + path, content=content, headers=headers, timeout=60)


def chain_of(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Custodian ``name``'s whole audit log, checked to be one unforked chain."""
    entries = audit(stack.home, stack.custodians[name].url, name)
    key = custodian_keys(stack)[name]
    assert audit_log.verify(entries, key) == audit_log.AuditReport(len(entries)), name
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), name
    links = [e["prev"] for e in entries]
    assert links == [audit_log.GENESIS, *(e["hash"] for e in entries[:-1])], name
    assert len(set(links)) == len(links), f"{name}: two entries follow the same one"
    return entries


# Burn after reading, raced


def read_at_once(
    stack: Stack, readers: list[Identity], envelope: Envelope, keys: dict[str, PublicIdentity]
) -> tuple[dict[str, list[str]], list[bytes]]:
    """``CLIENTS`` reads of ``envelope`` at once, one by each of ``readers``, each asking
    every custodian together: each custodian's answers ("200" or "status code"), and the
    plaintext of each read that got enough shares."""
    body = {"v": 1, "message_id": envelope.id}
    asks = [
        (client, name, functools.partial(signed, stack.custodians[name], readers[client],
                                         "POST", "/v1/releases", body))
        for client in range(CLIENTS)
        for name in NAMES
    ]  # fmt: skip
    answers = at_once([ask for _, _, ask in asks])
    said: dict[str, list[str]] = {name: [] for name in NAMES}
    shares: dict[int, dict[str, Share]] = {client: {} for client in range(CLIENTS)}
    for (client, name, _), answer in zip(asks, answers, strict=True):
        if answer.status_code == 200:
            release = Release.from_json(answer.json())
            shares[client][name] = release.open(readers[client], keys[name])
            said[name].append("200")
        else:
            said[name].append(f"{answer.status_code} {answer.json().get('code')}")
    reads = [envelope.open(got) for got in shares.values() if len(got) >= envelope.header.threshold]
    return said, reads


@pytest.mark.parametrize("max_releases", [1, 2])
def test_concurrent_reads_never_release_a_share_more_than_max_releases(
    busy: Stack, max_releases: int
) -> None:
    """``CLIENTS`` recipients read at once: ``max_releases`` of them get each share, so at
    most one can read a burn-after-reading message."""
    alice = Identity.generate("alice")
    readers = [Identity.generate(f"reader{chr(ord('a') + i)}") for i in range(CLIENTS)]
    keys = custodian_keys(busy)
    expected = {"200": max_releases, "410 destroyed": CLIENTS - max_releases}
    for trial in range(TRIALS):
        text = f"read at most {max_releases} time(s), trial {trial}".encode()
        envelope, _ = send(busy, alice, readers, text, Policy(max_releases=max_releases))
        said, reads = read_at_once(busy, readers, envelope, keys)
        answered = {name: dict(Counter(said[name])) for name in NAMES}
        assert answered == dict.fromkeys(NAMES, expected), f"trial {trial}: {answered}"
        # Each custodian counts its own share's releases (spec 7.2), and each may release to
        # other readers: n * max_releases shares in all, t to a read. Burn (1): one read.
        assert len(reads) <= len(NAMES) * max_releases // envelope.header.threshold
        assert all(plaintext == text for plaintext in reads)
        for name in NAMES:
            events = Counter(
                e["event"]
                for e in chain_of(busy, name)
                if e["data"].get("message_id") == envelope.id
            )
            assert events["release"] == max_releases, (name, events)
            assert events["burn"] == 1, (name, events)
            assert events["refusal"] == CLIENTS - max_releases, (name, events)


def test_one_readers_concurrent_reads_are_released_each_share_once(busy: Stack) -> None:
    """One recipient reading ``CLIENTS`` times at once (say, a read retried while the first
    still waits) is released each share once and given the same answer the other times
    (spec section 12.2): the share is burnt once, for that reader."""
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    keys = custodian_keys(busy)
    for trial in range(TRIALS):
        text = f"one reader, trial {trial}".encode()
        envelope, _ = send(busy, alice, [bob], text, Policy(max_releases=1))
        said, reads = read_at_once(busy, [bob] * CLIENTS, envelope, keys)
        assert said == dict.fromkeys(NAMES, ["200"] * CLIENTS), f"trial {trial}: {said}"
        assert reads == [text] * CLIENTS
        for name in NAMES:
            events = Counter(
                e["event"]
                for e in chain_of(busy, name)
                if e["data"].get("message_id") == envelope.id
            )
            assert events["release"] == 1 and events["burn"] == 1, (name, events)
            assert events["release_repeated"] == CLIENTS - 1, (name, events)


# Concurrent audit appends


def test_concurrent_audit_appends_make_one_chain(busy: Stack) -> None:
    alice, bob, eve = (Identity.generate(n) for n in ("alice", "bob", "eve"))
    keys = custodian_keys(busy)
    alpha = busy.custodians["alpha"]
    target, _ = send(busy, alice, [bob], b"eve may not read this")
    for _ in range(TRIALS):
        before = len(chain_of(busy, "alpha"))
        drafts = [
            prepare(
                f"deposit {i}".encode(),
                sender=alice.public,
                recipients=[bob.public],
                custodians=[(name, keys[name].fingerprint) for name in NAMES],
                threshold=3,
            )
            for i in range(16)
        ]
        deposits = [
            functools.partial(
                signed, alpha, alice, "POST", "/v1/deposits",
                DepositRequest.for_draft(draft, 0, keys["alpha"], alice.public).to_json(),
            )
            for draft in drafts
        ]  # fmt: skip
        refusals = [
            functools.partial(
                signed, alpha, eve, "POST", "/v1/releases", {"v": 1, "message_id": target.id}
            )
            for _ in range(16)
        ]
        answers = at_once([*deposits, *refusals])
        codes = Counter(answer.status_code for answer in answers)
        assert codes == {201: len(deposits), 403: len(refusals)}, f"{dict(codes)}"
        entries = chain_of(busy, "alpha")[before:]
        assert len(entries) == len(deposits) + len(refusals)
        refs = [a.json()["ref"] for a in answers[: len(deposits)]]
        logged = [e["data"]["ref"] for e in entries if e["event"] == "deposit"]
        assert sorted(logged) == sorted(refs)
        refused = [e for e in entries if e["event"] == "refusal"]
        assert len(refused) == len(refusals)
        assert {e["data"]["requester"] for e in refused} == {eve.public.fingerprint_hex}


# Identical requests at once


def identical_posts(stack: Stack, alice: Identity, bob: Identity) -> list[Callable[[], Any]]:
    """The same envelope posted ``CLIENTS`` times (it needs no signature of the poster)."""
    envelope, _ = send(stack, alice, [bob], b"posted twice", post=False)
    raw = envelope.to_bytes()
    post = functools.partial(
        httpx.post,
        f"{stack.relay.url}/api/v1/messages",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    return [post] * CLIENTS


def identical_deposits(stack: Stack, alice: Identity, bob: Identity) -> list[Callable[[], Any]]:
    """The same deposit (each request signed afresh) ``CLIENTS`` times."""
    keys = custodian_keys(stack)
    draft = prepare(
        b"deposited twice",
        sender=alice.public,
        recipients=[bob.public],
        custodians=[(name, keys[name].fingerprint) for name in NAMES],
        threshold=3,
    )
    deposit = DepositRequest.for_draft(draft, 0, keys["alpha"], alice.public).to_json()
    alpha = stack.custodians["alpha"]
    return [functools.partial(signed, alpha, alice, "POST", "/v1/deposits", deposit)] * CLIENTS


def identical_registrations(
    stack: Stack, alice: Identity, _bob: Identity
) -> list[Callable[[], Any]]:
    """alice's first directory entry, registered ``CLIENTS`` times."""
    body = {"v": 1, "identity": alice.public.to_json()}
    path = f"/api/v1/directory/{alice.name}"
    return [functools.partial(signed, stack.relay, alice, "PUT", path, body)] * CLIENTS


@pytest.mark.parametrize(
    ("requests", "first", "again"),
    [
        (identical_posts, 201, 200),
        (identical_deposits, 201, 409),
        (identical_registrations, 201, 200),
    ],
    ids=["envelope", "deposit", "directory"],
)
def test_identical_requests_at_once_store_one(
    busy: Stack,
    requests: Callable[[Stack, Identity, Identity], list[Callable[[], Any]]],
    first: int,
    again: int,
) -> None:
    """As on SQLite: the first is stored, the others answered as its repetitions."""
    for _ in range(TRIALS):
        # A name of its own each time: the relay's directory keeps the first key of a name.
        alice = Identity.generate(f"alice{next(FRESH)}")
        bob = Identity.generate("bob")
        answers = at_once(requests(busy, alice, bob))
        codes = Counter(answer.status_code for answer in answers)
        assert codes == {first: 1, again: CLIENTS - 1}, f"{dict(codes)}"


def test_look_alike_names_registered_at_once_list_one(busy: Stack) -> None:
    """``CLIENTS`` people register names that differ only by separators (spec 14.6) at the
    same moment, each with a key of their own: one is listed, every other is refused as
    its look-alike. Each request's check saw no entry yet until the check took a lock."""
    spellings = ["carol", "c.arol", "ca-rol", "car_ol", "c-a.rol", "c_a-r.ol", "ca.r-ol", "c.a.rol"]
    assert len(spellings) == CLIENTS
    for _ in range(TRIALS * 10):
        trial = next(FRESH)
        people = [Identity.generate(f"{name}{trial}") for name in spellings]
        answers = at_once(
            [
                functools.partial(
                    signed,
                    busy.relay,
                    who,
                    "PUT",
                    f"/api/v1/directory/{who.name}",
                    {"v": 1, "identity": who.public.to_json()},
                )
                for who in people
            ]
        )
        said = Counter(
            (a.status_code, None if a.status_code == 201 else a.json().get("code")) for a in answers
        )
        assert said == {(201, None): 1, (403, "lookalike_name"): CLIENTS - 1}, f"{dict(said)}"


# Deletions at once


def test_every_recipient_deleting_at_once_deletes_the_message(busy: Stack) -> None:
    """The relay drops an envelope when its last recipient deletes it, however many do so
    at the same moment; each custodian logs an unsend once, however often it is asked."""
    alice = Identity.generate("alice")
    readers = [Identity.generate(f"reader{i}") for i in range(CLIENTS)]
    for _ in range(TRIALS):
        envelope, receipts = send(busy, alice, readers, b"deleted by all")
        path = f"/api/v1/messages/{envelope.id}"
        deletes = [
            functools.partial(signed, busy.relay, reader, "DELETE", path) for reader in readers
        ]
        unsends = [
            functools.partial(
                signed, busy.custodians[r.custodian], alice, "DELETE",
                f"/v1/deposits/{r.ref}",
            )
            for r in receipts
            for _ in range(2)
        ]  # fmt: skip
        answers = at_once([*deletes, *unsends])
        assert {answer.status_code for answer in answers} == {204}
        gone = signed(busy.relay, alice, "GET", path)
        assert gone.status_code == 404, (
            f"every recipient deleted it, the relay kept it: {gone.status_code}"
        )
        for receipt in receipts:
            logged = [
                e
                for e in chain_of(busy, receipt.custodian)
                if e["event"] == "delete" and e["data"]["ref"] == receipt.ref
            ]
            assert len(logged) == 1, (receipt.custodian, logged)

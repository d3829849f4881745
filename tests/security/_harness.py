"""The machinery of the attack suite: a world of real services, proxies, one run per case.

A *world* is the relay and five custodians (real gunicorn processes on
loopback, started once), a home with alice, bob and carol, and a
*recording*: one message alice sent to bob and carol, and bob read, through
passive proxies. The recording is what an attacker on the wire keeps, and
gives the swap and replay attacks their old material.

A *run* plays one case: alice sends a message to bob, bob reads it, every
call of both through a fresh proxy in front of each service (relay and
custodians). The proxies in front of the case's targets attack, in the
phase (send or read) the case says; the others only watch. A case of the
phase *inbox* has bob list his inbox between the two, through the attacking
proxies. Then the
checks every case shares: no secret of the run (the plaintext, the message
key, each share) in any spelling on any link, no alarm from any proxy, the
attack was actually made, and no plaintext but the one sent ever returned.
Then the case's own checks: who refused, with which code or message.

The suite runs on each storage backend (one world for each). Each result on SQLite goes
to :data:`RESULTS`, which the last test renders into docs/security.md with
tools/security_doc.py; a result on another backend goes to :data:`RESULTS_ON`, and the
last test checks it is the same.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from securecomm import shares as shares_mod
from securecomm.client import flows
from securecomm.client.transport import ServiceClient
from securecomm.client.trust import KnownKeys
from securecomm.config import Settings
from securecomm.envelope import Draft, prepare
from securecomm.errors import SecureCommError, ServiceError
from securecomm.identity import Identity
from securecomm.testing.mitm import Alteration, Exchange, Proxy, SharedCapture, encodings_of

__all__ = [
    "LINKS",
    "RESULTS",
    "RESULTS_ON",
    "Attack",
    "Case",
    "Donors",
    "Run",
    "World",
    "leaks",
    "normalize",
    "record",
    "run_case",
    "stop_proxies",
]

SEED = 20261129  # the proxies' random choices (which bit is flipped)
READ_DEADLINE = 10.0
RELAY = "relay"
CUSTODIANS = ("alpha", "bravo", "charlie", "delta", "echo")

RELAY_LINK = "client → relay"
DEPOSIT_LINK = "client → custodian (deposit)"
RELEASE_LINK = "client → custodian (release)"
ANSWER_LINK = "relay → client"
ALL_LINKS = "every link"
LINKS = (ALL_LINKS, RELAY_LINK, DEPOSIT_LINK, RELEASE_LINK, ANSWER_LINK)

#: One dict per case played, in the order played; rendered by tools/security_doc.py.
RESULTS: list[dict[str, Any]] = []
#: The results on each backend but SQLite, by backend, in the same form.
RESULTS_ON: dict[str, list[dict[str, Any]]] = {}


@dataclass
class World:
    home: Path
    settings: Settings
    alice: Identity
    bob: Identity
    carol: Identity
    #: Registered in the relay's directory, pinned by no one: a contact alice writes to first.
    dave: Identity
    #: The recorded message: every exchange each passive proxy saw, by service name.
    recording: dict[str, list[Exchange]] = field(default_factory=dict)
    recorded_id: str = ""
    #: Where its services store: "sqlite" or "postgresql" (tests/backends.py).
    backend: str = "sqlite"

    def known(self) -> KnownKeys:
        return KnownKeys.load(self.home)

    def identity(self, name: str) -> Identity:
        people = {"alice": self.alice, "bob": self.bob, "carol": self.carol, "dave": self.dave}
        return people[name]

    def relay_identity(self) -> Identity:
        """The relay's own key, for the cases where the relay itself lies."""
        return Identity.load(self.settings.relay_dir() / "identity.key")

    def upstreams(self) -> dict[str, str]:
        return {RELAY: self.settings.server_url} | {c.name: c.url for c in self.settings.custodians}

    def recorded(self, service: str, method: str, path: str) -> Exchange:
        """The recorded exchange of ``service`` whose route is ``method path`` (ids as ID)."""
        for exchange in self.recording[service]:
            if exchange.method == method and _route(exchange.path) == path:
                return exchange
        raise LookupError(f"no {method} {path} recorded on {service}")

    # Looking behind the proxies: what the services hold, asked directly.

    def relay_answer(self, message_id: str) -> str:
        """``stored`` if bob can fetch ``message_id`` from the relay, else the error code."""
        with ServiceClient(self.settings.server_url, RELAY, self.bob) as relay:
            try:
                relay.request("GET", f"/api/v1/messages/{message_id}")
            except ServiceError as exc:
                return exc.code
        return "stored"

    def copies_in_inbox(self, message_id: str) -> int:
        return sum(1 for m in flows.inbox(self.settings, self.bob) if m["id"] == message_id)

    def custody(self, message_id: str) -> dict[str, str]:
        """Per custodian: ``held`` if it releases its share of the message to bob, else why not."""
        states = {}
        for custodian in self.settings.custodians:
            with ServiceClient(custodian.url, custodian.name, self.bob) as client:
                try:
                    client.request("POST", "/v1/releases", body={"v": 1, "message_id": message_id})
                    states[custodian.name] = "held"
                except ServiceError as exc:
                    states[custodian.name] = exc.code
        return states


@dataclass
class Donors:
    """What the attacker recorded before the attack, for swap to draw from."""

    requests: list[tuple[str, bytes]] = field(default_factory=list)
    responses: list[tuple[str, bytes]] = field(default_factory=list)
    #: The relay's signature each recorded answer came with, by (path, body).
    answer_signatures: dict[tuple[str, bytes], str] = field(default_factory=dict)


#: A key of the attacker's own that calls itself the relay.
IMPOSTOR_RELAY = Identity.generate("relay")


@dataclass(frozen=True)
class Attack:
    """Which proxies attack (by service name), and how.

    ``signature`` is what becomes of the relay's signature on an altered answer: None
    keeps it (or the one a whole answer swapped in was recorded with), ``"strip"``
    removes it, ``"impostor"`` re-signs with a key of the attacker's that calls itself
    the relay, ``"relay"`` with the relay's own key (the relay itself lies).
    """

    targets: tuple[str, ...]
    mode: str
    direction: str = "request"
    match: str | None = None
    field_name: str | None = None
    donors: Callable[[World, Run], Donors] | None = None
    signature: str | None = None

    def answer_signature(self, world: World) -> Identity | str | None:
        if self.signature == "relay":
            return world.relay_identity()
        if self.signature == "impostor":
            return IMPOSTOR_RELAY
        return self.signature


Check = Callable[["World", "Run"], "str | None"]


@dataclass(frozen=True)
class Case:
    id: str
    link: str
    mode: str  # the attack as reported; the proxy's mode is attack.mode
    phase: str  # "send", "inbox" or "read": the flow that goes through the attacking proxies
    attack: Attack | None
    altered: str
    expected: str
    checks: tuple[Check, ...] = ()
    recipients: tuple[str, ...] = ("bob",)

    @property
    def direction(self) -> str:
        return self.attack.direction if self.attack else "both"


@dataclass
class Run:
    case: Case
    message: bytes
    drafts: list[Draft] = field(default_factory=list)
    sent: flows.SendResult | None = None
    send_error: SecureCommError | None = None
    listed: list[dict[str, Any]] | None = None  # bob's inbox, in an inbox case
    inbox_error: SecureCommError | None = None
    result: flows.ReadResult | None = None
    read_error: SecureCommError | None = None
    warnings: list[str] = field(default_factory=list)
    proxies: dict[str, list[Proxy]] = field(default_factory=dict)  # by phase
    attackers: list[Proxy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def message_id(self) -> str:
        assert self.drafts, "send did not get as far as encrypting"
        return self.drafts[0].header.id

    def all_proxies(self) -> list[Proxy]:
        return [proxy for phase in self.proxies.values() for proxy in phase]

    def phase(self, name: str) -> dict[str, Proxy]:
        """The proxies of one phase by service name (relay first, then the custodians)."""
        names = (RELAY, *CUSTODIANS)
        return dict(zip(names, self.proxies[name], strict=True))

    def alterations(self) -> list[Alteration]:
        return [a for proxy in self.attackers for a in proxy.alterations]

    def server_answers(self) -> list[tuple[int | None, str | None]]:
        return [(a.status, a.code) for a in self.alterations() if a.victim == "server"]

    def secrets(self) -> list[bytes]:
        """The plaintext, the message key and every share (encoded, and its raw value)."""
        found = [self.message]
        for draft in self.drafts:
            found.append(shares_mod.combine(list(draft.shares[: draft.header.threshold])))
            for share in draft.shares:
                found += [share.to_bytes(), share.value]
        return found


def _route(path: str) -> str:
    return re.sub(r"/[0-9a-f]{32}", "/ID", path)


def leaks(proxies: Sequence[Proxy], secrets: Sequence[bytes]) -> list[str]:
    """Every (proxy, secret) where some spelling of the secret is in what the proxy captured."""
    found = []
    for proxy in proxies:
        captured = proxy.captured()
        for number, secret in enumerate(secrets, start=1):
            if any(spelling in captured for spelling in encodings_of(secret)):
                found.append(f"secret #{number} seen on the link to {proxy.upstream}")
    return found


@contextmanager
def _proxies(
    world: World, run: Run, phase: str, attack: Attack | None, donors: Donors
) -> Iterator[Settings]:
    """Start one proxy per service; yield settings that send every call through them."""
    shared = SharedCapture(
        requests=list(donors.requests),
        responses=list(donors.responses),
        answer_signatures=dict(donors.answer_signatures),
    )
    started: list[Proxy] = []
    watch = run.secrets()
    try:
        for name, upstream in world.upstreams().items():
            if attack is not None and name in attack.targets:
                proxy = Proxy(
                    upstream,
                    mode=attack.mode,
                    field_name=attack.field_name,
                    match=attack.match,
                    direction=attack.direction,
                    limit=1,
                    watch=watch,
                    shared=shared,
                    seed=SEED,
                    answer_signature=attack.answer_signature(world),
                )
                run.attackers.append(proxy)
            else:
                proxy = Proxy(upstream, watch=watch)
            started.append(proxy.start())
        run.proxies[phase] = started
        by_name = run.phase(phase)
        yield dataclasses.replace(
            world.settings,
            server_url=by_name[RELAY].url,
            custodians=tuple(
                dataclasses.replace(c, url=by_name[c.name].url) for c in world.settings.custodians
            ),
        )
    finally:
        for proxy in started:
            _STOPPING.append(_STOPPER.submit(proxy.stop))


# A proxy takes up to half a second to stop (its server polls for shutdown that often):
# stop them in the background, all at once, and wait for them at the end of the session.
_STOPPER = ThreadPoolExecutor(max_workers=16, thread_name_prefix="proxy-stop")
_STOPPING: list[Future[None]] = []


def stop_proxies() -> None:
    """Wait until every proxy has stopped; raise if one could not."""
    for future in _STOPPING:
        future.result(timeout=30)
    _STOPPING.clear()


def passive_read(world: World, run: Run, phase: str) -> dict[str, Proxy]:
    """Bob reads the run's message through passive proxies (an exchange the attacker records)."""
    with _proxies(world, run, phase, None, Donors()) as settings:
        result = flows.read(
            settings, world.known(), world.bob, run.message_id, deadline=READ_DEADLINE
        )
    assert result.plaintext == run.message, "ATTACK SUCCEEDED: a wrong plaintext was output"
    return run.phase(phase)


def run_case(world: World, case: Case, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Alice sends, bob reads, both through proxies; the case's attack in its phase."""
    run = Run(case, f"case {case.id}: the vault code is 4-8-15-16-23-42".encode())

    def recording_prepare(*args: Any, **kwargs: Any) -> Draft:
        draft = prepare(*args, **kwargs)
        run.drafts.append(draft)
        # The proxies already running learn the secrets the moment they exist.
        for proxy in run.all_proxies():
            proxy.watch += [(s, encodings_of(s)) for s in run.secrets()[1:]]
        return draft

    monkeypatch.setattr(flows, "prepare", recording_prepare)
    attack = case.attack

    def donors() -> Donors:
        return attack.donors(world, run) if attack and attack.donors else Donors()

    in_send = attack if case.phase == "send" else None
    with _proxies(world, run, "send", in_send, donors() if in_send else Donors()) as settings:
        try:
            run.sent = flows.send(
                settings,
                world.known(),
                world.alice,
                list(case.recipients),
                run.message,
                warn=run.warnings.append,
            )
        except SecureCommError as exc:
            run.send_error = exc
    monkeypatch.setattr(flows, "prepare", prepare)
    if not run.drafts:
        return run  # send stopped before encrypting: there is no message to list or read
    if case.phase == "inbox":
        with _proxies(world, run, "inbox", attack, donors()) as settings:
            try:
                run.listed = flows.inbox(settings, world.bob)
            except SecureCommError as exc:
                run.inbox_error = exc
    in_read = attack if case.phase == "read" else None
    with _proxies(world, run, "read", in_read, donors() if in_read else Donors()) as settings:
        try:
            run.result = flows.read(
                settings,
                world.known(),
                world.bob,
                run.message_id,
                deadline=READ_DEADLINE,
                warn=run.warnings.append,
            )
        except SecureCommError as exc:
            run.read_error = exc
    return run


def common_checks(run: Run) -> None:
    """What every case must show, whatever the attack."""
    found = leaks(run.all_proxies(), run.secrets())
    assert not found, f"ATTACK SUCCEEDED: a secret crossed the wire: {found}"
    alarms = [alarm for proxy in run.all_proxies() for alarm in proxy.alarms]
    assert not alarms, f"ATTACK SUCCEEDED: the leak detector fired: {alarms}"
    if run.result is not None:
        assert run.result.plaintext == run.message, "ATTACK SUCCEEDED: a wrong plaintext was output"
    if run.case.attack is not None:
        assert run.alterations(), "the attack was not made: no proxy altered anything"


# Reporting


_NORMALIZE = [
    (re.compile(r"[0-9a-f]{4}(?: [0-9a-f]{4}){7}"), "FINGERPRINT"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "FINGERPRINT"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "ID"),
    (re.compile(r"http://127\.0\.0\.1:[0-9]+"), "URL"),
    (re.compile(r"at offset [0-9]+"), "at offset N"),
    (re.compile(r"\s+"), " "),
]


def normalize(text: str) -> str:
    """Text with run-specific parts (ids, fingerprints, ports) replaced, on one line."""
    for pattern, replacement in _NORMALIZE:
        text = pattern.sub(replacement, text)
    return text.strip()


def service_column(run: Run) -> str:
    answers = []
    for alteration in run.alterations():
        if alteration.victim != "server":
            continue
        if alteration.status is None:
            answers.append("not forwarded")
        else:
            answers.append(f"{alteration.status} {alteration.code or ''}".strip())
    return ", ".join(answers) or "—"


def client_column(run: Run) -> str:
    parts = []
    if run.send_error is not None:
        parts.append(f"Send refused: {normalize(str(run.send_error))}")
    else:
        parts.append("Send ok")
    if run.inbox_error is not None:
        parts.append(f"Inbox refused: {normalize(str(run.inbox_error))}")
    elif run.listed is not None:
        parts.append(f"Inbox listed {len(run.listed)} message(s)")
    if run.read_error is not None:
        parts.append(f"Read refused: {normalize(str(run.read_error))}")
    elif run.result is not None:
        line = "Read gave the right plaintext"
        if run.warnings:
            line += " and warned: " + "; ".join(normalize(w) for w in run.warnings)
        parts.append(line)
    return " ".join(part.rstrip(".") + "." for part in parts + run.notes)


def record(
    case: Case,
    order: int,
    run: Run | None,
    failure: str | None,
    *,
    service: str | None = None,
    client: str | None = None,
    backend: str = "sqlite",
) -> None:
    results = RESULTS if backend == "sqlite" else RESULTS_ON.setdefault(backend, [])
    results.append(
        {
            "id": case.id,
            "order": order,
            "link": case.link,
            "mode": case.mode,
            "direction": case.direction,
            "phase": case.phase,
            "altered": case.altered,
            "expected": case.expected,
            "service": service or (service_column(run) if run else "—"),
            "client": client or (client_column(run) if run else "—"),
            "passed": failure is None,
            "failure": normalize(failure) if failure else None,
        }
    )

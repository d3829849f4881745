"""Slow and hostile clients (issue 13): does a service keep answering while 64 connections
trickle their headers and 64 their bodies, and what does its front cost per request?

Every front of bench/_fronts.py, and ours (``securecomm relay serve`` and ``securecomm
custodian serve``, whatever front they use), serves a relay and a custodian of its own
(own home, own database) on 127.0.0.1. For each, in turn:

- Attack: ``SlowClients`` (bench/_slowloris.py) holds 64 header tricklers and 64 body
  tricklers (POST to the service's own upload route, Content-Length 100,000, a byte per
  connection every 0.5 s) against the relay, then against the custodian. While they
  hold on, an ordinary ``GET /healthz`` on a fresh connection every 0.25 s, each
  allowed 1 s as a client sees it; then the attackers go and three more probes say
  whether the service recovered.
- CPU per request: the sum of user and system time of every process in the server's
  process group (a gunicorn master and its workers, or granian's, or nginx and its
  gunicorn) over a run of real envelope POSTs to the relay (signature checked,
  stored durably), at concurrency 8, divided by the requests answered; and the same
  over ``GET /healthz``, the cheapest request, where a front's own cost shows most.
  Fronts alternate, several rounds; each one's median is kept.

Ours is compared with each front; the goals are ours against ``gthread``, the services'
server before issue 13: every probe answered in under 1 s and recovery (it was 0 of 7
with 32 slow connections), and CPU per stored envelope no more than 10 % above it.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ._common import Row, group_cpu_seconds
from ._fronts import FRONTS, available
from ._load import post_all
from ._slowloris import ProbeResult, SlowClients, probe_series
from .services import (
    HOST,
    RELAY_PATH,
    Pool,
    Server,
    _make_envelopes,
    _new_home,
    _running,
    _serve_command,
    free_port,
)

__all__ = ["run"]

OURS = "ours"
TODAY = "gthread"
_LABELS = {
    "gthread": "gunicorn gthread, 2 workers x 4 threads (before issue 13)",
    "gthread-64": "gunicorn gthread, 2 workers x 64 threads",
    "gevent": "gunicorn gevent, 2 workers",
    "granian": "granian WSGI, 2 workers",
    "uvicorn": "uvicorn + a2wsgi, 2 workers",
    "nginx": "nginx (buffering) before gunicorn gthread 2 x 4",
}
CUSTODIAN_BODY_PATH = "/v1/deposits"


@dataclass(frozen=True)
class Plan:
    headers: int
    bodies: int
    settle: float  # seconds between opening the slow connections and the first probe
    probes: int
    probe_every: float
    rounds: int
    cpu_requests: int
    fronts: tuple[str, ...]


FULL = Plan(64, 64, 1.0, 12, 0.25, 3, 1500, FRONTS)
QUICK = Plan(16, 16, 0.5, 3, 0.2, 1, 100, (TODAY,))


@dataclass
class Attack:
    probes: list[ProbeResult]
    after: list[ProbeResult]
    held: int  # slow connections still held when the attack stopped
    opened: int

    @property
    def answered(self) -> float:
        """Percent of the probes under attack answered (200) in under 1 s."""
        good = sum(p.answered_within(1.0) for p in self.probes)
        return 100.0 * good / len(self.probes)

    @property
    def recovered(self) -> bool:
        return all(p.answered_within(1.0) for p in self.after)

    @property
    def slowest_ms(self) -> float:
        return max(p.seconds for p in self.probes) * 1000

    def describe(self) -> str:
        slow = [p for p in self.probes if not p.answered_within(1.0)]
        return (
            f"{sum(p not in slow for p in self.probes)}/{len(self.probes)} probes < 1 s,"
            f" slowest {self.slowest_ms:.0f} ms, p50"
            f" {statistics.median(p.seconds for p in self.probes) * 1000:.1f} ms;"
            f" {self.held} slow connections held at the end ({self.opened} opened);"
            f" after: {'recovered' if self.recovered else 'NOT recovered'}"
            + (f"; first failure: {slow[0].error or slow[0].status}" if slow else "")
        )


def _attack(port: int, body_path: str, plan: Plan) -> Attack:
    clients = SlowClients(HOST, port, headers=plan.headers, bodies=plan.bodies)
    clients.body_path = body_path
    with clients:
        time.sleep(plan.settle)
        probes = probe_series(HOST, port, count=plan.probes, every=plan.probe_every)
        held, opened = clients.held(), clients.opened
    time.sleep(0.5)
    after = probe_series(HOST, port, count=3, every=0.2, timeout=2.0)
    return Attack(probes, after, held, opened)


@dataclass
class Cpu:
    per_envelope_ms: list[float]
    per_health_ms: list[float]
    envelopes_per_second: list[float]
    errors: int


def _cpu_run(server: Server, bodies: Sequence[bytes], *, method: str, path: str) -> float:
    assert server.popen is not None
    before = group_cpu_seconds(server.popen.pid)
    result = post_all(
        server.port,
        path,
        bodies,
        concurrency=8,
        max_seconds=20.0,
        expect=201 if method == "POST" else 200,
        method=method,
    )
    used = group_cpu_seconds(server.popen.pid) - before
    if result.errors:
        raise RuntimeError(f"{server.name}: {result.errors} errors, first {result.first_error}")
    return used * 1000 / max(result.ok, 1)


def _servers(plan: Plan, base: Path, fronts: Sequence[str]) -> dict[str, tuple[Server, Server]]:
    """A relay and a custodian for each front, each pair from a home of its own."""
    pairs = {}
    for front in fronts:
        home = _new_home(base, f"home-{front}", ("alpha", "bravo", "charlie"))
        logs = base / "logs"
        made = []
        for kind, party in (("relay", "relay"), ("custodian", "alpha")):
            port = free_port()
            if front == OURS:
                command = _serve_command(kind, home, port, 2, party)
            else:
                command = [sys.executable, "-m", "bench._fronts", front, str(home / party)]
                command += ["--port", str(port)]
            made.append(Server(f"{party} ({front})", command, port, logs / f"{front}-{party}.log"))
        pairs[front] = (made[0], made[1])
    return pairs


def _rows(
    plan: Plan,
    attacks: dict[str, dict[str, Attack]],
    cpu: dict[str, Cpu],
    peers: Sequence[str],
) -> list[Row]:
    rows = []
    load = f"{plan.headers} header + {plan.bodies} body tricklers"
    mine = attacks[OURS]
    for peer in peers:
        theirs = attacks[peer]
        for kind in ("relay", "custodian"):
            ours_ok = mine[kind].answered == 100.0 and mine[kind].recovered
            goal = peer == TODAY
            rows.append(
                Row(
                    "Slow clients",
                    f"{kind}: probes answered in < 1 s under {load} (slowest:"
                    f" ours {mine[kind].slowest_ms:,.0f} ms, peer"
                    f" {theirs[kind].slowest_ms:,.0f} ms; recovered: ours"
                    f" {'yes' if mine[kind].recovered else 'no'}, peer"
                    f" {'yes' if theirs[kind].recovered else 'no'})",
                    "%",
                    mine[kind].answered,
                    theirs[kind].answered,
                    _LABELS[peer],
                    "all, and recovered after" if goal else "",
                    ours_ok if goal else None,
                )
            )
        for figure, attribute, goal in (
            ("CPU per stored envelope (relay POST, concurrency 8)", "per_envelope_ms", True),
            ("CPU per GET /healthz (relay, concurrency 8)", "per_health_ms", False),
        ):
            ours = statistics.median(getattr(cpu[OURS], attribute))
            peer_value = statistics.median(getattr(cpu[peer], attribute))
            judged = goal and peer == TODAY
            rows.append(
                Row(
                    "Slow clients",
                    f"{figure}, all the server's processes",
                    "ms",
                    ours,
                    peer_value,
                    _LABELS[peer],
                    "<= 110 % of before" if judged else "",
                    ours <= 1.10 * peer_value if judged else None,
                    higher_is_better=False,
                )
            )
    return rows


def run(quick: bool = False) -> list[Row]:
    plan = QUICK if quick else FULL

    def log(line: str) -> None:
        print(f"  [slow clients] {line}", file=sys.stderr, flush=True)

    peers = []
    for front in plan.fronts:
        lacking = available(front)
        if lacking:
            log(f"{front}: skipped, needs {lacking} (bench/requirements.txt, Debian's nginx)")
        else:
            peers.append(front)
    fronts = [OURS, *peers]
    warmup = 20
    with ExitStack() as cleanup:
        base = Path(tempfile.mkdtemp(prefix="securecomm-bench-slow-"))
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        pairs = _servers(plan, base, fronts)
        started = time.perf_counter()
        pool = Pool(_make_envelopes(warmup + plan.rounds * plan.cpu_requests))
        log(f"{len(pool.bodies)} envelopes in {time.perf_counter() - started:.1f} s")
        every = [server for pair in pairs.values() for server in pair]
        cleanup.enter_context(_running(every))
        attacks: dict[str, dict[str, Attack]] = {}
        for front, (relay, custodian) in pairs.items():
            attacks[front] = {
                "relay": _attack(relay.port, RELAY_PATH, plan),
                "custodian": _attack(custodian.port, CUSTODIAN_BODY_PATH, plan),
            }
            for kind, attack in attacks[front].items():
                log(f"{front} {kind}: {attack.describe()}")
        cpu = {front: Cpu([], [], [], 0) for front in fronts}
        for front, (relay, _) in pairs.items():
            post_all(
                relay.port, RELAY_PATH, pool.take(front, warmup), concurrency=8, max_seconds=10
            )
        health = [b""] * plan.cpu_requests
        for number in range(plan.rounds):
            order = fronts if number % 2 == 0 else fronts[::-1]
            for front in order:
                relay = pairs[front][0]
                bodies = pool.take(front, plan.cpu_requests)
                cpu[front].per_envelope_ms.append(
                    _cpu_run(relay, bodies, method="POST", path=RELAY_PATH)
                )
                cpu[front].per_health_ms.append(
                    _cpu_run(relay, health, method="GET", path="/healthz")
                )
        for front in fronts:
            log(
                f"{front}: CPU per envelope {[round(v, 3) for v in cpu[front].per_envelope_ms]} ms,"
                f" per GET /healthz {[round(v, 3) for v in cpu[front].per_health_ms]} ms"
            )
    return _rows(plan, attacks, cpu, peers)


def main(argv: Sequence[str] | None = None) -> int:
    rows = run(quick="--quick" in (argv if argv is not None else sys.argv))
    for row in rows:
        ratio = f"  ratio {row.ratio:.2f}" if row.ratio is not None else ""
        print(f"{row.figure:<110} {row.ours:>8.3f} {row.peer_name:<50} {row.peer}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Storage: the relay and the custodians on SQLite and on PostgreSQL, and the relay as one
process or as two replicas behind nginx, side by side in one run (issue 14).

Three local networks run at once, each as ``securecomm up`` runs it (one gunicorn worker
per service, every process bound to 127.0.0.1 on a free port, in a fresh temporary home):

- **SQLite**: every service on its own SQLite file (the default; WAL, ``synchronous=FULL``);
- **PostgreSQL**: every service on a database of its own in one throwaway cluster of
  Debian's PostgreSQL (tests/postgres.py; ``fsync`` and ``synchronous_commit`` on, its
  defaults, so a commit is as durable as SQLite's);
- **PostgreSQL, 2 replicas**: the same, with the relay as ``up --relay-replicas 2`` runs
  it (local/stack.py): two ``relay serve`` processes on its one database behind Debian's
  nginx (local/front.py) on the relay's address.

What is measured, as the user's process sees it:

- **Envelopes stored per second** at concurrency 8 and 64: distinct, valid, signed
  envelopes POSTed to the relay's address by the closed-loop generator of bench/_load.py
  (one connection per request, as the clients make them), each a real insert. The three
  networks take turns, round after round (the order rotates), and each figure is the
  median round. The ratios: PostgreSQL over SQLite (one relay each), and two replicas
  over one relay (both on PostgreSQL).
- **No error and no lost write**: after every load, each envelope the relay answered
  201 is looked up in the relay's database; the rows say how many requests failed and
  how many acknowledged envelopes are missing, and a missing one is also shouted on
  stderr. That is the only goal: on this two-core machine the figures are for the
  decision, not a target.
- **send and read p50**: ``flows.send`` and ``flows.read`` (library calls in this
  process, the message split among 5 custodians, 3 needed) on each network, the networks
  taking turns message by message.

What would scale on bigger machines, and what would not:

- Here the load generator, nginx, the relay's workers and PostgreSQL share two cores,
  so every figure is bounded by CPU, not by the databases: a second replica has no idle
  core to use, and PostgreSQL pays for its server process and a socket round trip per
  statement on the same cores that check signatures.
- The CPU of each request (parsing the envelope, checking its sender's Ed25519
  signature, the HTTP and SQL work around it) is what replicas (and workers) spread:
  with free cores it grows with them, on one machine or several behind the front. So does
  the CPU of send and read on the client side, which is the client's own.
- The commit rate of one database does not: every replica writes to the same one.
  SQLite takes one writer at a time on one machine (BEGIN IMMEDIATE, one fsync per
  commit), so replicas add nothing to its commits and cannot be spread over machines.
  PostgreSQL commits from many connections at once and flushes their WAL together
  (group commit), so its rate grows with concurrency up to what its WAL disk can
  flush, then stops: the ceiling of every replica together, reached sooner with more
  of them. Each replica's connection pool also counts against ``max_connections``
  (docs/operations.md).
- Two replicas of one worker each are two processes where ``up``'s one relay of one
  worker is one: they use a second core as far as the generator and PostgreSQL leave
  it free (on this machine, idle otherwise, two replicas stored from 0.99x to 1.43x of
  one relay's envelopes in different runs), and ``--workers 2`` would give one relay
  that core as well. What only replicas give is the relay surviving
  a dead process, and room to spread over machines. On a machine busy with other
  programs, two processes get a larger share of its CPU than one, and replicas then look
  faster than they are: run this on an otherwise idle machine.
- The front spreads requests; it is one nginx process group on one machine, far
  lighter per request than a replica.
"""

from __future__ import annotations

import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ._common import Row
from ._load import LoadResult, percentile, post_all
from .services import (
    CUSTODIANS,
    RELAY_PATH,
    ROOT,
    Pool,
    _env,
    _make_envelopes,
    _new_home,
    _register_users,
    send_and_read,
)

__all__ = ["run"]

GROUP = "Storage"
GOAL = "zero errors, zero lost writes (no speed goal on 2 cores)"
WARMUP = 100  # envelopes per network before the measured runs, at concurrency 8


@dataclass(frozen=True)
class Plan:
    rounds: int
    runs: dict[int, tuple[int, float]]  # concurrency -> (requests, max seconds)
    latency_samples: int  # messages sent, then read, on each network


FULL = Plan(rounds=5, runs={8: (1500, 4.0), 64: (2000, 5.0)}, latency_samples=40)
QUICK = Plan(rounds=1, runs={8: (40, 2.0), 64: (128, 2.0)}, latency_samples=3)


@dataclass(frozen=True)
class Setup:
    key: str  # names its home, its databases and its cursor in the envelope pool
    label: str
    postgres: bool
    replicas: int


SQLITE = Setup("sqlite", "SQLite, 1 relay", postgres=False, replicas=1)
POSTGRES = Setup("postgresql", "PostgreSQL, 1 relay", postgres=True, replicas=1)
REPLICAS = Setup("replicas", "PostgreSQL, 2 relay replicas behind nginx", True, replicas=2)
SETUPS = (SQLITE, POSTGRES, REPLICAS)


@dataclass
class Network:
    """One running local network, and what was measured on it."""

    setup: Setup
    home: Path
    port: int  # the relay's address: the relay itself, or the replicas' front
    database: str  # the relay's database URL
    loads: dict[int, list[LoadResult]] = field(default_factory=dict)
    failed: int = 0  # requests not answered 201, warm-up included
    acknowledged: int = 0  # envelopes answered 201, warm-up included
    lost: int = 0  # of those, missing from the relay's database afterwards
    first_error: str | None = None
    sends: list[float] = field(default_factory=list)  # ms
    reads: list[float] = field(default_factory=list)  # ms


# Processes.


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so what was started is stopped
    on the way out (its default would end this process and leave the servers running)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start(setup: Setup, base: Path, cleanup: ExitStack, database: Callable[[str], str]) -> Network:
    """Make ``setup``'s local network and start it as ``securecomm up`` does; it is
    stopped when ``cleanup`` closes. ``database(prefix)``: a new PostgreSQL database."""
    from securecomm.config import load_settings
    from securecomm.local.home import party_home
    from securecomm.local.stack import Stack

    urls = {}
    if setup.postgres:
        urls = {name: database(f"bench_{setup.key}_{name}") for name in ("relay", *CUSTODIANS)}
    home = _new_home(base, setup.key, database_urls=urls)
    settings = load_settings(home, env={})
    stack = Stack(settings, workers=1, replicas=setup.replicas)  # `up`'s default workers
    for process in stack.processes:
        process.env, process.cwd = _env(), ROOT
    cleanup.callback(stack.stop)
    stack.start()
    relay = load_settings(party_home(home, "relay"), env={})
    return Network(setup, home, settings.server_port, relay.relay_database())


# Loads, and what the relay's database holds after them.


def _missing(database: str, message_ids: Sequence[str]) -> int:
    """How many of ``message_ids`` the relay's database at ``database`` does not hold."""
    import sqlalchemy as sa

    from securecomm.relay.tables import messages
    from securecomm.service.storage import connect

    wanted = set(message_ids)
    found: set[str] = set()
    engine = connect(database)
    try:
        with engine.connect() as conn:
            chunk = 500
            ordered = sorted(wanted)
            for start in range(0, len(ordered), chunk):
                query = sa.select(messages.c.id).where(
                    messages.c.id.in_(ordered[start : start + chunk])
                )
                found.update(conn.execute(query).scalars())
    finally:
        engine.dispose()
    return len(wanted - found)


def _load(
    network: Network,
    pool: Pool,
    concurrency: int,
    count: int,
    seconds: float,
    log: Callable[[str], None],
) -> LoadResult:
    """POST ``count`` new envelopes to ``network``'s relay; then count those acknowledged
    (201) that its database does not hold."""
    from securecomm.envelope import Envelope

    key = network.setup.key
    bodies = pool.take(key, count)
    result = post_all(
        network.port, RELAY_PATH, bodies, concurrency=concurrency, max_seconds=seconds
    )
    # What the time bound left unsent goes to the next run.
    pool.cursor[key] -= count - (result.ok + result.errors)
    acknowledged = [Envelope.from_bytes(bodies[i]).id for i in result.acknowledged]
    lost = _missing(network.database, acknowledged)
    network.failed += result.errors
    network.acknowledged += len(acknowledged)
    network.lost += lost
    network.first_error = network.first_error or result.first_error
    if lost:
        log(
            f"LOST WRITES: {network.setup.label}, concurrency {concurrency}: {lost} of"
            f" {len(acknowledged)} envelopes acknowledged (201) are not in the relay's database"
        )
    return result


def _turns(networks: Sequence[Network], number: int) -> list[Network]:
    """The networks in the order of turn ``number``: each goes first in turn."""
    shift = number % len(networks)
    return [*networks[shift:], *networks[:shift]]


def _median(results: Sequence[LoadResult], attribute: str) -> float:
    return statistics.median(float(getattr(r, attribute)) for r in results)


def _measure_loads(
    plan: Plan, networks: Sequence[Network], pool: Pool, log: Callable[[str], None]
) -> None:
    for network in networks:
        _load(network, pool, 8, WARMUP, 10.0, log)
    for concurrency, (count, seconds) in plan.runs.items():
        for number in range(plan.rounds):
            for network in _turns(networks, number):
                result = _load(network, pool, concurrency, count, seconds, log)
                network.loads.setdefault(concurrency, []).append(result)
        for network in networks:
            runs = network.loads[concurrency]
            log(
                f"c={concurrency} {network.setup.label}: {[round(r.per_second) for r in runs]}/s,"
                f" POST p50 {_median(runs, 'p50_ms'):.1f} ms p99 {_median(runs, 'p99_ms'):.1f} ms,"
                f" {sum(r.errors for r in runs)} failed"
                + (f" (first: {network.first_error})" if network.first_error else "")
            )


def _measure_flows(plan: Plan, networks: Sequence[Network], log: Callable[[str], None]) -> None:
    """send, then read, p50 on each network, the networks taking turns message by message."""
    flows = {}
    for network in networks:
        # After the loads: their envelopes are signed by an "alice" of another key, which
        # the relay refuses once the local alice is registered.
        _register_users(network.home)
        send, read = send_and_read(network.home)
        for _ in range(3):  # warm: imports, first connections, pages and caches
            read(send())
        flows[network.setup.key] = (send, read)
    sent: dict[str, list[str]] = {network.setup.key: [] for network in networks}
    for number in range(plan.latency_samples):
        for network in _turns(networks, number):
            started = time.perf_counter()
            sent[network.setup.key].append(flows[network.setup.key][0]())
            network.sends.append((time.perf_counter() - started) * 1000)
    for number in range(plan.latency_samples):
        for network in _turns(networks, number):
            message_id = sent[network.setup.key][number]
            started = time.perf_counter()
            flows[network.setup.key][1](message_id)
            network.reads.append((time.perf_counter() - started) * 1000)
    for network in networks:
        log(
            f"{network.setup.label}: send p50 {percentile(network.sends, 0.5):.1f} ms,"
            f" read p50 {percentile(network.reads, 0.5):.1f} ms"
        )


# Rows.


def _clean(*networks: Network) -> bool:
    return all(n.failed == 0 and n.lost == 0 for n in networks)


def _rows(plan: Plan, networks: dict[str, Network]) -> list[Row]:
    sqlite, postgres, replicas = (networks[s.key] for s in SETUPS)
    pairs = (
        (postgres, sqlite, "PostgreSQL beside SQLite, 1 relay each"),
        (replicas, postgres, "on PostgreSQL, 2 relay replicas (nginx front) beside 1 relay"),
    )
    rows = []
    for concurrency in plan.runs:
        for ours, peer, what in pairs:
            results = [*ours.loads[concurrency], *peer.loads[concurrency]]
            failed = sum(r.errors for r in results)
            sent = sum(r.ok + r.errors for r in results)
            rows.append(
                Row(
                    GROUP,
                    f"envelopes stored/s, concurrency {concurrency}, {what};"
                    f" {failed} of {sent} failed",
                    "req/s",
                    _median(ours.loads[concurrency], "per_second"),
                    _median(peer.loads[concurrency], "per_second"),
                    peer.setup.label,
                    GOAL,
                    _clean(ours, peer),
                )
            )
    for network in (sqlite, postgres, replicas):
        # The integrity of each network over every load, warm-up included.
        rows.append(
            Row(
                GROUP,
                f"{network.setup.label}: acknowledged (201) envelopes found in the relay's"
                f" database after the loads; {network.failed} requests failed,"
                f" {network.lost} acknowledged envelopes lost",
                "envelopes",
                network.acknowledged - network.lost,
                network.acknowledged,
                "envelopes acknowledged",
                "all of them, zero errors",
                _clean(network),
            )
        )
    for flow in ("send", "read"):
        for ours, peer, what in pairs:
            samples = {n.setup.key: n.sends if flow == "send" else n.reads for n in (ours, peer)}
            rows.append(
                Row(
                    GROUP,
                    f"{flow} p50, 5 custodians, {what}"
                    f" ({len(samples[ours.setup.key])} messages each)",
                    "ms",
                    percentile(samples[ours.setup.key], 0.5),
                    percentile(samples[peer.setup.key], 0.5),
                    peer.setup.label,
                    "",
                    None,
                    higher_is_better=False,
                )
            )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Every row of this file; ``quick`` is a smoke run of a few seconds per network."""
    from tests.postgres import start_cluster

    plan = QUICK if quick else FULL

    def log(line: str) -> None:
        print(f"  [storage] {line}", file=sys.stderr, flush=True)

    with _sigterm_interrupts(), ExitStack() as cleanup:
        started = time.perf_counter()
        cluster = start_cluster()
        cleanup.callback(cluster.stop)  # last: after every service on it has stopped
        base = Path(tempfile.mkdtemp(prefix="securecomm-bench-storage-"))
        cleanup.callback(_remove, base)
        log(f"PostgreSQL cluster on port {cluster.port} in {time.perf_counter() - started:.1f} s")
        needed = WARMUP + plan.rounds * sum(count for count, _ in plan.runs.values())
        started = time.perf_counter()
        pool = Pool(_make_envelopes(needed))
        log(f"{needed} envelopes in {time.perf_counter() - started:.1f} s (each network's own)")
        networks = {}
        for setup in SETUPS:
            started = time.perf_counter()
            networks[setup.key] = _start(setup, base, cleanup, cluster.database)
            log(f"{setup.label}: up in {time.perf_counter() - started:.1f} s")
        chosen = [networks[s.key] for s in SETUPS]
        started = time.perf_counter()
        _measure_loads(plan, chosen, pool, log)
        log(f"loads: {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        _measure_flows(plan, chosen, log)
        log(f"send and read: {time.perf_counter() - started:.1f} s")
    return _rows(plan, networks)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        ratio = f"  ratio {row.ratio:.2f}" if row.ratio is not None else ""
        print(f"{row.figure}: {row.ours:.1f} {row.unit} vs {row.peer_name} {row.peer}{ratio}")

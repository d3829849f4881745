"""The services under load: the relay against its framework's ceiling, send and read end
to end, and the memory a send and a read take (issue 7, items 3 to 5).

Every server is a real process bound to 127.0.0.1 on a free port, in a fresh
temporary home, and every one is stopped on the way out, exceptions included.

- Relay: distinct, valid envelopes (signed by their sender, receipts in
  format; the relay checks only the sender's signature), so each POST is a
  real insert, checked and committed with ``synchronous=FULL``. The ceiling
  is a bare Flask app that only parses the same JSON, run by the same
  ``serve`` (gunicorn gevent, the relay's default workers, same settings).
  Both are driven by the same closed-loop generator (bench/_load.py), one
  connection per request as securecomm's clients make them. Runs of ours
  and the ceiling alternate, several rounds; each figure is the median
  round. The relay with ``synchronous=NORMAL`` is measured beside the real
  one too, to put a number on what durability costs (no goal).
- End to end: the relay and five custodians as ``securecomm up`` runs them,
  ``flows.send`` and ``flows.read`` timed in this process.
- Memory: ``securecomm send --file`` / ``read --out`` in a fresh process each, peak
  RSS from the kernel (wait4), and the relay's and a custodian's workers' VmHWM
  after serving them. The goal (issue 17) is judged on the growth over the same
  with a 1 KiB message, which is what the interpreter and its libraries take
  whatever the size.
- Large messages: the same largest send and read in MB/s, beside our AES-GCM
  layer alone over the same bytes and the disk alone writing what must be kept.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from securecomm.local.stack import Process, cli_command

from ._common import Row, group_cpu_seconds
from ._load import LoadResult, percentile, post_all, run_threads

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MIB = 1024 * 1024
CUSTODIANS = ("alpha", "bravo", "charlie", "delta", "echo")
RELAY_PATH = "/api/v1/messages"
CEILING_NAME = "bare Flask, same gunicorn (ceiling)"
MANDATORY_NAME = (
    "the mandatory work alone on the same server: canonical JSON, the envelope's"
    " signature, one durable insert, the signed answer (ceiling)"
)
# What the settings would otherwise take from this process's environment.
_SETTINGS_ENV = re.compile(
    r"SECURECOMM_.*|SERVER_(HOST|PORT|URL)|N_SHARES|THRESHOLD|HTTPS?_PROXY|ALL_PROXY|NO_PROXY",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Plan:
    rounds: int
    relay_runs: dict[int, tuple[int, float]]  # concurrency -> (requests, max seconds)
    durability_runs: tuple[int, float] | None  # FULL vs NORMAL at concurrency 8
    latency_samples: int
    cycles: tuple[int, float]  # send+read cycles at concurrency 8: (count, max seconds)
    cli_runs: int  # `securecomm send` and `read` processes, each a new one
    sizes_mib: tuple[int, ...]  # the memory rows' and the large message's sizes


FULL = Plan(
    rounds=3,
    relay_runs={1: (500, 4.0), 8: (2000, 4.0), 64: (2500, 5.0)},
    durability_runs=(2000, 4.0),
    # A p99 of 50 samples is their largest but one: 200 make it a percentile.
    latency_samples=200,
    cycles=(120, 30.0),
    cli_runs=15,
    sizes_mib=(64, 256, 1024),
)
QUICK = Plan(
    rounds=1,
    relay_runs={1: (20, 2.0), 8: (60, 2.0), 64: (128, 2.0)},
    durability_runs=None,
    latency_samples=3,
    cycles=(8, 10.0),
    cli_runs=2,
    sizes_mib=(2,),
)


# Processes.


def _env() -> dict[str, str]:
    """This environment without what would point a child at other servers or settings."""
    env = {k: v for k, v in os.environ.items() if not _SETTINGS_ENV.fullmatch(k)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server(Process):
    """One server process (a gunicorn master and its workers) in its own process group."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        super().__init__(name, command, f"http://{HOST}:{port}", log, env=_env(), cwd=ROOT)
        self.port = port

    def start(self, timeout: float = 60.0) -> None:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited while starting:\n{self.tail()}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout:g} s")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's children."""
        if self.popen is None:
            return []
        try:
            text = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]


_cli = cli_command
_BENCH_SERVER = [sys.executable, "-m", "bench._ceiling_app"]


def _serve_command(
    kind: str, home: Path, port: int, workers: int, name: str | None = None
) -> list[str]:
    """``securecomm relay serve`` or ``securecomm custodian serve`` from the party's own
    home in the local network's data directory ``home``, as ``securecomm up`` runs them."""
    own = home / ("relay" if kind == "relay" else str(name))
    return _cli(
        kind,
        "serve",
        "--home",
        str(own),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    )


@contextmanager
def _running(servers: Sequence[Server]) -> Iterator[Sequence[Server]]:
    from securecomm.client.transport import close_idle_pools

    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        close_idle_pools()  # else each server waits out our kept-alive connections
        for server in servers:
            if server.popen is not None:
                try:
                    os.killpg(server.popen.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        for server in servers:
            server.stop()


def _write_config(
    home: Path,
    relay_port: int,
    custodian_ports: dict[str, int],
    *,
    max_envelope_bytes: int | None = None,
    threshold: int = 3,
    database_urls: Mapping[str, str] | None = None,
) -> None:
    from securecomm.local.home import config_text

    home.mkdir(parents=True, exist_ok=True)
    text = config_text(
        len(custodian_ports),
        threshold,
        relay_port=relay_port,
        ports=custodian_ports,
        max_envelope_bytes=max_envelope_bytes,
        database_urls=database_urls,
    )
    (home / "securecomm.toml").write_text(text)


def _new_home(
    base: Path,
    label: str,
    names: Sequence[str] = CUSTODIANS,
    *,
    max_envelope_bytes: int | None = None,
    threshold: int = 3,
    database_urls: Mapping[str, str] | None = None,
) -> Path:
    """A local network's data directory made by ``init``; ``database_urls``: the services
    (``"relay"``, custodian names) on another database than their own SQLite file."""
    from securecomm.local.home import init_home

    home = base / label
    ports = {name: free_port() for name in names}
    _write_config(
        home,
        free_port(),
        ports,
        max_envelope_bytes=max_envelope_bytes,
        threshold=threshold,
        database_urls=database_urls,
    )
    init_home(home)
    return home


def _stack_servers(home: Path, workers: int = 1) -> list[Server]:
    """The relay and every custodian of ``home``, as ``securecomm up`` starts them."""
    from securecomm.config import load_settings

    settings = load_settings(home, env={})
    logs = home / "logs"
    servers = [
        Server(
            "relay",
            _serve_command("relay", home, settings.server_port, workers),
            settings.server_port,
            logs / "relay.log",
        )
    ]
    for custodian in settings.custodians:
        servers.append(
            Server(
                custodian.name,
                _serve_command("custodian", home, custodian.port, workers, custodian.name),
                custodian.port,
                logs / f"{custodian.name}.log",
            )
        )
    return servers


def _register_users(home: Path) -> None:
    """Each local person's keys in the relay's directory, as ``securecomm up`` does."""
    from securecomm.local.home import register_people

    failed = register_people(home)
    if failed:
        raise RuntimeError(f"could not register: {failed}")


# Relay: envelopes.


def _envelopes(count: int) -> list[bytes]:
    """``count`` distinct envelopes from one sender to one recipient, format-valid receipts."""
    from securecomm.envelope import Receipt, prepare
    from securecomm.identity import Identity

    sender, recipient = Identity.generate("alice"), Identity.generate("bob")
    # Custodian services "exist" (fingerprints set); the relay checks the sender's signature only.
    slots = [(name, bytes([i + 1]) * 32) for i, name in enumerate(CUSTODIANS)]
    result = []
    for _ in range(count):
        draft = prepare(
            b"a short message for the relay benchmark",
            sender=sender.public,
            recipients=[recipient.public],
            custodians=slots,
            threshold=3,
        )
        receipts = [
            Receipt(
                slot.name, i + 1, draft.header.message_id, f"ref{i}", slot.share_digest, b"\0" * 64
            )
            for i, slot in enumerate(draft.header.custodians)
        ]
        result.append(draft.finish(sender, receipts).to_bytes())
    return result


def _make_envelopes(count: int) -> list[bytes]:
    if count < 400:
        return _envelopes(count)
    half = count // 2
    with ProcessPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(_envelopes, [half, count - half]))
    return parts[0] + parts[1]


class Pool:
    """Bodies handed out in order; each server gets its own cursor, so none sees one twice."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies
        self.cursor: dict[str, int] = {}

    def take(self, who: str, count: int, *, wrap: bool = False) -> list[bytes]:
        start = self.cursor.get(who, 0)
        if start + count > len(self.bodies):
            if not wrap:
                raise RuntimeError(f"envelope pool exhausted for {who}")
            start = 0
        self.cursor[who] = start + count
        return self.bodies[start : start + count]


def _post_run(
    server: Server, pool: Pool, who: str, concurrency: int, count: int, seconds: float
) -> LoadResult:
    bodies = pool.take(who, count, wrap=who == "ceiling")
    result = post_all(server.port, RELAY_PATH, bodies, concurrency=concurrency, max_seconds=seconds)
    # What the time bound left unsent can go to the next run.
    pool.cursor[who] -= count - (result.ok + result.errors)
    return result


def _median(results: Sequence[LoadResult], attribute: str) -> float:
    return statistics.median(float(getattr(r, attribute)) for r in results)


def _alternate_runs(
    first: tuple[Server, str],
    second: tuple[Server, str],
    pool: Pool,
    concurrency: int,
    count: int,
    seconds: float,
    rounds: int,
) -> tuple[list[LoadResult], list[LoadResult]]:
    mine: list[LoadResult] = []
    theirs: list[LoadResult] = []
    for number in range(rounds):
        order = [(first, mine), (second, theirs)]
        if number % 2:
            order.reverse()
        for (server, who), sink in order:
            sink.append(_post_run(server, pool, who, concurrency, count, seconds))
    return mine, theirs


def relay_rows(plan: Plan, base: Path, log: Callable[[str], None]) -> list[Row]:
    """The relay beside its honest ceiling, the mandatory work alone on the same server
    (bench/_ceiling_app.py ``mandatory``), at each concurrency; and beside bare Flask
    (``ceiling``: parse and answer) at concurrency 8, as a report."""
    from securecomm.config import load_settings

    home = _new_home(base, "relay-home")
    workers = load_settings(home, env={}).workers  # what `securecomm relay serve` uses
    ours_port = free_port()
    ours = Server(
        "relay",
        _serve_command("relay", home, ours_port, workers),
        ours_port,
        base / "logs" / "relay.log",
    )

    def bench_server(which: str) -> Server:
        port = free_port()
        scratch = base / f"{which}-home"
        scratch.mkdir(exist_ok=True)
        command = [*_BENCH_SERVER, which, "--port", str(port), "--workers", str(workers)]
        return Server(
            which, [*command, "--home", str(scratch)], port, base / "logs" / f"{which}.log"
        )

    mandatory, ceiling = bench_server("mandatory"), bench_server("ceiling")
    warmup = 100
    needed = warmup + plan.rounds * sum(count for count, _ in plan.relay_runs.values())
    needed += plan.rounds * plan.relay_runs[8][0]  # ours again, beside bare Flask
    if plan.durability_runs:
        needed += plan.rounds * plan.durability_runs[0]
    started = time.perf_counter()
    pool = Pool(_make_envelopes(needed))
    took = time.perf_counter() - started
    log(f"relay: {needed} envelopes of {len(pool.bodies[0])} bytes in {took:.1f} s")
    rows: list[Row] = []
    results: dict[int, tuple[list[LoadResult], list[LoadResult]]] = {}
    with _running([ours, mandatory, ceiling]):
        for server, who in ((ours, "ours"), (mandatory, "mandatory"), (ceiling, "ceiling")):
            _post_run(server, pool, who, 8, warmup, 10.0)
        for concurrency, (count, seconds) in plan.relay_runs.items():
            results[concurrency] = _alternate_runs(
                (ours, "ours"),
                (mandatory, "mandatory"),
                pool,
                concurrency,
                count,
                seconds,
                plan.rounds,
            )
            mine, theirs = results[concurrency]
            log(
                f"relay c={concurrency}: ours {[round(r.per_second) for r in mine]}/s"
                f" p50 {_median(mine, 'p50_ms'):.2f} ms, mandatory"
                f" {[round(r.per_second) for r in theirs]}/s"
                f" p50 {_median(theirs, 'p50_ms'):.2f} ms,"
                f" errors {sum(r.errors for r in mine)}/{sum(r.errors for r in theirs)}"
                + (f" first: {mine[0].first_error}" if mine[0].first_error else "")
                + (f" theirs: {theirs[0].first_error}" if theirs[0].first_error else "")
            )
        count, seconds = plan.relay_runs[8]
        beside_bare = _alternate_runs(
            (ours, "ours"), (ceiling, "ceiling"), pool, 8, count, seconds, plan.rounds
        )
    for concurrency, (mine, theirs) in results.items():
        errors = sum(r.errors for r in mine)
        sent = sum(r.ok + r.errors for r in mine)
        ours_rate, ceiling_rate = _median(mine, "per_second"), _median(theirs, "per_second")
        goal_here = concurrency == 8
        rows.append(
            Row(
                "Relay",
                f"envelopes stored/s (signature checked, durable), concurrency {concurrency},"
                f" {errors} of {sent} failed",
                "req/s",
                ours_rate,
                ceiling_rate,
                MANDATORY_NAME,
                ">= 80 % of the ceiling, zero errors" if goal_here else "zero errors",
                (ceiling_rate > 0 and ours_rate / ceiling_rate >= 0.80 and errors == 0)
                if goal_here
                else errors == 0,
            )
        )
        for name, attribute in (("p50", "p50_ms"), ("p99", "p99_ms")):
            rows.append(
                Row(
                    "Relay",
                    f"POST latency {name}, concurrency {concurrency}",
                    "ms",
                    _median(mine, attribute),
                    _median(theirs, attribute),
                    MANDATORY_NAME,
                    "",
                    None,
                    higher_is_better=False,
                )
            )
    mine, theirs = beside_bare
    rows.append(
        Row(
            "Relay",
            "envelopes stored/s, concurrency 8, beside a server that parses and answers only",
            "req/s",
            _median(mine, "per_second"),
            _median(theirs, "per_second"),
            CEILING_NAME,
            "report only (the framework's ceiling, not the relay's)",
            None,
        )
    )
    if plan.durability_runs:
        rows.append(_durability_row(plan, home, pool, base, workers, log))
    return rows


def _durability_row(
    plan: Plan, home: Path, pool: Pool, base: Path, workers: int, log: Callable[[str], None]
) -> Row:
    """The relay with synchronous=FULL (ours) beside itself with NORMAL, at concurrency 8."""
    assert plan.durability_runs is not None
    count, seconds = plan.durability_runs
    # The same database (the relay that filled it has stopped), and the same envelopes next.
    normal_home = base / "relay-normal-home"
    shutil.copytree(home, normal_home, ignore=shutil.ignore_patterns("logs"))
    pool.cursor["normal"] = pool.cursor["ours"]
    servers = []
    for label, which in (("ours", "relay"), ("normal", "relay-normal")):
        port = free_port()
        if which == "relay":
            command = _serve_command("relay", home, port, workers)
        else:
            relay_home = str(normal_home / "relay")  # the relay's own home in the copy
            command = [*_BENCH_SERVER, which, "--home", relay_home, "--port", str(port)]
            command += ["--workers", str(workers)]
        servers.append(Server(label, command, port, base / "logs" / f"durability-{label}.log"))
    with _running(servers):
        full, normal = _alternate_runs(
            (servers[0], "ours"), (servers[1], "normal"), pool, 8, count, seconds, plan.rounds
        )
    errors = sum(r.errors for r in full + normal)
    log(
        f"relay FULL {[round(r.per_second) for r in full]}/s vs NORMAL"
        f" {[round(r.per_second) for r in normal]}/s, errors {errors}"
    )
    return Row(
        "Relay",
        "envelopes stored/s, concurrency 8: synchronous=FULL (kept) beside NORMAL",
        "req/s",
        _median(full, "per_second"),
        _median(normal, "per_second"),
        "same relay, synchronous=NORMAL (not durable on power loss)",
        "a figure for the decision, no goal",
        None,
    )


# End to end.


def send_and_read(home: Path) -> tuple[Callable[[], str], Callable[[str], None]]:
    """alice's ``flows.send`` of a short message to bob (its message id) and bob's
    ``flows.read`` of one (checked), library calls in this process, each from their own
    home in the running local network ``home``, as the CLI does with --as."""
    from securecomm.client import flows
    from securecomm.client.trust import KnownKeys
    from securecomm.config import load_settings
    from securecomm.identity import Identity
    from securecomm.local.home import person_home, user_key_path

    alice_home, bob_home = person_home(home, "alice"), person_home(home, "bob")
    mine, theirs = load_settings(alice_home, env={}), load_settings(bob_home, env={})
    alice_pins, bob_pins = KnownKeys.load(alice_home), KnownKeys.load(bob_home)
    alice = Identity.load(user_key_path(home, "alice"))
    bob = Identity.load(user_key_path(home, "bob"))
    message = b"The quarterly figures are in the usual place. 42."

    def send() -> str:
        return flows.send(mine, alice_pins, alice, ["bob"], message).message_id

    def read(message_id: str) -> None:
        result = flows.read(theirs, bob_pins, bob, message_id)
        if result.plaintext != message:
            raise AssertionError("read gave back another message")

    return send, read


def end_to_end_rows(plan: Plan, base: Path, log: Callable[[str], None]) -> list[Row]:
    # The rows before wrote some hundred MB through fsync'd databases: let the disk take it
    # before timing, or their writeback lands in these rows' fsyncs.
    os.sync()
    home = _new_home(base, "e2e-home")
    with _running(_stack_servers(home)):
        _register_users(home)
        send, read = send_and_read(home)
        for _ in range(3):  # warm: imports, first connections, SQLite pages
            read(send())
        sends, ids = [], []
        for _ in range(plan.latency_samples):
            started = time.perf_counter()
            ids.append(send())
            sends.append((time.perf_counter() - started) * 1000)
        reads = []
        for message_id in ids:
            started = time.perf_counter()
            read(message_id)
            reads.append((time.perf_counter() - started) * 1000)

        def cycle(_: int) -> float:
            started = time.perf_counter()
            read(send())
            return (time.perf_counter() - started) * 1000

        count, seconds = plan.cycles
        durations, errors, wall = run_threads(
            cycle, concurrency=8, count=count, max_seconds=seconds
        )
        cli_rows = _cli_rows(plan, home, log)
    log(
        f"e2e: send p50 {percentile(sends, 0.5):.1f} ms p99 {percentile(sends, 0.99):.1f} ms;"
        f" read p50 {percentile(reads, 0.5):.1f} ms p99 {percentile(reads, 0.99):.1f} ms;"
        f" {len(durations)} cycles in {wall:.1f} s, {len(errors)} errors"
        + (f" first: {errors[0]}" if errors else "")
    )
    rows = []
    for flow, samples, goal in (("send", sends, 10.0), ("read", reads, 8.0)):
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        rows.append(
            Row(
                "End to end",
                f"{flow} p50, 5 custodians on loopback, 1 KiB, {len(samples)} messages",
                "ms",
                p50,
                None,
                "",
                f"<= {goal:.0f} ms",
                p50 <= goal,
                higher_is_better=False,
            )
        )
        rows.append(
            Row(
                "End to end",
                f"{flow} p99, 5 custodians on loopback, 1 KiB, {len(samples)} messages",
                "ms",
                p99,
                p50,
                f"{flow} p50",
                "<= 2x p50",
                p99 <= 2 * p50,
                higher_is_better=False,
            )
        )
    total = len(durations) + len(errors)
    rate = len(durations) / wall if wall > 0 else 0.0
    floor_seconds = crypto_floor_seconds()
    cores = os.cpu_count() or 1
    floor_rate = cores / floor_seconds
    log(f"e2e: crypto floor {floor_seconds * 1e3:.2f} ms of CPU a cycle: {floor_rate:.0f}/s")
    exchange = http_floor_seconds(plan, base)
    both_rate = cores / (floor_seconds + EXCHANGES_PER_CYCLE * exchange)
    log(f"e2e: an HTTP exchange alone {exchange * 1e3:.2f} ms of CPU (client + server)")

    def cycles(peer: float, peer_name: str, goal: str, met: bool | None) -> Row:
        figure = f"send+read cycles/s, concurrency 8, {len(errors)} of {total} failed"
        return Row("End to end", figure, "cycles/s", rate, peer, peer_name, goal, met)

    rows.append(
        cycles(
            floor_rate,
            f"the crypto floor: {cores} cores / {floor_seconds * 1e3:.2f} ms of CPU, the"
            " cryptography of one cycle on every party (bench/floor.py)",
            ">= 30 % of the floor, zero errors",
            rate >= 0.30 * floor_rate and not errors,
        )
    )
    rows.append(
        cycles(
            both_rate,
            f"the crypto floor plus the HTTP floor: {cores} cores / ({floor_seconds * 1e3:.2f}"
            f" ms + {EXCHANGES_PER_CYCLE} exchanges x {exchange * 1e3:.2f} ms), an exchange"
            " being one small POST from our client to bare Flask under our serve, both"
            " sides' CPU",
            "report only (what a cycle of this stack could do if it did nothing else)",
            None,
        )
    )
    return rows + cli_rows


#: The HTTP requests of one send+read cycle once the keys are checked (the process checks
#: them once a minute): a deposit with each of five custodians and the post to the relay;
#: the envelope's fetch and a release from each of the five.
EXCHANGES_PER_CYCLE = 12


def http_floor_seconds(plan: Plan, base: Path) -> float:
    """CPU seconds, client and server together, of one HTTP exchange and nothing else:
    an unsigned POST of a 1 KiB JSON object from our client (``ServiceClient``, its pooled
    connection) to bare Flask (bench/_ceiling_app.py ``ceiling``: parse and answer) under
    our ``serve`` with one worker, as the end-to-end rows' services run. The cryptography
    of the requests is in the crypto floor; this is what carrying them costs."""
    from securecomm.client.transport import ServiceClient

    port = free_port()
    command = [*_BENCH_SERVER, "ceiling", "--port", str(port), "--workers", "1"]
    server = Server("ceiling", command, port, base / "logs" / "http-floor.log")
    body = {"header": {"id": "0" * 32}, "padding": "x" * 1000}
    count = 400 if plan.rounds > 1 else 40
    with _running([server]), ServiceClient(f"http://{HOST}:{port}", "ceiling") as client:
        assert server.popen is not None
        for _ in range(50):
            client.request("POST", "/api/v1/messages", body=body, sign=False)
        served = group_cpu_seconds(server.popen.pid)
        used = time.process_time()
        for _ in range(count):
            client.request("POST", "/api/v1/messages", body=body, sign=False)
        used = time.process_time() - used
        served = group_cpu_seconds(server.popen.pid) - served
    return (used + served) / count


def _timed(command: list[str]) -> tuple[float, str]:
    """Wall milliseconds of one process running ``command`` to its end, and its output."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=_env())
    took = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {done.stderr.strip()[-300:]}")
    return took, done.stdout


def _securecomm() -> list[str]:
    """The `securecomm` command a user types: the installed script beside this
    interpreter, else ``python -m securecomm``, which is what the script runs."""
    script = Path(sys.executable).with_name("securecomm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "securecomm"]


def _cli_rows(plan: Plan, home: Path, log: Callable[[str], None]) -> list[Row]:
    """`securecomm send` and `securecomm read` as a user runs them: a new process each
    time, from the shell's point of view (interpreter start, imports, key file, network)."""
    sends, reads, bare, libraries = [], [], [], []
    command = _securecomm()
    # The bytecode an installed package has (pip writes it at install): an editable install
    # leaves it to the first run, which writes none where PYTHONDONTWRITEBYTECODE is set,
    # and every process would then compile our modules afresh (~150 ms here, issue 16).
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "securecomm")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(plan.cli_runs):
        took, out = _timed(
            [*command, "send", "--home", str(home), "--from", "alice", "--to", "bob",
             "--quiet", "The quarterly figures are in the usual place. 42."]
        )  # fmt: skip
        sends.append(took)
        took, _ = _timed([*command, "read", out.strip(), "--home", str(home), "--as", "bob"])
        reads.append(took)
        bare.append(_timed([sys.executable, "-c", "pass"])[0])
        libraries.append(_timed([sys.executable, "-c", _LIBRARIES])[0])
    start = percentile(bare, 0.5)
    floor = percentile(libraries, 0.5)
    log(
        f"cli: send {[round(x) for x in sends]} ms, read {[round(x) for x in reads]} ms,"
        f" python -c pass p50 {start:.0f} ms, the libraries' imports alone p50 {floor:.0f} ms"
    )
    peers = (
        (start, "the interpreter's own start (`python -c pass`)", "<= 250 ms", True),
        (
            floor,
            "a process that only imports the libraries a send and a read use (cryptography's"
            " primitives, httpx and its HTTP/1.1 stack) and ends as the command does",
            "report only",
            False,
        ),
    )
    return [
        Row(
            "CLI",
            f"`securecomm {flow}` wall time p50, a new process each, {len(samples)} runs",
            "ms",
            percentile(samples, 0.5),
            peer,
            peer_name,
            goal,
            percentile(samples, 0.5) <= 250.0 if judged else None,
            higher_is_better=False,
        )
        for peer, peer_name, goal, judged in peers
        for flow, samples in (("send", sends), ("read", reads))
    ]


# What `securecomm send` and `read` import from other projects, as securecomm imports it
# (httpx without its own command line, as securecomm.client arranges); it ends as the
# command does, without the interpreter's teardown.
_LIBRARIES = """
import os, sys
sys.modules.setdefault("httpx._main", None)
import cryptography.hazmat.primitives.asymmetric.ed25519
import cryptography.hazmat.primitives.asymmetric.x25519
import cryptography.hazmat.primitives.ciphers.aead
import cryptography.hazmat.primitives.hpke
import cryptography.hazmat.primitives.kdf.hkdf
import cryptography.hazmat.primitives.serialization
import httpx, httpcore._sync.http11
os._exit(0)
"""


def crypto_floor_seconds() -> float:
    """bench/floor.py's CPU seconds per cycle, measured in a process of its own."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.floor"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return float(result.stdout.strip())


# Memory.


# Runs a command and writes its peak RSS (KiB) to a file. The measured process must be
# forked from something small: Linux carries the RSS high-water mark of the forking
# process across exec into the child's, so a child of this process would inherit ours.
_PEAK_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _peak_rss_mib(command: list[str], *, log_path: Path) -> tuple[float, str]:
    """Run ``command`` to its end; its peak RSS (MiB) and its standard output."""
    with tempfile.TemporaryDirectory() as scratch, open(log_path, "ab") as err:
        peak_file = Path(scratch) / "peak"
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _PEAK_WRAPPER, str(peak_file), *command],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=_env(),
            cwd=ROOT,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[2:5]} failed ({done.returncode}); see {log_path}")
        return int(peak_file.read_text()) / 1024, done.stdout.decode("utf-8", "replace")


def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = min(left, 8 * MIB)
            handle.write(os.urandom(chunk))
            left -= chunk


@dataclass(frozen=True)
class _Transfer:
    """One message sent and read back through the CLI, each command its own process."""

    size: int
    send_peak_mib: float
    read_peak_mib: float
    send_seconds: float
    read_seconds: float


def _send_and_read(home: Path, size: int, work: Path) -> _Transfer:
    """``securecomm send --file`` then ``securecomm read --out`` of ``size`` random bytes:
    peak RSS and wall time of each (a file over 1 MiB goes as a stream, format v2)."""
    source = work / f"message-{size}.bin"
    _write_random(source, size)
    out = work / f"read-{size}.bin"
    log_path = home / "logs" / "clients.log"
    os.sync()  # the file's writeback does not land in the transfer's own fsyncs
    send = _cli("send", "--file", str(source), "--from", "alice", "--to", "bob")
    send += ["--home", str(home)]
    started = time.perf_counter()
    send_peak, text = _peak_rss_mib(send, log_path=log_path)
    send_seconds = time.perf_counter() - started
    found = re.search(r"message id:\s+([0-9a-f]{32})", text)
    if not found:
        raise RuntimeError(f"send printed no message id: {text[:300]!r}")
    message_id = found.group(1)
    read = _cli("read", message_id, "--as", "bob", "--out", str(out), "--home", str(home))
    read += ["--deadline", "600"]
    started = time.perf_counter()
    read_peak, _ = _peak_rss_mib(read, log_path=log_path)
    read_seconds = time.perf_counter() - started
    if out.stat().st_size != size or not _same_file(source, out):
        raise RuntimeError(f"the {size}-byte message read back differs from the one sent")
    source.unlink()
    out.unlink()
    return _Transfer(size, send_peak, read_peak, send_seconds, read_seconds)


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as x, open(b, "rb") as y:
        while True:
            left, right = x.read(8 * MIB), y.read(8 * MIB)
            if left != right:
                return False
            if not left:
                return True


def _label(size_mib: int) -> str:
    return (
        f"{size_mib // 1024} GiB"
        if size_mib >= 1024 and size_mib % 1024 == 0
        else f"{size_mib} MiB"
    )


def _high_water_mib(pids: Sequence[int]) -> float:
    """The largest peak RSS (VmHWM) of ``pids``, in MiB: what a server's workers have
    needed at most since they started."""
    peak = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmHWM:\s+([0-9]+) kB", status, re.MULTILINE)
        if found:
            peak = max(peak, int(found.group(1)))
    return peak / 1024


#: Version 2's goal (issue 17): a process's peak grows by at most this much over its peak
#: for a 1 KiB message, whatever the size.
FLAT_GROWTH_MIB = 64

# Our AES-GCM layer alone over SIZE bytes, in a fresh process: the stream sealed from 1 MiB
# pieces (the CLI's), then opened, the plaintext made beforehand and the sealed chunks kept
# in memory between the two. Prints the seconds of each.
_AES_LAYER = """
import os, sys, time
from securecomm import stream
size = int(sys.argv[1])
piece = os.urandom(1024 * 1024)
key = os.urandom(32)
pieces = (piece[: min(len(piece), size - at)] for at in range(0, size, len(piece)))
started = time.perf_counter()
sealed = list(stream.encrypt(key, pieces))
sealing = time.perf_counter() - started
started = time.perf_counter()
for _ in stream.decrypt(key, sealed, length=size):
    pass
opening = time.perf_counter() - started
print(sealing, opening)
"""

# The bytes a send and a read must put on disk durably, written as fast as the disk takes
# them and as they write them: the relay's copy of the stream fsynced a piece (4 MiB) at a
# time and the reader's output each 8 MiB, each part then let go of the page cache.
_DISK = """
import os, sys, time
from securecomm.client.streamed import SYNC_BYTES
from securecomm.config import MAX_PIECE_BYTES
size, folder = int(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
for name, part in (("relay-copy", MAX_PIECE_BYTES), ("output", SYNC_BYTES)):
    piece = os.urandom(part)
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        for at in range(0, size, len(piece)):
            handle.write(piece[: min(len(piece), size - at)])
            handle.flush()
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), at, len(piece), os.POSIX_FADV_DONTNEED)
    os.unlink(path)
print(time.perf_counter() - started)
"""


def _fresh_seconds(script: str, *args: str) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
        cwd=ROOT,
        timeout=900,
    )
    return [float(value) for value in done.stdout.split()]


def memory_rows(plan: Plan, base: Path, log: Callable[[str], None]) -> list[Row]:
    """Issue 17: peak memory of the CLI, the relay and a custodian, flat from 64 MiB to
    1 GiB; and the speed of a large send and read beside our AES-GCM layer alone."""
    work = base / "memory"
    work.mkdir()
    home = _new_home(base, "memory-home-5")
    transfers: dict[int, _Transfer] = {}
    servers_peak: dict[int, tuple[float, float]] = {}  # size -> (relay, custodian alpha)
    servers = _stack_servers(home)
    with _running(servers):
        _register_users(home)
        relay, alpha = servers[0], servers[1]
        for size in (1024, *(size_mib * MIB for size_mib in plan.sizes_mib)):
            started = time.perf_counter()
            transfers[size] = _send_and_read(home, size, work)
            servers_peak[size] = (
                _high_water_mib(relay.worker_pids()),
                _high_water_mib(alpha.worker_pids()),
            )
            done = transfers[size]
            log(
                f"memory {size:,} bytes: send {done.send_peak_mib:.0f} MiB"
                f" {done.send_seconds:.1f} s, read {done.read_peak_mib:.0f} MiB"
                f" {done.read_seconds:.1f} s; relay {servers_peak[size][0]:.0f} MiB, alpha"
                f" {servers_peak[size][1]:.0f} MiB; {time.perf_counter() - started:.1f} s"
            )
    idle, idle_servers = transfers[1024], servers_peak[1024]
    rows = []
    goal = f"growth over 1 KiB <= {FLAT_GROWTH_MIB} MiB"
    for size_mib in plan.sizes_mib:
        done, serving = transfers[size_mib * MIB], servers_peak[size_mib * MIB]
        for figure, ours, peer in (
            (
                f"`securecomm send --file` of {_label(size_mib)}",
                done.send_peak_mib,
                idle.send_peak_mib,
            ),
            (
                f"`securecomm read --out` of {_label(size_mib)}",
                done.read_peak_mib,
                idle.read_peak_mib,
            ),
            (
                f"the relay's worker, serving a send and read of {_label(size_mib)}",
                serving[0],
                idle_servers[0],
            ),
            (
                f"a custodian's worker, while a {_label(size_mib)} message is sent and read",
                serving[1],
                idle_servers[1],
            ),
        ):
            rows.append(
                Row(
                    "Memory",
                    f"peak RSS of {figure}",
                    "MiB",
                    ours,
                    peer,
                    "the same with 1 KiB",
                    goal,
                    ours - peer <= FLAT_GROWTH_MIB,
                    higher_is_better=False,
                )
            )
    largest = max(plan.sizes_mib) * MIB
    done = transfers[largest]
    sealing, opening = _fresh_seconds(_AES_LAYER, str(largest))
    disk = _fresh_seconds(_DISK, str(largest), str(work))[0]
    label = _label(max(plan.sizes_mib))
    for flow, seconds, layer in (
        ("send", done.send_seconds, sealing),
        ("read", done.read_seconds, opening),
    ):
        rows.append(
            Row(
                "Large messages",
                f"`securecomm {flow}` of {label}, a new process, end to end",
                "MB/s",
                largest / seconds / 1e6,
                largest / layer / 1e6,
                f"our AES-GCM layer alone ({'sealing' if flow == 'send' else 'opening'} the"
                " same bytes, a fresh process)",
                "report",
                None,
            )
        )
    end_to_end = largest / (done.send_seconds + done.read_seconds) / 1e6
    rows.append(
        Row(
            "Large messages",
            f"send + read of {label} end to end",
            "MB/s",
            end_to_end,
            largest / (sealing + opening) / 1e6,
            "our AES-GCM layer alone over the same bytes (sealing and opening)",
            ">= 0.50x",
            end_to_end >= 0.5 * largest / (sealing + opening) / 1e6,
        )
    )
    rows.append(
        Row(
            "Large messages",
            f"send + read of {label} end to end",
            "MB/s",
            end_to_end,
            largest / disk / 1e6,
            "the disk alone writing the bytes they must keep as they keep them (the relay's"
            " copy fsynced 4 MiB at a time, the output 8 MiB, each then dropped from the"
            " page cache)",
            "report",
            None,
        )
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    """Every row of this file; ``quick`` is a smoke run of a few seconds, tiny sizes."""
    plan = QUICK if quick else FULL

    def log(line: str) -> None:
        print(f"  [services] {line}", file=sys.stderr, flush=True)

    rows: list[Row] = []
    with ExitStack() as cleanup:
        base = Path(tempfile.mkdtemp(prefix="securecomm-bench-"))
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        for part in (relay_rows, end_to_end_rows, memory_rows):
            started = time.perf_counter()
            rows += part(plan, base, log)
            log(f"{part.__name__}: {time.perf_counter() - started:.1f} s")
    return rows


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for row in run(quick="--quick" in sys.argv):
        ratio = f"  ratio {row.ratio:.2f}" if row.ratio is not None else ""
        print(
            f"{row.group:<11} {row.figure:<78} {row.ours:>10.2f} {row.unit:<8}"
            f" peer {row.peer if row.peer is None else round(row.peer, 2)}{ratio}"
            f"  {row.goal} {'' if row.met is None else ('MET' if row.met else 'MISSED')}"
        )

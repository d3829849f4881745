"""Relay replicas: ``securecomm up --relay-replicas N`` runs the relay as N processes on
one database behind Debian's nginx on the relay's one address.

- Through the CLI, on SQLite (the default): ``up --relay-replicas 2`` answers at the
  relay's address, a send and a read work through it, both replicas serve requests, a
  second ``up`` is refused and changes nothing, and stopping ``up`` leaves no replica
  and no nginx process. Then over HTTPS (``up --tls``): the front serves the relay's own
  certificate, and Ctrl-C stops everything. The front's own refusals (no replica, a body
  over the limit) are JSON in the relay's shape.
- On PostgreSQL, the relay's processes of the stack ``up`` runs: the same signed request
  sent to two replicas at the same moment is carried out by one and refused as a replay
  by the other; and with clients storing messages through the front, one replica is
  killed (``kill -9``) and started again in each of 30 rounds, and every message that
  was acknowledged (201) is served afterwards, byte for byte. Requests may fail only
  while in flight on the replica that was killed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from securecomm import httpsig
from securecomm.client.transport import ServiceClient, tls_context
from securecomm.config import MAX_PIECE_BYTES, load_settings
from securecomm.errors import ServiceError
from securecomm.identity import Identity, load_public
from securecomm.local.front import Front, find_nginx
from securecomm.local.home import init_home
from securecomm.local.stack import Process, Stack
from tests.postgres import Cluster
from tests.unit._services import make_envelope

from .conftest import NAMES, free_port, write_config
from .test_cli_system import (
    CLI,
    Up,
    clean_env,
    cli,
    explain,
    healthy,
    listening,
    processes_of,
    read,
    send,
    stop_up,
    wait_for,
)
from .test_relay_streams import download, stream_message, upload

REPLICAS = 2
ROUNDS = 30  # kill -9 rounds under load
CLIENTS = 4  # threads storing messages through the front meanwhile
ACKS_PER_ROUND = 3  # new acknowledged messages before each kill
PACE = 0.05  # seconds each client waits between two messages (fewer to check after)
SMALL_ENVELOPES = 64 * 1024  # the PostgreSQL stack's max_envelope_bytes


# --- up --relay-replicas, through the CLI ---


def start_replicated(home: Path, *, tls: bool = False) -> Up:
    """``init`` then ``up --relay-replicas 2`` on free ports, until the front and every
    custodian answer and ``up`` says it is up."""
    ports = {name: free_port() for name in NAMES}
    up = Up(home, free_port(), ports, tls)
    write_config(home, up.relay_port, ports)
    tls_flag = ["--tls"] if tls else []
    initialised = cli(home, "init", *tls_flag)
    assert initialised.returncode == 0, explain(initialised)
    with open(up.stdout, "wb") as out, open(up.stderr, "wb") as err:
        up.process = subprocess.Popen(
            [*CLI, "up", "--home", str(home), "--relay-replicas", str(REPLICAS), *tls_flag],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=clean_env(),
        )
    urls = [up.relay_url, *(up.url(name) for name in NAMES)]

    def ready() -> bool:
        assert up.process is not None
        if up.process.poll() is not None:
            raise AssertionError(f"up exited with {up.process.returncode}\n{up.output()}")
        return all(healthy(u, up.trust) for u in urls) and "securecomm is up" in (
            up.stdout.read_text(errors="replace")
        )

    try:
        wait_for(ready, 60, "up to start the replicas, the front and the custodians")
    except BaseException:
        stop_up(up)
        raise
    return up


def listed(up: Up) -> dict[str, str]:
    """What ``up`` printed of each process: {name: URL}."""
    rows = re.findall(r"^  (\S+)\s+(https?://\S+)\s", up.stdout.read_text(), re.MULTILINE)
    return dict(rows)


def front_group(home: Path) -> int:
    """The process group of the running front: nginx's master leads it."""
    return int((home / "relay-front" / "nginx.pid").read_text().strip())


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def stop_and_check(up: Up, group: int, sig: int = signal.SIGTERM) -> None:
    """Stop ``up`` with ``sig``; nothing of it may be left: no replica, no nginx master or
    worker, no port listening."""
    assert up.process is not None
    up.process.send_signal(sig)
    try:
        assert up.process.wait(timeout=60) == 0, up.output()
    finally:
        left = stop_up(up)  # kills anything left, then says what it was
    assert left == [], up.output()
    wait_for(lambda: not group_alive(group), 10, "nginx's master and workers to go")
    for port in (up.relay_port, *up.ports.values()):
        assert not listening(port), port
    for url in listed(up).values():
        assert not listening(int(url.rsplit(":", 1)[1])), url
    assert "stopped" in up.stderr.read_text()


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = start_replicated(tmp_path_factory.mktemp("replicas") / "home")
    group = front_group(up.home)
    try:
        yield up
    finally:
        stop_and_check(up, group)


def access_lines(log: Path) -> list[dict[str, object]]:
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_one_address_serves_a_send_and_a_read_from_both_replicas(replicated: Up) -> None:
    up = replicated
    shown = listed(up)
    assert shown["relay-front"] == up.relay_url, up.output()
    replicas = {name: shown[name] for name in ("relay-1", "relay-2")}
    ports = {int(url.rsplit(":", 1)[1]) for url in replicas.values()}
    assert len(ports) == REPLICAS and up.relay_port not in ports, shown
    for url in replicas.values():
        assert url.startswith("http://127.0.0.1:"), url  # internal, on loopback
        assert healthy(url)
    # The network file and the page name the one address; each person acts through it.
    network = json.loads((up.home / "network.json").read_text())
    assert network["relay"]["url"] == up.relay_url
    assert httpx.get(f"{up.relay_url}/", timeout=10).status_code == 200

    for number in range(4):
        message = f"through the front, {number}"
        message_id = send(up.home, message)
        got = read(up.home, message_id)
        assert got.returncode == 0 and got.stdout == message, explain(got)

    # Each replica answered API requests, signed ones among them (the reads: their
    # signatures covered the path the client sent, and the answers were checked).
    logs = up.home / "logs"
    for name in replicas:
        served = [line for line in access_lines(logs / f"{name}.log") if line.get("caller")]
        assert served, f"{name} answered no signed request"
    front = access_lines(logs / "relay-front.access.log")
    used = {line["replica"] for line in front if str(line["path"]).startswith("/api/")}
    assert used == {f"127.0.0.1:{port}" for port in ports}, used
    assert all(line["status"] in (200, 201) for line in front if line["method"] == "POST")


def test_a_second_up_is_refused_and_changes_nothing(replicated: Up) -> None:
    up = replicated
    config = up.home / "relay-front" / "nginx.conf"
    before = (config.read_bytes(), sorted(processes_of(up.home)))
    second = cli(up.home, "up", "--relay-replicas", str(REPLICAS))
    assert second.returncode == 1, explain(second)
    assert re.search(rf"relay-front\s+127\.0\.0\.1:{up.relay_port}\b", second.stderr), explain(
        second
    )
    assert "another 'securecomm up'" in second.stderr, explain(second)
    # Its front's configuration, which names the first one's replicas, is not rewritten.
    assert (config.read_bytes(), sorted(processes_of(up.home))) == before
    assert healthy(up.relay_url)


def test_over_tls_the_front_serves_the_relay_s_certificate_and_ctrl_c_stops_all(
    tmp_path: Path,
) -> None:
    up = start_replicated(tmp_path / "home", tls=True)
    group = front_group(up.home)
    try:
        assert up.trust is not None
        assert up.relay_url.startswith("https://")
        message_id = send(up.home, "over TLS, through the front")
        got = read(up.home, message_id)
        assert got.returncode == 0 and got.stdout == "over TLS, through the front", explain(got)
        # The front answers with the relay's own certificate, checked against the CA.
        context = tls_context(up.trust)
        with (
            socket.create_connection(("127.0.0.1", up.relay_port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
        ):
            served = wrapped.getpeercert(binary_form=True)
        relay_pem = (up.home / "relay" / "tls" / "relay.pem").read_bytes()
        assert served == x509.load_pem_x509_certificate(relay_pem).public_bytes(Encoding.DER)
        # The replicas serve HTTPS too, on loopback: nothing on the way speaks plain HTTP.
        for name in ("relay-1", "relay-2"):
            url = listed(up)[name]
            assert url.startswith("https://127.0.0.1:"), url
            with pytest.raises(httpx.HTTPError):
                httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)
    except BaseException:
        stop_up(up)
        raise
    stop_and_check(up, group, signal.SIGINT)


def test_up_killed_outright_leaves_no_replica_and_no_nginx(tmp_path: Path) -> None:
    """kill -9 of `up` left the replicas, the custodians and nginx running on their ports,
    each in a session of its own; now each ends with `up`."""
    up = start_replicated(tmp_path / "home")
    group = front_group(up.home)
    assert up.process is not None
    up.process.kill()
    up.process.wait(timeout=30)
    try:
        wait_for(lambda: processes_of(up.home) == [], 20, "every process to end with up")
        wait_for(lambda: not group_alive(group), 10, "nginx's master and workers to go")
    finally:
        stop_up(up)  # kills anything left, if the test failed
    for port in (up.relay_port, *up.ports.values()):
        assert not listening(port), port


def test_the_front_s_own_refusals_are_json_like_the_relay_s(tmp_path: Path) -> None:
    """No replica answering, and a body over the relay's limit: nginx answers itself, in
    the shape of the relay's errors, and stops with everything it started."""
    port = free_port()
    made = Front(tmp_path / "relay-front", tmp_path / "logs", "127.0.0.1", port,
                 (free_port(), free_port()), max_body_bytes=1000)  # fmt: skip
    made.write()
    url = f"http://127.0.0.1:{port}"
    front = Process("relay-front", made.command(find_nginx()), url, tmp_path / "front.log")
    front.start()
    assert front.popen is not None
    group = front.popen.pid
    try:
        wait_for(lambda: listening(port), 10, "nginx to listen")
        answer = httpx.get(f"{url}/healthz", timeout=10)
        assert answer.status_code == 502, answer.text
        assert answer.json() == {"code": "http_error", "message": "no relay replica answered"}
        body = b"{" + b" " * 1000 + b"}"
        answer = httpx.post(f"{url}/api/v1/messages", content=body, timeout=10)
        assert answer.status_code == 413, answer.text
        assert answer.json() == {"code": "too_large", "message": "body larger than 1000 bytes"}
    finally:
        front.stop()
    assert not group_alive(group)
    assert not listening(port)


# --- on PostgreSQL: the relay's processes of the stack `up` runs ---


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory, postgres: Cluster) -> Iterator[Stack]:
    """Two relay replicas and their front, on a new PostgreSQL database."""
    home = tmp_path_factory.mktemp("pg-replicas") / "home"
    # Envelopes smaller than a stream's piece: the front still takes a whole piece.
    write_config(home, free_port(), {name: free_port() for name in NAMES}, SMALL_ENVELOPES)
    init_home(home)
    relay_settings = home / "relay" / "securecomm.toml"
    text = relay_settings.read_text()
    url = postgres.database("replicas")
    relay_settings.write_text(text.replace("[server]\n", f'[server]\ndatabase_url = "{url}"\n', 1))
    stack = Stack(load_settings(home, env={}), replicas=REPLICAS)
    # The relay's processes only: these tests post envelopes, they ask no custodian.
    stack.processes = [p for p in stack.processes if p.identity_name == "relay"]
    assert [p.name for p in stack.processes] == ["relay-front", "relay-1", "relay-2"]
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        assert not any(p.running for p in stack.processes)


def at_once(urls: list[str], headers: dict[str, str]) -> list[tuple[int, str]]:
    """The same signed request (the same nonce) to each of ``urls`` at the same moment,
    each on a connection opened before; each answer's status and error code."""
    barrier = threading.Barrier(len(urls))
    answers: list[tuple[int, str] | BaseException | None] = [None] * len(urls)

    def call(index: int, url: str) -> None:
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                assert client.get("/healthz").status_code == 200  # connected before
                barrier.wait(timeout=30)
                answer = client.get("/api/v1/inbox", headers=headers)
            answers[index] = (answer.status_code, answer.json().get("code", ""))
        except BaseException as exc:  # reported by the test, not lost in the thread
            answers[index] = exc

    threads = [threading.Thread(target=call, args=(i, url)) for i, url in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done = [a for a in answers if isinstance(a, tuple)]
    assert len(done) == len(urls), answers
    return done


def test_a_nonce_replayed_to_two_replicas_at_once_is_accepted_once(pg_stack: Stack) -> None:
    caller = Identity.generate("alice")
    urls = [pg_stack.process(f"relay-{n}").url for n in (1, 2)]
    winners = []
    for _ in range(12):
        headers = httpsig.sign_request(caller, method="GET", path="/api/v1/inbox", audience="relay")
        answers = at_once(urls, headers)
        assert sorted(answers) == [(200, ""), (401, "replayed_request")], answers
        winners.append(answers.index((200, "")) + 1)
    print(f"\nthe same nonce at two replicas at once, 12 times: accepted by relay-{winners}")


def test_a_stream_goes_through_the_front_in_whole_pieces_to_either_replica(
    pg_stack: Stack,
) -> None:
    front = pg_stack.process("relay-front")
    relay_key = load_public(pg_stack.settings.home / "relay" / "relay" / "identity.pub")
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    message = stream_message(alice, [bob], os.urandom(3 * MAX_PIECE_BYTES))
    with ServiceClient(front.url, "relay", alice, answers=relay_key, timeout=30) as relay:
        relay.request("PUT", message.upload, body={"v": 2, "length": len(message.stream)})
        upload(relay, message, piece=MAX_PIECE_BYTES)
        stored = relay.request("POST", "/api/v1/messages", raw=message.document.to_bytes())
        assert stored.status_code == 201
        # An envelope over the relay's limit but under a piece: the relay refuses it (signed).
        big = make_envelope(alice, [bob], plaintext=os.urandom(SMALL_ENVELOPES)).to_bytes()
        with pytest.raises(ServiceError) as refused:
            relay.request("POST", "/api/v1/messages", raw=big, sign=False)
        assert (refused.value.status, refused.value.code) == (413, "too_large")
    with ServiceClient(front.url, "relay", bob, answers=relay_key, timeout=30) as relay:
        assert download(relay, message) == message.stream
    front_log = access_lines(pg_stack.settings.home / "logs" / "relay-front.access.log")
    appended = {
        str(line["replica"])
        for line in front_log
        if line["method"] == "POST" and line["path"] == message.upload
    }
    # least_conn takes equals in turn: one upload was appended to by both replicas.
    assert len(appended) == REPLICAS, appended


@dataclass
class Load:
    """Clients storing messages through the front, and what became of each request."""

    url: str
    sender: Identity = field(default_factory=lambda: Identity.generate("alice"))
    recipient: Identity = field(default_factory=lambda: Identity.generate("bob"))
    acknowledged: dict[str, str] = field(default_factory=dict)  # id -> digest of what was sent
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, what
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    crashed: list[BaseException] = field(default_factory=list)

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=30) as client:
                while not self.stop.is_set():
                    body = make_envelope(self.sender, [self.recipient]).to_bytes()
                    began = time.monotonic()
                    try:
                        answer = client.post(
                            "/api/v1/messages",
                            content=body,
                            headers={"Content-Type": "application/json"},
                        )
                        what = f"HTTP {answer.status_code}"
                    except httpx.HTTPError as exc:
                        answer, what = None, type(exc).__name__
                    ended = time.monotonic()
                    with self.lock:
                        if answer is not None and answer.status_code == 201:
                            stored = answer.json()
                            digest = hashlib.sha256(body).hexdigest()
                            assert stored["digest"] == digest, stored
                            self.acknowledged[stored["id"]] = digest
                        else:
                            self.failures.append((began, ended, what))
                    self.stop.wait(PACE)
        except BaseException as exc:
            self.crashed.append(exc)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def wait_for(self, count: int) -> None:
        """Until ``count`` messages in all are acknowledged."""
        wait_for(lambda: self.count() >= count or bool(self.crashed), 30, f"{count} messages")
        assert not self.crashed, self.crashed


def crash_and_restart(victim: Process) -> tuple[float, float]:
    """kill -9 the replica (its gunicorn master and workers), start it again and wait until
    it answers; when the kill was sent, and when the replica was seen gone."""
    port = int(victim.url.rsplit(":", 1)[1])
    assert victim.popen is not None
    killed = time.monotonic()
    victim.signal(signal.SIGKILL)
    victim.popen.wait(timeout=10)
    wait_for(lambda: not listening(port), 10, f"{victim.name} to be gone")
    gone = time.monotonic()
    victim.start()
    wait_for(victim.healthy, 30, f"{victim.name} to answer again")
    return killed, gone


def test_kill_9_of_a_replica_under_load_loses_no_acknowledged_message(pg_stack: Stack) -> None:
    front = pg_stack.process("relay-front")
    load = Load(front.url)
    clients = [threading.Thread(target=load.run) for _ in range(CLIENTS)]
    crashes: list[tuple[float, float]] = []  # (kill sent, replica seen gone)
    began = time.monotonic()
    for thread in clients:
        thread.start()
    try:
        for number in range(ROUNDS):
            load.wait_for(load.count() + ACKS_PER_ROUND)
            crashes.append(crash_and_restart(pg_stack.process(f"relay-{number % REPLICAS + 1}")))
    finally:
        load.stop.set()
        for thread in clients:
            thread.join(timeout=60)
    took = time.monotonic() - began
    assert not load.crashed, load.crashed

    # A request may fail only if it was in flight when a replica died: sent before the
    # replica was seen gone, and not answered before it was killed.
    def in_flight(start: float, end: float) -> bool:
        return any(start <= gone and end >= killed for killed, gone in crashes)

    stray = [f for f in load.failures if not in_flight(f[0], f[1])]
    assert stray == [], f"{len(stray)} request(s) failed outside a crash: {stray[:5]}"
    acknowledged = dict(load.acknowledged)
    assert len(acknowledged) >= ROUNDS * ACKS_PER_ROUND

    # Every acknowledged message is served by the relay afterwards, as it was sent.
    relay_key = load_public(pg_stack.settings.home / "relay" / "relay" / "identity.pub")
    ids = sorted(acknowledged)
    served: dict[str, str] = {}

    def fetch(part: list[str]) -> None:
        with ServiceClient(front.url, "relay", load.sender, answers=relay_key) as relay:
            for message_id in part:
                stored = relay.request("GET", f"/api/v1/messages/{message_id}").content
                served[message_id] = hashlib.sha256(stored).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(fetch, [ids[i::CLIENTS] for i in range(CLIENTS)]))
    lost = [i for i in ids if served.get(i) != acknowledged[i]]
    assert lost == [], f"{len(lost)} of {len(acknowledged)} acknowledged messages lost"
    kinds = sorted({what for _, _, what in load.failures})
    print(
        f"\nkill -9 under load: {ROUNDS} rounds in {took:.0f} s, {len(acknowledged)} messages"
        f" acknowledged, 0 lost; {len(load.failures)} request(s) failed, all in flight"
        f" ({', '.join(kinds) or 'none'})"
    )

"""Real service processes on free loopback ports, for integration tests.

Each service runs as ``python -m securecomm.cli … serve`` (gunicorn, one
worker unless a test asks for more) in its own process group, so a test can
SIGTERM it or ``kill -9`` the whole group, and every test stops what it started.
A stack stores on the backend it is given (``tests/backends.py``): the module
fixture ``stack`` runs its module's tests once on SQLite, once on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from securecomm.client.transport import close_idle_pools
from securecomm.config import load_settings
from securecomm.local.home import config_text
from securecomm.service.storage import database_url, sqlite_file
from tests.backends import Backend
from tests.operators import provide_operator

NAMES = ("alpha", "bravo", "charlie", "delta", "echo")


#: Every port free_port handed out in this process: never handed out again.
_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port no one listens on, and that this process has not handed out before.
    The kernel may give the same free port to two calls in a row: a stack whose bravo and
    charlie got one port once started charlie's server, found it "healthy" (bravo answered
    there) and had two custodians of one identity."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_healthy(
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    name: str,
    timeout: float = 30.0,
    *,
    trust: str | None = None,
    identity: str | None = None,
) -> None:
    """Until ``url`` answers ``/healthz`` (over TLS: with a certificate from the CA
    ``trust``); RuntimeError with the log's end if the process exits first or nothing
    answers in time, or if the service answering is not ``identity`` (when given): another
    service holding the port would otherwise pass for the one started."""
    verify: ssl.SSLContext | bool = (
        True if trust is None else ssl.create_default_context(cadata=trust)
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            answer = httpx.get(f"{url}/healthz", timeout=1, verify=verify)
        except httpx.HTTPError:
            answer = None
        if answer is not None and answer.status_code == 200:
            said = answer.json().get("name")
            if identity is not None and said != identity:
                raise RuntimeError(f"{url} is answered by {said!r}, not {identity!r}")
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer /healthz at {url} in {timeout} s")


def stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process group ``process`` leads, and wait; SIGKILL after 15 s."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@dataclass
class Service:
    kind: str  # "relay" or "custodian"
    name: str
    port: int
    home: Path
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        command = [sys.executable, "-m", "securecomm.cli", self.kind, "serve"]
        if self.kind == "custodian":
            provide_operator(load_settings(self.home, env={}), self.name)
            command += ["--name", self.name]
        command += ["--home", str(self.home), "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        try:
            wait_healthy(self.process, self.url, self.log, self.name, timeout, identity=self.name)
        except RuntimeError:
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_group(self.process, sig)
        self.process = None

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class Stack:
    home: Path
    relay: Service
    custodians: dict[str, Service]

    def all(self) -> list[Service]:
        return [self.relay, *self.custodians.values()]

    def database_url(self, name: str) -> str:
        """Where service ``name`` ("relay" or a custodian's) stores, as its settings say."""
        settings = load_settings(self.home, env={})
        return settings.relay_database() if name == "relay" else settings.custodian_database(name)


def engine_of(url: str) -> sa.Engine:
    """An engine on a service's database, from its ``database_url`` (psycopg 3 for
    PostgreSQL, as the services use). The caller disposes of it."""
    return sa.create_engine(database_url(url))


def stored_bytes(url: str) -> bytes:
    """Everything a service's database holds: every value of every row of every table,
    and on SQLite the file and its WAL as they are on disk (free pages included)."""
    engine = engine_of(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        parts: list[bytes] = []
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    for value in row:
                        if isinstance(value, bytes | bytearray | memoryview):
                            parts.append(bytes(value))
                        elif value is not None:
                            parts.append(str(value).encode())
    finally:
        engine.dispose()
    path = sqlite_file(url)
    if path is not None:
        for file in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm"))):
            if file.exists():
                parts.append(file.read_bytes())
    return b"\n".join(parts)


def write_config(
    home: Path,
    relay_port: int,
    ports: dict[str, int],
    max_envelope_bytes: int | None = None,
    backend: Backend | None = None,
) -> None:
    """The stack's securecomm.toml; on PostgreSQL each service gets a new database."""
    home.mkdir(parents=True, exist_ok=True)
    urls = backend.database_urls(["relay", *ports]) if backend is not None else {}
    (home / "securecomm.toml").write_text(
        config_text(
            len(ports),
            3,
            relay_port=relay_port,
            ports=ports,
            max_envelope_bytes=max_envelope_bytes,
            database_urls=urls,
        )
    )


def start_stack(home: Path, backend: Backend | None = None, *, workers: int = 1) -> Stack:
    """Write a config with free ports under ``home`` and start the relay and five custodians,
    each with ``workers`` gunicorn workers, storing on ``backend`` (default SQLite)."""
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    write_config(home, relay_port, ports, backend=backend)
    result = Stack(
        home,
        Service("relay", "relay", relay_port, home, workers=workers),
        {
            name: Service("custodian", name, port, home, workers=workers)
            for name, port in ports.items()
        },
    )
    try:
        for service in result.all():
            service.start()
    except BaseException:
        stop_stack(result)
        raise
    return result


def stop_stack(stack: Stack) -> None:
    """Stop every service of ``stack``, all at once (each takes a second or so to go),
    after closing this process's idle kept-alive connections, which each would wait out."""
    close_idle_pools()
    with ThreadPoolExecutor(len(stack.all())) as pool:
        for stopping in [pool.submit(service.stop) for service in stack.all()]:
            stopping.result()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Stack]:
    """The relay and five custodians, shared by one test module (once per backend),
    stopped after it."""
    started = start_stack(tmp_path_factory.mktemp(f"stack-{backend}") / "home", backend)
    try:
        yield started
    finally:
        stop_stack(started)

"""Real service processes on free loopback ports, for integration tests.

Each service runs as ``python -m securecomm.cli … serve`` (gunicorn, one
worker) in its own process group, so a test can SIGTERM it or ``kill -9``
the whole group, and every test stops what it started.
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from securecomm.config import load_settings
from securecomm.local.home import config_text
from tests.operators import provide_operator

NAMES = ("alpha", "bravo", "charlie", "delta", "echo")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    name: str,
    timeout: float = 30.0,
    *,
    trust: str | None = None,
) -> None:
    """Until ``url`` answers ``/healthz`` (over TLS: with a certificate from the CA
    ``trust``); RuntimeError with the log's end if the process exits first or nothing
    answers in time."""
    verify: ssl.SSLContext | bool = (
        True if trust is None else ssl.create_default_context(cadata=trust)
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
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
        command += ["--home", str(self.home), "--port", str(self.port), "--workers", "1"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        try:
            wait_healthy(self.process, self.url, self.log, self.name, timeout)
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


def write_config(
    home: Path, relay_port: int, ports: dict[str, int], max_envelope_bytes: int | None = None
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "securecomm.toml").write_text(
        config_text(
            len(ports), 3, relay_port=relay_port, ports=ports, max_envelope_bytes=max_envelope_bytes
        )
    )


def start_stack(home: Path) -> Stack:
    """Write a config with free ports under ``home`` and start the relay and five custodians."""
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    write_config(home, relay_port, ports)
    result = Stack(
        home,
        Service("relay", "relay", relay_port, home),
        {name: Service("custodian", name, port, home) for name, port in ports.items()},
    )
    try:
        for service in result.all():
            service.start()
    except BaseException:
        stop_stack(result)
        raise
    return result


def stop_stack(stack: Stack) -> None:
    for service in stack.all():
        service.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The relay and five custodians, shared by one test module, stopped after it."""
    started = start_stack(tmp_path_factory.mktemp("stack") / "home")
    try:
        yield started
    finally:
        stop_stack(started)

"""The local system: the relay and every custodian as separate server processes, each
started from its own home under the data directory (``local.home``).

``securecomm up`` starts them, waits until each answers ``/healthz``, and
on Ctrl-C or SIGTERM stops every process it started: each service runs in
its own process group (a gunicorn master and its workers), which is
signalled as a whole, then killed if it has not gone within the grace time.
Before starting anything it checks that every port is free, so a second
``up`` is refused at once instead of mistaking the first one's answers for
its own services'.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..client.transport import tls_context
from ..config import Settings
from ..errors import SecureCommError, ServiceError
from ..identity import load_public
from .home import party_home

__all__ = ["BusyPort", "Process", "Stack"]

GRACE_SECONDS = 10.0


@dataclass
class Process:
    name: str
    command: list[str]
    url: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # None: this process's environment
    cwd: Path | None = None
    identity: Path | None = None  # its .pub file, to recognise it answering on its port
    trust: str | None = None  # the CA of its TLS certificate, if it serves HTTPS

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def healthy(self) -> bool:
        return _health(self.url, self.trust) is not None

    def signal(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        if self.popen is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(timeout=grace)
        # Workers that outlived their master are in the same group.
        self.signal(signal.SIGKILL)
        self.popen = None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def exit_reason(self) -> str:
        """How it ended and the last lines of its log, for a process that is no longer running."""
        code = self.popen.poll() if self.popen is not None else None
        if code is None:
            how = "stopped"
        elif code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        # Request lines (JSON) and the start banner are not reasons; errors and tracebacks are.
        last = [
            line
            for line in self.tail(200).splitlines()
            if line.strip() and not line.startswith("{") and " listening on " not in line
        ][-4:]
        if not last:
            return f"{how}; its log {self.log} says nothing more"
        ends = "\n".join(f"    {line}" for line in last)
        return f"{how}; its log ends:\n{ends}\n  (the whole log: {self.log})"

    def restart_command(self) -> str:
        """The command a person types to start this service again by hand."""
        prefix = cli_command()
        if self.command[: len(prefix)] == prefix:
            return shlex.join(["securecomm", *self.command[len(prefix) :]])
        return shlex.join(self.command)

    def busy(self) -> BusyPort | None:
        """Who holds this service's port already, if anyone does."""
        url = httpx.URL(self.url)
        host, port = url.host, url.port or 80
        if not _port_taken(host, port):
            return None
        answer = _health(self.url, self.trust)
        expected = None
        if self.identity is not None:
            try:
                expected = load_public(self.identity).fingerprint_hex
            except SecureCommError:
                pass
        if answer is None:
            return BusyPort(self.name, host, port, "another program listens there", False)
        if expected is not None and answer.get("fingerprint") == expected:
            return BusyPort(
                self.name, host, port, f"this data directory's {self.name} answers", True
            )
        return BusyPort(
            self.name,
            host,
            port,
            f"another securecomm {answer.get('service', 'service')}"
            f" ({answer.get('name', '?')}, another identity) answers",
            False,
        )


@dataclass(frozen=True)
class BusyPort:
    """A port a service needs that something else holds."""

    name: str  # the service that needs it
    host: str
    port: int
    holder: str  # who holds it, as far as can be told
    ours: bool  # this data directory's own service: another ``up`` on the same home

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _port_taken(host: str, port: int) -> bool:
    """Whether binding host:port as gunicorn does (SO_REUSEADDR) fails because it is in use."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError:
        return False  # an unknown host: the service itself says so
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _health(url: str, trust: str | None = None) -> dict[str, str] | None:
    """What a securecomm service answers on ``/healthz``; None for anything else."""
    try:
        answer = httpx.get(f"{url}/healthz", timeout=1.0, verify=tls_context(trust)).json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(answer, dict) or "service" not in answer:
        return None
    return {key: str(value) for key, value in answer.items()}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "securecomm.cli", *args]


@dataclass
class Stack:
    settings: Settings
    workers: int = 1
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Each service runs from its own home, where it reads where it listens.
        home = self.settings.home
        logs = home / "logs"
        workers = str(self.workers)
        relay = party_home(home, "relay")
        trust = self.settings.tls_ca  # the local network's own CA, when made with --tls
        scheme = "https" if trust is not None else "http"
        self.processes = [
            Process(
                "relay",
                cli_command("relay", "serve", "--home", str(relay), "--workers", workers),
                f"{scheme}://{self.settings.server_host}:{self.settings.server_port}",
                logs / "relay.log",
                identity=relay / "relay" / "identity.pub",
                trust=trust,
            )
        ]
        for custodian in self.settings.custodians:
            own = party_home(home, custodian.name)
            self.processes.append(
                Process(
                    custodian.name,
                    cli_command("custodian", "serve", "--home", str(own), "--workers", workers),
                    f"{scheme}://{custodian.host}:{custodian.port}",
                    logs / f"{custodian.name}.log",
                    identity=own / "custodians" / custodian.name / "identity.pub",
                    trust=trust,
                )
            )

    def process(self, name: str) -> Process:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def busy_ports(self) -> list[BusyPort]:
        """The ports that something already holds, each with who holds it."""
        return [busy for process in self.processes if (busy := process.busy()) is not None]

    def start(self, timeout: float = 60.0) -> None:
        """Start every service and wait until all answer, or stop them all and raise.

        Nothing is started if any port is taken: its holder would answer for the service.
        """
        busy = self.busy_ports()
        if busy:
            taken = "; ".join(f"{b.name} {b.address}: {b.holder}" for b in busy)
            raise ServiceError("up", 0, "port_in_use", f"nothing started, ports in use: {taken}")
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + timeout
        waiting = list(self.processes)
        try:
            while waiting:
                for process in list(waiting):
                    if not process.running:
                        raise ServiceError(
                            process.name,
                            0,
                            "exited",
                            f"exited while starting: {process.exit_reason()}",
                        )
                    if process.healthy():
                        waiting.remove(process)
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(p.name for p in waiting)
                    raise ServiceError("up", 0, "timeout", f"no answer in {timeout:g} s: {names}")
                if waiting:
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def stop(self, *names: str) -> None:
        """Stop the services named, or all; each is signalled before any is waited for."""
        chosen = [self.process(name) for name in names] if names else self.processes
        for process in chosen:
            process.signal(signal.SIGTERM)
        for process in chosen:
            process.stop()

    def wait(self) -> None:
        """Stay in the foreground until SIGINT or SIGTERM; report services that die."""
        stopping = False

        def request_stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        reported: set[str] = set()
        try:
            while not stopping:
                for process in self.processes:
                    if not process.running and process.name not in reported:
                        reported.add(process.name)
                        print(
                            f"warning: {process.name} stopped, {process.exit_reason()}\n"
                            f"  start it again by hand (it then runs apart from this 'up'):\n"
                            f"    {process.restart_command()}\n"
                            f"  or stop this 'up' (Ctrl-C) and run it again",
                            file=sys.stderr,
                            flush=True,
                        )
                time.sleep(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

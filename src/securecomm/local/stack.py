"""The local system: the relay and every custodian as separate server processes, each
started from its own home under the data directory (``local.home``).

``securecomm up`` starts them, waits until each answers ``/healthz``, and
on Ctrl-C or SIGTERM stops every process it started: each service runs in
its own process group (a gunicorn master and its workers), which is
signalled as a whole, then killed if it has not gone within the grace time.
Before starting anything it checks that every port is free, so a second
``up`` is refused at once instead of mistaking the first one's answers for
its own services'.

With relay replicas (``up --relay-replicas N``, ``[server] replicas``), the relay
is N processes (``relay-1`` ...) on internal loopback ports behind nginx
(``relay-front``, ``local.front``), which listens on the relay's address. The
first replica starts alone with the custodians, and the others and the front
once it answers: the first to open the database creates or upgrades its
schema, so that replicas starting together on a new database never race to
make it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .._signals import stop_signals
from ..client.transport import close_idle_pools, tls_context
from ..config import CONFIG_FILE, Settings, load_settings, request_limit_bytes
from ..errors import ParameterError, SecureCommError, ServiceError
from ..identity import load_public
from .front import FRONT_DIR, Front, find_nginx
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
    tls_name: str | None = None  # the name its certificate is checked for, if not the URL's
    party: str | None = None  # whose identity answers here, if not the process's name
    after: str | None = None  # started only once this other process answers

    @property
    def identity_name(self) -> str:
        return self.party or self.name

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # In a session of its own (Ctrl-C reaches `up`, which stops each in turn), yet
        # ended with this process if it is killed outright: see _tethered.
        tether = [sys.executable, "-m", "securecomm.local._tethered", str(os.getpid())]
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                [*tether, *self.command],
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
        return _health(self.url, self.trust, self.tls_name) is not None

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
        answer = _health(self.url, self.trust, self.tls_name)
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


def _health(
    url: str, trust: str | None = None, tls_name: str | None = None
) -> dict[str, str] | None:
    """What a securecomm service answers on ``/healthz``; None for anything else. Over
    TLS, its certificate is checked for ``tls_name`` if given, else for the URL's host."""
    extensions = {} if tls_name is None else {"sni_hostname": tls_name}
    try:
        with httpx.Client(timeout=1.0, verify=tls_context(trust)) as client:
            request = client.build_request("GET", f"{url}/healthz", extensions=extensions)
            answer = client.send(request).json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(answer, dict) or "service" not in answer:
        return None
    return {key: str(value) for key, value in answer.items()}


class _Interrupted:
    """Whether SIGINT or SIGTERM came while signals were deferred."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def check(self) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_deferred() -> Iterator[_Interrupted]:
    """The stop signals only noted, for the code inside to act on at ``check()``; their
    handlers restored after. Off the main thread, where Python takes no signals, a no-op."""
    interrupted = _Interrupted()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def note(signum: int, _frame: object) -> None:
        interrupted.signum = signum

    previous = {sig: signal.signal(sig, note) for sig in stop_signals()}
    try:
        yield interrupted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 now (held together, so distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "securecomm.cli", *args]


@dataclass
class Stack:
    settings: Settings
    workers: int = 1
    #: How many relay processes; None: the settings' (``[server] replicas``, default 1).
    replicas: int | None = None
    processes: list[Process] = field(default_factory=list)
    #: The replicas' front, when there are several of them.
    front: Front | None = None

    def __post_init__(self) -> None:
        # Each service runs from its own home, where it reads where it listens.
        home = self.settings.home
        logs = home / "logs"
        workers = str(self.workers)
        relay = party_home(home, "relay")
        trust = self.settings.tls_ca  # the local network's own CA, when made with --tls
        scheme = "https" if trust is not None else "http"
        public = f"{scheme}://{self.settings.server_host}:{self.settings.server_port}"
        serve = cli_command("relay", "serve", "--home", str(relay), "--workers", workers)
        relay_pub = relay / "relay" / "identity.pub"
        replicas = self.settings.relay_replicas if self.replicas is None else self.replicas
        if replicas == 1:
            self.processes = [
                Process("relay", serve, public, logs / "relay.log", identity=relay_pub, trust=trust)
            ]
        else:
            self.processes = self._replicas(replicas, serve, relay, trust)
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

    def _replicas(
        self, count: int, serve: list[str], relay: Path, trust: str | None
    ) -> list[Process]:
        """The front on the relay's address, then ``count`` relay processes from its home,
        each on a free loopback port; all but the first start once the first answers."""
        home, settings = self.settings.home, self.settings
        scheme = "https" if trust is not None else "http"
        relay_pub = relay / "relay" / "identity.pub"
        ports = _free_ports(count)
        tls = None
        if trust is not None:
            own = load_settings(relay)
            if own.tls_cert is None or own.tls_key is None:
                raise ParameterError(
                    f"{relay / 'securecomm.toml'} names no TLS certificate ([tls] cert, key);"
                    " the front serves the relay's"
                )
            tls = (own.tls_cert.absolute(), own.tls_key.absolute())
        self.front = Front(
            directory=(home / FRONT_DIR).absolute(),
            logs=(home / "logs").absolute(),
            host=settings.server_host,
            port=settings.server_port,
            replicas=tuple(ports),
            max_body_bytes=request_limit_bytes(settings.max_envelope_bytes),
            tls=tls,
            ca=trust,
        )
        processes = [
            Process(
                "relay-front",
                ["nginx", *self.front.command("nginx")[1:]],  # the program is found at start
                f"{scheme}://{settings.server_host}:{settings.server_port}",
                home / "logs" / "relay-front.log",
                identity=relay_pub,
                trust=trust,
                party="relay",
                after="relay-1",
            )
        ]
        for number, port in enumerate(ports, start=1):
            processes.append(
                Process(
                    f"relay-{number}",
                    [*serve, "--host", "127.0.0.1", "--port", str(port)],
                    f"{scheme}://127.0.0.1:{port}",
                    home / "logs" / f"relay-{number}.log",
                    identity=relay_pub,
                    trust=trust,
                    # Its certificate is the relay's, made for its address and localhost.
                    tls_name=None if trust is None else "localhost",
                    party="relay",
                    after=None if number == 1 else "relay-1",
                )
            )
        return processes

    def check(self) -> None:
        """Refuse, before anything starts, what would stop the start: no nginx for the
        replicas' front, or a service whose own home says it listens elsewhere than the
        settings ``up`` waits on (it would start, and never be found)."""
        mismatched = self.misplaced()
        if mismatched:
            home = self.settings.home
            raise ParameterError(
                "a service's own home says it listens elsewhere than the settings say: "
                + "; ".join(mismatched)
                + f". A data directory's ports are set in {home / CONFIG_FILE} before its"
                " first `up` (or `init`); to use other ports, make a new data directory with"
                " them, or put the settings back as they were"
            )
        if self.front is not None:
            self.process("relay-front").command = self.front.command(find_nginx())

    def misplaced(self) -> list[str]:
        """Each service whose port differs between this network's settings (the data
        directory's securecomm.toml and the environment: where ``up`` waits for it) and
        its own home's (where it listens). Where others reach it may differ from both: a
        proxy or a front can stand in between."""
        home, settings = self.settings.home, self.settings
        relay = party_home(home, "relay")
        places = [("the relay", settings.server_port, load_settings(relay).server_port, relay)]
        for custodian in settings.custodians:
            own_home = party_home(home, custodian.name)
            own = load_settings(own_home).own_custodian
            listens = custodian.port if own is None else own.port
            places.append((custodian.name, custodian.port, listens, own_home))
        return [
            f"{who}: port {wanted} in the settings, {listens} in {own / CONFIG_FILE}"
            for who, wanted, listens, own in places
            if wanted != listens
        ]

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
        A process that waits for another (``after``) starts once that one answers. Ctrl-C
        or SIGTERM meanwhile stops what was started, then raises KeyboardInterrupt: the
        signal is acted on between two steps, never while a process is being started
        (one started then, but not yet recorded, would be left running).
        """
        self.check()
        busy = self.busy_ports()
        if busy:
            taken = "; ".join(f"{b.name} {b.address}: {b.holder}" for b in busy)
            raise ServiceError("up", 0, "port_in_use", f"nothing started, ports in use: {taken}")
        if self.front is not None:
            self.front.write()  # only now: another `up`'s front may be running from it
        deadline = time.monotonic() + timeout
        waiting = list(self.processes)
        answered: set[str] = set()
        with _signals_deferred() as interrupted:
            try:
                while waiting:
                    for process in waiting:
                        if process.popen is None and process.after in (None, *answered):
                            process.start()
                            interrupted.check()
                    for process in list(waiting):
                        if process.popen is None:
                            continue
                        if not process.running:
                            raise ServiceError(
                                process.name,
                                0,
                                "exited",
                                f"exited while starting: {process.exit_reason()}",
                            )
                        if process.healthy():
                            waiting.remove(process)
                            answered.add(process.name)
                        interrupted.check()
                    if waiting and time.monotonic() > deadline:
                        names = ", ".join(p.name for p in waiting)
                        raise ServiceError(
                            "up", 0, "timeout", f"no answer in {timeout:g} s: {names}"
                        )
                    if waiting:
                        time.sleep(0.1)
                        interrupted.check()
            except BaseException:
                self.stop()
                raise

    def stop(self, *names: str) -> None:
        """Stop the services named, or all; each is signalled before any is waited for."""
        close_idle_pools()  # else each service waits out this process's kept-alive connections
        chosen = [self.process(name) for name in names] if names else self.processes
        for process in chosen:
            process.signal(signal.SIGTERM)
        for process in chosen:
            process.stop()

    def wait(self) -> None:
        """Stay in the foreground until a stop signal; report services that die."""
        stopping = False

        def request_stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, request_stop) for sig in stop_signals()}
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

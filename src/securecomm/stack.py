"""The local system: the relay and every custodian as separate server processes.

``securecomm up`` starts them, waits until each answers ``/healthz``, and
on Ctrl-C or SIGTERM stops every process it started: each service runs in
its own process group (a gunicorn master and its workers), which is
signalled as a whole, then killed if it has not gone within the grace time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .config import Settings
from .errors import ServiceError

__all__ = ["Process", "Stack"]

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
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

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


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "securecomm.cli", *args]


@dataclass
class Stack:
    settings: Settings
    workers: int = 1
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        home = str(self.settings.home)
        logs = self.settings.home / "logs"
        workers = str(self.workers)
        relay = self.settings
        self.processes = [
            Process(
                "relay",
                cli_command(
                    "relay",
                    "serve",
                    "--home",
                    home,
                    "--host",
                    relay.server_host,
                    "--port",
                    str(relay.server_port),
                    "--workers",
                    workers,
                ),
                f"http://{relay.server_host}:{relay.server_port}",
                logs / "relay.log",
            )
        ]
        for custodian in self.settings.custodians:
            self.processes.append(
                Process(
                    custodian.name,
                    cli_command(
                        "custodian",
                        "serve",
                        "--name",
                        custodian.name,
                        "--home",
                        home,
                        "--host",
                        custodian.host,
                        "--port",
                        str(custodian.port),
                        "--workers",
                        workers,
                    ),
                    f"http://{custodian.host}:{custodian.port}",
                    logs / f"{custodian.name}.log",
                )
            )

    def process(self, name: str) -> Process:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def start(self, timeout: float = 60.0) -> None:
        """Start every service and wait until all answer, or stop them all and raise."""
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
                            f"exited while starting; its log says:\n{process.tail()}",
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

    def stop(self) -> None:
        for process in self.processes:
            process.signal(signal.SIGTERM)
        for process in self.processes:
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
                            f"warning: {process.name} stopped; see {process.log}",
                            file=sys.stderr,
                            flush=True,
                        )
                time.sleep(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

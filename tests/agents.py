"""Agents (spec/sessions.md section 1) started for a test, each in a process of its own,
and ended by the test that started it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from securecomm.identity import Identity

# Started from a process of its own (forking pytest, which may run threads, is unsafe):
# the key file is read there, the agent forks from it and outlives it.
_START = """
import sys
from pathlib import Path
from securecomm import agent
from securecomm.identity import Identity
identity = Identity.load(sys.argv[1], sys.argv[2].encode())
print(agent.start(agent.Agent(
    identity, Path(sys.argv[3]), lifetime=int(sys.argv[4]), idle=int(sys.argv[5]))))
"""

PASSPHRASE = "correct horse battery staple"


def key_file(directory: Path, name: str) -> tuple[Identity, Path]:
    """A new identity and its key file, protected by :data:`PASSPHRASE`."""
    identity = Identity.generate(name)
    path = directory / "users" / f"{name}.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    identity.save(path, PASSPHRASE.encode())
    return identity, path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in _stat(pid)


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return " Z "


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def running_agent(
    key_path: Path, socket: Path, *, lifetime: int = 600, idle: int = 600
) -> Iterator[int]:
    """An agent holding the key at ``key_path``, listening at ``socket``: its pid. Ended
    (SIGTERM, then SIGKILL) when the block ends, whatever happened in it."""
    started = subprocess.run(
        [
            sys.executable,
            "-c",
            _START,
            str(key_path),
            PASSPHRASE,
            str(socket),
            str(lifetime),
            str(idle),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(started.stdout.strip())
    try:
        yield pid
    finally:
        end(pid)


def end(pid: int) -> None:
    """Stop an agent by its pid if it still runs."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid)

"""Another user of the machine against a person's agent (spec/sessions.md section 1.2): the
sessions directory keeps them from its socket; if its mode was loosened, the agent still
answers only its own user (peer credentials); and they cannot read the agent's memory
through /proc. Run as root, the attacker is uid 65534 (nobody); as another user, skipped.

The attacker's side is plain Python with no securecomm: a connection and one framed
request, as anyone could write it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from securecomm import agent
from tests.agents import PASSPHRASE, end, key_file, running_agent

NOBODY = 65534
# The attacker's interpreter: the system's, which any user may run (the test's own may live
# under root's home, closed to others).
PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user"),
    pytest.mark.skipif(not os.access(PYTHON, os.X_OK), reason="needs the system's python3"),
]

# Ask the agent to sign securecomm's kind of input; print what happened.
_ASK = """
import base64, json, socket, struct, sys
request = json.dumps({"data": base64.b64encode(b"securecomm/v1/envelope\\n{}").decode(),
                      "op": "sign"}, separators=(",", ":")).encode()
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.settimeout(5)
try:
    conn.connect(sys.argv[1])
except PermissionError:
    print("refused: permission"); sys.exit()
try:
    conn.sendall(struct.pack(">I", len(request)) + request)
    answer = conn.recv(65536)
except (ConnectionResetError, BrokenPipeError):  # closed before reading what was sent
    answer = b""
print("answered: " + answer[4:].decode() if answer else "closed unanswered")
"""


@pytest.fixture
def home() -> Iterator[Path]:
    """A home others may walk through (pytest's own temporary directories are 0700, which
    would keep the attacker out before the sessions directory could)."""
    made = Path(tempfile.mkdtemp(prefix="securecomm-agent-"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


# Loads the key as root (the interpreter may be closed to nobody), becomes nobody, and makes
# itself dumpable again as any process of nobody's is (changing user had cleared it), so
# that only the agent's own hardening can close its memory.
_START_AS_NOBODY = """
import ctypes, os, sys
from pathlib import Path
from securecomm import agent
from securecomm.identity import Identity
identity = Identity.load(sys.argv[1], sys.argv[2].encode())
os.setgroups([]); os.setgid(65534); os.setuid(65534)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(4, 1, 0, 0, 0)
assert libc.prctl(3, 0, 0, 0, 0) == 1, "the starter is not dumpable"
home = Path(sys.argv[3])
print(agent.start(agent.Agent(identity, agent.socket_path(home, "alice"), lifetime=60, idle=60)))
"""


def _as_nobody(*args: str) -> str:
    done = subprocess.run(
        [PYTHON, *args], capture_output=True, text=True, timeout=30, user=NOBODY, group=NOBODY
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_directory_keeps_another_user_out(home: Path) -> None:
    _, key_path = key_file(home, "alice")
    path = agent.socket_path(home, "alice")
    with running_agent(key_path, path):
        assert _as_nobody("-c", _ASK, str(path)) == "refused: permission"


def test_a_loosened_mode_still_answers_only_its_user(home: Path) -> None:
    """The second wall: with the directory and the socket opened to everyone, the agent
    reads who connected and closes the connection of anyone else unanswered."""
    identity, key_path = key_file(home, "alice")
    path = agent.socket_path(home, "alice")
    with running_agent(key_path, path):
        path.parent.chmod(0o777)
        path.chmod(0o666)
        assert _as_nobody("-c", _ASK, str(path)) == "closed unanswered"
        # Its own user is answered through the same socket (the attempt was not refused
        # for some other reason).
        path.parent.chmod(0o700)
        keys = agent.find(home, "alice", identity.public)
        assert keys is not None
        assert keys.sign("envelope", {}) == identity.sign("envelope", {})


def test_its_memory_is_closed_to_its_own_user(home: Path) -> None:
    """The agent makes itself not dumpable: even a process of the same user cannot read
    its /proc files (environ, mem), while it can those of any other process of its own.
    Agent and reader both run as nobody here."""
    _, key_path = key_file(home, "alice")
    os.chown(home, NOBODY, NOBODY)
    for path in (home / "users", key_path):
        os.chown(path, NOBODY, NOBODY)
    done = subprocess.run(
        [sys.executable, "-c", _START_AS_NOBODY, str(key_path), PASSPHRASE, str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout)
    plain = subprocess.Popen(["sleep", "30"], user=NOBODY, group=NOBODY)
    try:
        read = (
            "import sys, json\nout = {}\nfor pid in sys.argv[1:]:\n"
            "    try:\n        open(f'/proc/{pid}/environ', 'rb').read(); out[pid] = 'read'\n"
            "    except PermissionError:\n        out[pid] = 'refused'\nprint(json.dumps(out))"
        )
        seen = json.loads(_as_nobody("-c", read, str(pid), str(plain.pid)))
        assert seen == {str(pid): "refused", str(plain.pid): "read"}
    finally:
        plain.kill()
        plain.wait()
        end(pid)

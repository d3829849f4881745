"""A person's key unlocked for a while: the agent of spec/sessions.md section 1.

:class:`Agent` holds an unlocked :class:`~securecomm.identity.Identity` in its own process
and answers requests to sign and to open sealed shares over a Unix socket that only its
user can reach. :class:`AgentKeys` is what a command holds instead of the key: the same
methods, each one a request to the agent. The private keys never cross the socket.

Requests and answers are a 4-byte big-endian length and that much canonical JSON; one
request per connection.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import socket
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import canonical
from ._encoding import b64decode, b64encode
from .errors import DecryptionError, SecureCommError
from .identity import Identity, PublicIdentity, check_name, signing_input

__all__ = [
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_LIFETIME_SECONDS",
    "MAX_LIFETIME_SECONDS",
    "Agent",
    "AgentError",
    "AgentKeys",
    "Session",
    "find",
    "lock",
    "sessions",
    "socket_path",
    "status",
]

#: The directory of a person's home that holds their agent's socket (mode 0700).
SESSIONS_DIR = "sessions"
DEFAULT_LIFETIME_SECONDS = 30 * 60
DEFAULT_IDLE_SECONDS = 10 * 60
MAX_LIFETIME_SECONDS = 24 * 60 * 60
#: The largest request or answer, in bytes of JSON.
MAX_MESSAGE_BYTES = 1024 * 1024
#: What a person's key signs in the commands an agent serves: envelopes and requests
#: (spec/format-v1.md sections 6.5 and 11.2). Not a delegation or a revocation of a device
#: (spec/sessions.md section 3): those outlive the session, so they take the passphrase.
SIGNED_PREFIXES = (b"securecomm/v1/envelope\n", b'"@method"')
#: What the commands open with it: shares released to the person, and shares the person
#: kept for a send to go on (spec/format-v1.md section 5).
OPENED_PREFIXES = (b"securecomm/v1/hpke/release\n", b"securecomm/v1/hpke/keep\n")
#: How long the agent waits for one connection's request, and a command for an answer.
_CONNECTION_SECONDS = 5.0
_LENGTH = struct.Struct(">I")
_PR_SET_DUMPABLE = 4
#: A socket path longer than this is reached through its directory's descriptor.
_SUN_PATH_BYTES = 107


class AgentError(SecureCommError):
    """The agent cannot be started or used: the sentence says why."""


@dataclass(frozen=True)
class Session:
    """What an agent says of itself: whose key, since and until when (Unix seconds)."""

    identity: PublicIdentity
    pid: int
    started: int
    until: int
    idle_until: int
    path: Path


def socket_path(person_home: Path, name: str) -> Path:
    """Where ``name``'s agent listens: ``PERSON_HOME/sessions/NAME.sock``."""
    return person_home / SESSIONS_DIR / f"{check_name(name)}.sock"


def check_directory(directory: Path) -> None:
    """Refuse a sessions directory that is not the user's own or that others may enter."""
    try:
        info = directory.lstat()
    except FileNotFoundError:
        raise AgentError(f"{directory} does not exist") from None
    if not stat.S_ISDIR(info.st_mode):
        raise AgentError(f"{directory} is not a directory")
    if info.st_uid != os.getuid():
        raise AgentError(f"{directory} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o077:
        raise AgentError(
            f"{directory} may be entered by others (mode {stat.S_IMODE(info.st_mode):o}):"
            " it must be 0700"
        )


def _make_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_directory(directory)


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits a socket address: itself, or, when it is too long,
    the same file through a descriptor of its directory (held while the block runs)."""
    if len(os.fsencode(path)) <= _SUN_PATH_BYTES:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        short = f"/proc/self/fd/{fd}/{path.name}"
        if len(short) > _SUN_PATH_BYTES:
            raise AgentError(f"the socket's name {path.name!r} is too long")
        yield short
    finally:
        os.close(fd)


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = canonical.dumps(message)
    conn.sendall(_LENGTH.pack(len(data)) + data)


def _receive(conn: socket.socket) -> dict[str, Any]:
    head = _exactly(conn, _LENGTH.size)
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE_BYTES:
        raise AgentError(f"a message of {length} bytes is over the limit")
    message = canonical.parse_json(_exactly(conn, length), what="an agent message")
    if not isinstance(message, dict):
        raise AgentError("an agent message is not a JSON object")
    return message


class _GoneError(Exception):
    """The agent closed the connection before answering: it ended meanwhile, or the
    caller is not its user."""


def _exactly(conn: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        try:
            part = conn.recv(min(left, 65536))
        except ConnectionResetError:
            part = b""
        if not part:
            if left == size:
                raise _GoneError()
            raise AgentError("the connection ended inside a message")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _ask(path: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The agent's answer to ``request``; ``None`` if no agent listens at ``path``."""
    check_directory(path.parent)
    with (
        _address(path) as address,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
    ):
        conn.settimeout(_CONNECTION_SECONDS)
        try:
            conn.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # none, or one that ended without removing its socket
        try:
            _send(conn, request)
            answer = _receive(conn)
        except (_GoneError, BrokenPipeError):
            return None
        except (OSError, AgentError) as exc:
            raise AgentError(f"the agent at {path} did not answer: {exc}") from None
    if "error" in answer:
        raise AgentError(f"the agent refused: {answer['error']}")
    return answer


def status(path: Path) -> Session | None:
    """What the agent at ``path`` says of itself; ``None`` if none listens there."""
    answer = _ask(path, {"op": "status"})
    if answer is None:
        return None
    try:
        return Session(
            PublicIdentity.from_json(answer["identity"]),
            int(answer["pid"]),
            int(answer["started"]),
            int(answer["until"]),
            int(answer["idle_until"]),
            path,
        )
    except (KeyError, TypeError, ValueError, SecureCommError):
        raise AgentError(f"the agent at {path} gave a status of another form") from None


def find(person_home: Path, name: str, public: PublicIdentity) -> AgentKeys | None:
    """``name``'s agent, if one listens and holds ``public``'s keys; else ``None`` (and the
    caller reads the key file)."""
    path = socket_path(person_home, name)
    if not path.parent.exists():
        return None
    session = status(path)
    if session is None or not session.identity.same_keys(public):
        return None
    return AgentKeys(session.identity, path)


def lock(path: Path) -> bool:
    """End the agent at ``path``; whether one was running. Returns once it stopped
    listening (or after a second)."""
    if _ask(path, {"op": "lock"}) is None:
        return False
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and status(path) is not None:
        time.sleep(0.01)
    return True


def sessions(person_homes: list[Path]) -> list[Session]:
    """The agents running for these homes' people, in order of their sockets' paths."""
    found = []
    for home in person_homes:
        directory = home / SESSIONS_DIR
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.sock")):
            session = status(path)
            if session is not None:
                found.append(session)
    return found


class AgentKeys:
    """A person's keys as held by their agent: what a command signs and opens with."""

    def __init__(self, public: PublicIdentity, path: Path) -> None:
        self.name = public.name
        self.public = public
        self.signer = public
        self.delegation_header: str | None = None
        self._path = path

    def __repr__(self) -> str:
        return f"AgentKeys(name={self.name!r}, fingerprint={self.public.short_fingerprint()!r})"

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = _ask(self._path, request)
        if answer is None:
            raise AgentError(
                f"{self.name}'s session ended (the agent is gone): unlock again, or run the"
                " command again to be asked for the passphrase"
            )
        return answer

    def sign(self, purpose: str, obj: Any) -> bytes:
        return self.sign_bytes(signing_input(purpose, obj))

    def sign_bytes(self, data: bytes) -> bytes:
        return b64decode(
            self._call({"op": "sign", "data": b64encode(data)})["signature"], field="signature"
        )

    def unseal(self, sealed: bytes, info: bytes) -> bytes:
        answer = self._call({"op": "open", "sealed": b64encode(sealed), "info": b64encode(info)})
        if "plaintext" not in answer:
            raise DecryptionError()
        return b64decode(answer["plaintext"], field="plaintext")


class Agent:
    """The process that holds ``identity`` unlocked and answers at ``path`` until its
    lifetime or idle time runs out, or it is told to lock."""

    def __init__(self, identity: Identity, path: Path, *, lifetime: int, idle: int) -> None:
        if not 0 < lifetime <= MAX_LIFETIME_SECONDS:
            raise AgentError(f"a session lasts 1 s to {MAX_LIFETIME_SECONDS // 3600} h")
        if not 0 < idle <= lifetime:
            raise AgentError("the idle time is at least 1 s and at most the session's length")
        self._identity = identity
        self.path = path.absolute()  # the agent leaves the working directory
        self.started = int(time.time())
        self.until = self.started + lifetime
        self._idle = idle
        self._last_use = time.monotonic()
        self._ends = time.monotonic() + lifetime
        self._locked = False

    def idle_until(self) -> int:
        return int(time.time() + self._idle - (time.monotonic() - self._last_use))

    def _time_left(self) -> float:
        now = time.monotonic()
        return min(self._ends, self._last_use + self._idle) - now

    def listen(self) -> socket.socket:
        """Bind the socket under a name of its own, then move it to ``path`` (an agent
        already there is replaced whole: a command finds one or the other)."""
        _make_directory(self.path.parent)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_mask = os.umask(0o177)  # the socket is 0600 from the moment it exists
            try:
                with _address(temporary) as address:
                    server.bind(address)
            finally:
                os.umask(old_mask)
            server.listen(8)
            os.replace(temporary, self.path)
        except BaseException:
            server.close()
            temporary.unlink(missing_ok=True)
            raise
        self._inode = self.path.stat().st_ino
        return server

    def serve(self, server: socket.socket) -> None:
        """Answer until the session ends, then remove the socket (if it is still this
        agent's: a newer agent may have taken the name)."""
        try:
            while not self._locked:
                left = self._time_left()
                if left <= 0:
                    break
                ready, _, _ = select.select([server], [], [], min(left, 60.0))
                if ready:
                    conn, _ = server.accept()
                    with conn:
                        self._handle(conn)
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_ino == self._inode:
                    self.path.unlink()

    def _handle(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            return  # closed unanswered: not its user's process
        conn.settimeout(_CONNECTION_SECONDS)
        try:
            request = _receive(conn)
        except (_GoneError, OSError, SecureCommError):
            return
        try:
            answer = self._answer(request)
        except (KeyError, TypeError, ValueError, SecureCommError):
            answer = {"error": "a request of another form"}
        with contextlib.suppress(OSError):
            _send(conn, answer)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return {
                "identity": self._identity.public.to_json(),
                "pid": os.getpid(),
                "started": self.started,
                "until": self.until,
                "idle_until": self.idle_until(),
            }
        if op == "lock":
            self._locked = True
            return {}
        if op == "sign":
            data = b64decode(request["data"], field="data")
            if not data.startswith(SIGNED_PREFIXES):
                return {"error": "the key signs only securecomm's own inputs"}
            self._last_use = time.monotonic()
            return {"signature": b64encode(self._identity.sign_bytes(data))}
        if op == "open":
            sealed = b64decode(request["sealed"], field="sealed")
            info = b64decode(request["info"], field="info")
            if not info.startswith(OPENED_PREFIXES):
                return {"error": "the key opens only securecomm's own sealed shares"}
            self._last_use = time.monotonic()
            try:
                return {"plaintext": b64encode(self._identity.unseal(sealed, info))}
            except DecryptionError:
                return {"opened": False}
        return {"error": f"no operation {op!r}"}


def _harden() -> None:
    """No core file, and no attaching to this process or reading its memory as its user."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def start(agent: Agent) -> int:
    """Run ``agent`` in a process of its own, detached from the terminal; return its pid
    once it listens. The key goes to it by ``fork``, never through a file or a pipe."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the agent
        code = 1
        try:
            os.close(ready_read)
            os.setsid()
            _harden()
            signal.signal(signal.SIGTERM, _end_on_signal)
            signal.signal(signal.SIGINT, _end_on_signal)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            try:
                server = agent.listen()
            except (OSError, AgentError) as exc:
                os.write(ready_write, f"error: {exc}".encode()[:1000])
            else:
                os.chdir("/")
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(null)
                os.write(ready_write, b"ok")
                _close_all_but(server.fileno())
                with contextlib.suppress(_Ended):
                    agent.serve(server)
                code = 0
        finally:
            os._exit(code)
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready:
        said = ready.read()
    if said != b"ok":
        os.waitpid(pid, 0)
        raise AgentError(said.decode(errors="replace").removeprefix("error: ") or "it ended")
    return pid


def _close_all_but(kept: int) -> None:
    """Close every descriptor the command had open (a fork keeps them all, whatever their
    close-on-exec flag), but the standard three and ``kept``."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != kept:
            with contextlib.suppress(OSError):
                os.close(fd)


class _Ended(BaseException):
    pass


def _end_on_signal(signum: int, frame: object) -> None:
    raise _Ended()

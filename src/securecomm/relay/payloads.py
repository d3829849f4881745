"""Where the relay keeps payload streams (spec/format-v2.md section 5): files under its
home, never rows, whatever its database.

    HOME/relay/payloads/<sha-256 hex>      a stored message's stream, named by its digest
    HOME/relay/payloads/partial/<id>       an open upload, named by its message id

The database is the truth: an upload's row says how many of its file's bytes were
acknowledged, a message's row names its stream's file. Every change to a file is made
holding the file's lock (``flock``: it holds between gunicorn workers and replicas on one
host) and deciding from the rows read under that lock, so a request, a sweep and a
deletion never act on a file another is changing. A file is always locked before any
database transaction starts, never while one waits: the two kinds of lock cannot wait on
each other.

The rules of a piece and of the quota are pure functions here, tested without a server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import stream
from .._files import drop_cached
from ..codes import Code
from ..config import MAX_PIECE_BYTES
from ..errors import LengthError

__all__ = [
    "FileBusyError",
    "Locked",
    "PayloadStore",
    "PieceRefusal",
    "check_piece",
    "check_range",
    "check_stream_length",
    "fits_quota",
]

#: How long a request that waits for a file's lock sleeps between tries, at first and at most.
_FIRST_PAUSE_SECONDS, _LAST_PAUSE_SECONDS = 0.002, 0.05
#: Bytes read at a time to hash a stream. Hashing a cold 1 GiB file here, each read dropped
#: from the page cache after, took 1.7 to 2.7 s with 1 MiB reads and 0.7 s with 2 or 4 MiB:
#: smaller reads left the disk idle between them.
_READ_BYTES = 4 * 1024 * 1024


class FileBusyError(Exception):
    """Another request holds the file's lock (and the caller would not wait)."""


@dataclass(frozen=True)
class PieceRefusal:
    """Why a piece is refused: the HTTP status, the code and a sentence."""

    status: int
    code: Code
    message: str


def check_piece(offset: int, size: int, length: int) -> PieceRefusal | None:
    """Whether a piece of ``size`` bytes at ``offset`` may go into a stream of ``length``
    bytes (spec section 5): at most a piece, within the stream, and a whole number of
    sealed chunks unless it is the stream's last. ``None`` if it may."""
    if size > MAX_PIECE_BYTES:
        return PieceRefusal(
            413,
            Code.TOO_LARGE,
            f"a piece is at most {MAX_PIECE_BYTES} bytes (64 sealed chunks), got {size}",
        )
    if size == 0:
        return PieceRefusal(
            400, Code.BAD_LENGTH, "a piece holds at least one byte, got an empty body"
        )
    if offset + size > length:
        return PieceRefusal(
            400,
            Code.BAD_LENGTH,
            f"the piece ends at byte {offset + size}, past the stream's length {length}",
        )
    if offset + size < length and size % stream.SEALED_CHUNK_BYTES:
        return PieceRefusal(
            400,
            Code.BAD_LENGTH,
            f"a piece before the stream's last is a whole number of sealed chunks"
            f" ({stream.SEALED_CHUNK_BYTES} bytes each), got {size} bytes",
        )
    return None


def check_stream_length(length: int) -> str | None:
    """Why no stream is ``length`` bytes long, or ``None`` if one is (spec section 3.2)."""
    try:
        stream.plaintext_length(length)
    except LengthError:
        return (
            f"length: no payload stream is {length} bytes long (each sealed chunk is"
            f" {stream.SEALED_CHUNK_BYTES} bytes, the last 16 to {stream.SEALED_CHUNK_BYTES})"
        )
    return None


def check_range(offset: int, length: int) -> str | None:
    """Why a download may not start at ``offset`` of a stream of ``length`` bytes (a chunk
    boundary inside it), or ``None`` if it may."""
    if offset % stream.SEALED_CHUNK_BYTES:
        return (
            f"offset: a download starts at a chunk boundary (a multiple of"
            f" {stream.SEALED_CHUNK_BYTES}), got {offset}"
        )
    if offset >= length:
        return f"offset: {offset} is not inside the stream of {length} bytes"
    return None


def fits_quota(held: int, length: int, limit: int) -> bool:
    """Whether a sender who holds ``held`` bytes (stored messages and open uploads) may open
    an upload of ``length`` more under a limit of ``limit``."""
    return held + length <= limit


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Locked:
    """A file of the store, open and locked: its descriptor and where it is."""

    fd: int
    path: Path

    def size(self) -> int:
        return os.fstat(self.fd).st_size


@dataclass(frozen=True)
class PayloadStore:
    """The files under ``root`` (``HOME/relay/payloads``)."""

    root: Path

    @property
    def partial_dir(self) -> Path:
        return self.root / "partial"

    def create_directories(self) -> None:
        self.partial_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)

    def partial(self, message_id: str) -> Path:
        return self.partial_dir / message_id

    def stored(self, digest_hex: str) -> Path:
        return self.root / digest_hex

    @contextlib.contextmanager
    def locked(
        self, path: Path, *, create: bool = False, wait: bool = True
    ) -> Iterator[Locked | None]:
        """The file at ``path``, open and locked for as long as the block runs; ``None`` if
        there is none (and not ``create``). Unless ``wait``, :class:`FileBusyError` if another
        holds its lock.

        What is locked is the file the path names once the lock is held: a file renamed or
        removed while this waited for its lock is let go and the path looked up again."""
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:
                yield None
                return
            try:
                _lock(fd, wait)
                held = _same_file(fd, path)
            except BaseException:
                os.close(fd)
                raise
            if held:
                break
            os.close(fd)  # closing lets the lock go
        try:
            yield Locked(fd, path)
        finally:
            os.close(fd)

    @staticmethod
    def write(locked: Locked, offset: int, piece: bytes) -> None:
        """Make ``piece`` the file's bytes from ``offset`` on, and nothing after it, on disk
        before this returns: what lay past ``offset`` was never acknowledged. Once on disk,
        the piece leaves the page cache: a stream is read again only by its post's digest
        and its reader's download."""
        os.ftruncate(locked.fd, offset)
        view, start = memoryview(piece), offset
        while view:
            written = os.pwrite(locked.fd, view, offset)
            view, offset = view[written:], offset + written
        os.fsync(locked.fd)
        drop_cached(locked.fd, start, len(piece))

    def start(self, locked: Locked) -> None:
        """An upload's file, empty, and its name, on disk before its row is committed."""
        os.ftruncate(locked.fd, 0)
        os.fsync(locked.fd)
        _fsync_directory(self.partial_dir)

    @staticmethod
    def digest(locked: Locked) -> bytes:
        """The SHA-256 of the whole file (read once: not kept in the page cache)."""
        digest = hashlib.sha256()
        offset = 0
        while chunk := os.pread(locked.fd, _READ_BYTES, offset):
            digest.update(chunk)
            drop_cached(locked.fd, offset, len(chunk))
            offset += len(chunk)
        return digest.digest()

    def keep(self, locked: Locked, digest_hex: str) -> None:
        """Give an upload's file its stored name, on disk before the message row that names
        it is committed (a message whose stream was lost would be worse than a file no row
        names, which the sweep drops)."""
        os.utime(locked.fd)  # the sweep spares a stored name's file for an hour from here
        os.rename(locked.path, self.stored(digest_hex))
        _fsync_directory(self.root)
        _fsync_directory(self.partial_dir)

    def read(self, digest_hex: str, offset: int, size: int) -> bytes | None:
        """``size`` bytes of a stored stream from ``offset`` (fewer at its end); ``None`` if
        the file is gone (its message was deleted meanwhile). What is read leaves the page
        cache: a stream is downloaded once, by its reader."""
        try:
            fd = os.open(self.stored(digest_hex), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            parts, start = [], offset
            while size > 0:
                part = os.pread(fd, size, offset)  # (a piece at most)
                if not part:
                    break
                parts.append(part)
                offset, size = offset + len(part), size - len(part)
            drop_cached(fd, start, offset - start)
            return b"".join(parts)
        finally:
            os.close(fd)

    @staticmethod
    def remove(locked: Locked) -> None:
        locked.path.unlink(missing_ok=True)

    def partial_ids(self) -> list[str]:
        return sorted(p.name for p in self.partial_dir.iterdir() if p.is_file())

    def stored_digests(self, older_than: float) -> list[str]:
        """The stored streams' names whose files were last changed before ``older_than``
        (seconds since the epoch)."""
        found = []
        for path in self.root.iterdir():
            if not path.is_file() or len(path.name) != 64:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < older_than:
                    found.append(path.name)
        return sorted(found)


def _lock(fd: int, wait: bool) -> None:
    """Lock ``fd``, waiting for another holder unless not ``wait`` (then :class:`FileBusyError`).

    Waiting is by polling, never a blocking flock: under gunicorn's gevent worker a
    blocking call stops every request the worker serves, the holder's among them when it
    is served by the same worker."""
    pause = _FIRST_PAUSE_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not wait:
                raise FileBusyError() from None
        time.sleep(pause)  # gevent's sleep where it is patched in: other requests go on
        pause = min(2 * pause, _LAST_PAUSE_SECONDS)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)

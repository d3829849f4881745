"""Writing files so that a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["drop_cached", "locked", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` durably: a temporary file, fsync, then rename.

    ``private`` keeps the file readable by its owner only (mode 0600) from
    its first byte on; otherwise it ends up 0644.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp creates the file 0600; a public file is made world-readable.
            if not private:
                os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def drop_cached(fd: int, offset: int, length: int) -> None:
    """Let the kernel drop ``length`` bytes of ``fd``'s file from ``offset`` on out of its
    page cache, once they are on disk (fsynced) or have been read: for a large stream,
    written or read once. Left cached, a 1 GiB stream grows the cache by 1 GiB, pushing out
    what the machine reads again, and its writes fill pages the kernel has not handed out
    lately instead of reusing the few just let go of. On the virtual machine of our
    benchmarks the first cost far more: 1 GiB written 4 MiB at a time, each fsynced, took
    6 to 12 s of kernel time left cached and 0.4 s dropped. A hint only: pages not yet on
    disk stay, and so do the partial pages at either end; nothing happens where the system
    has no ``posix_fadvise``."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None and length > 0:
        advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` while the block runs, against other threads and
    processes doing the same: a read, change and write of the file is then not lost to
    another's. The lock is a file beside it (``path`` + ``.lock``, mode 0600), left there."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(target.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one open file per holder: threads exclude each other
        yield
    finally:
        os.close(fd)

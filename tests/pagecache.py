"""How much of a file the kernel holds in its page cache: mincore(2) over a shared mapping of
the file, through ctypes (Linux). A test that a large stream is let go of once written or
read uses it, beside a plain write that stays cached (else this filesystem keeps every page,
as tmpfs does, and the test cannot tell)."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

import pytest

__all__ = ["cached_bytes", "needs_droppable_cache"]

_MAP_FAILED = ctypes.c_void_p(-1).value


def cached_bytes(path: Path) -> int:
    """The bytes of ``path``'s pages that are in the page cache (whole pages)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    if size == 0:
        return 0
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), "mmap failed")
        try:
            vector = ctypes.create_string_buffer(pages)
            if libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            return sum(byte & 1 for byte in vector.raw) * mmap.PAGESIZE
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


def needs_droppable_cache(folder: Path) -> None:
    """Skip unless a file under ``folder`` written plainly stays in the page cache and one
    fsynced and advised away leaves it: what the tests that use :func:`cached_bytes` check
    is then observable here."""
    if not sys.platform.startswith("linux"):
        pytest.skip("mincore and posix_fadvise as Linux has them")
    probe = folder / "page-cache-probe"
    probe.write_bytes(os.urandom(1024 * 1024))
    try:
        if cached_bytes(probe) == 0:
            pytest.skip(f"{folder}'s filesystem does not keep written pages cached")
        with open(probe, "rb+") as handle:
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        if cached_bytes(probe) != 0:
            pytest.skip(f"{folder}'s filesystem keeps its pages cached (tmpfs?)")
    finally:
        probe.unlink()

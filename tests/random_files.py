"""Large files for the stream tests (CLI and page alike): written without holding them,
and hashed the same way."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MIB = 1024 * 1024


def random_file(path: Path, size: int) -> str:
    """``size`` random bytes at ``path``; their SHA-256 in hex."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MIB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest()

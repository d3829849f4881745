"""The relay's payload store and the rules of a piece (relay/payloads.py), without HTTP; and
the stream endpoints in-process where the relay's limits are its defaults (the real
processes, both backends, every refusal: tests/integration/test_relay_streams.py)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from securecomm.codes import Code
from securecomm.config import MAX_PIECE_BYTES, request_limit_bytes
from securecomm.identity import Identity
from securecomm.relay.payloads import (
    FileBusyError,
    PayloadStore,
    check_piece,
    check_range,
    check_stream_length,
    fits_quota,
)
from securecomm.relay.streams import SWEEP_SECONDS, Streams
from securecomm.stream import SEALED_CHUNK_BYTES, sealed_length
from tests.pagecache import cached_bytes, needs_droppable_cache
from tests.unit._services import relay, settings_for

ALICE = Identity.generate("alice")
SEALED = SEALED_CHUNK_BYTES


def test_a_piece_is_64_sealed_chunks_at_most() -> None:
    assert MAX_PIECE_BYTES == 4_195_328 == 64 * 65_552
    assert request_limit_bytes(16 * 1024 * 1024) == 16 * 1024 * 1024
    assert request_limit_bytes(1000) == MAX_PIECE_BYTES


@pytest.mark.parametrize(
    ("offset", "size", "length", "status", "code"),
    [
        (0, MAX_PIECE_BYTES, 10 * MAX_PIECE_BYTES, None, None),
        (0, MAX_PIECE_BYTES + 1, 10 * MAX_PIECE_BYTES, 413, Code.TOO_LARGE),
        (0, 0, 100, 400, Code.BAD_LENGTH),
        (0, 101, 100, 400, Code.BAD_LENGTH),  # past the stream's end
        (SEALED, SEALED + 1, 2 * SEALED, 400, Code.BAD_LENGTH),
        (0, 100, 100, None, None),  # the whole stream in one piece
        (0, SEALED - 1, 2 * SEALED, 400, Code.BAD_LENGTH),  # not whole chunks, not the last
        (0, 2 * SEALED, 5 * SEALED, None, None),
        (2 * SEALED, 3 * SEALED, 5 * SEALED, None, None),
        (2 * SEALED, 17, 2 * SEALED + 17, None, None),  # the last, of any length
    ],
)
def test_check_piece(offset: int, size: int, length: int, status: int, code: Code | None) -> None:
    refused = check_piece(offset, size, length)
    if status is None:
        assert refused is None
    else:
        assert refused is not None
        assert (refused.status, refused.code) == (status, code)


def test_check_stream_length_and_range() -> None:
    for length in (16, 17, SEALED, SEALED + 17, sealed_length(5 * 1024 * 1024)):
        assert check_stream_length(length) is None, length
    for length in (0, 15, SEALED + 1, SEALED + 16):
        refused = check_stream_length(length)
        assert refused is not None and f"no payload stream is {length} bytes long" in refused
    assert check_range(0, 16) is None
    assert check_range(SEALED, SEALED + 16) is None
    assert "chunk boundary" in (check_range(1, 2 * SEALED) or "")
    assert "not inside the stream" in (check_range(SEALED, SEALED) or "")
    assert fits_quota(10, 5, 15) and not fits_quota(10, 6, 15)


def test_write_truncates_what_was_not_acknowledged(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path / "payloads")
    store.create_directories()
    with store.locked(store.partial("a" * 32), create=True) as locked:
        assert locked is not None
        store.start(locked)
        store.write(locked, 0, b"x" * 10)
        os.pwrite(locked.fd, b"junk from a piece never acknowledged", 10)
        store.write(locked, 10, b"y" * 5)
        assert locked.size() == 15
        assert store.digest(locked) == hashlib.sha256(b"x" * 10 + b"y" * 5).digest()
        store.keep(locked, "d" * 64)
    assert store.read("d" * 64, 10, 100) == b"y" * 5
    assert store.read("e" * 64, 0, 1) is None
    assert not store.partial("a" * 32).exists()
    assert (store.root.stat().st_mode & 0o777) == 0o700


def test_a_stream_written_hashed_or_served_leaves_the_page_cache(tmp_path: Path) -> None:
    """A piece is let go of once it is on disk, and so is what the digest and a range read:
    a 1 GiB stream does not push 1 GiB of the machine's cache out."""
    needs_droppable_cache(tmp_path)
    store = PayloadStore(tmp_path / "payloads")
    store.create_directories()
    first, second = os.urandom(MAX_PIECE_BYTES), os.urandom(3 * SEALED + 5)
    with store.locked(store.partial("a" * 32), create=True) as locked:
        assert locked is not None
        store.start(locked)
        store.write(locked, 0, first)
        store.write(locked, len(first), second)
        page = os.sysconf("SC_PAGE_SIZE")
        # (The page the two pieces share may stay: each piece lets go of its whole pages.)
        assert cached_bytes(locked.path) <= page
        assert locked.path.read_bytes() == first + second  # cached again, by a plain read
        assert cached_bytes(locked.path) >= len(first)
        assert store.digest(locked) == hashlib.sha256(first + second).digest()
        assert cached_bytes(locked.path) == 0
        store.keep(locked, "d" * 64)
    stored = store.stored("d" * 64)
    assert stored.read_bytes() == first + second
    assert store.read("d" * 64, SEALED, 2 * SEALED) == (first + second)[SEALED : 3 * SEALED]
    cached = cached_bytes(stored)
    assert cached <= len(first) + len(second) - 2 * SEALED + 2 * page, cached


def test_a_lock_is_on_the_file_the_path_names(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path / "payloads")
    store.create_directories()
    path = store.partial("b" * 32)
    with store.locked(path) as locked:
        assert locked is None  # no file, none made
    assert not path.exists()
    got: list[bytes] = []
    with store.locked(path, create=True) as first:
        assert first is not None
        with pytest.raises(FileBusyError), store.locked(path, wait=False):
            pass

        def waiter() -> None:
            with store.locked(path, create=True) as second:
                assert second is not None
                got.append(os.pread(second.fd, 100, 0))

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.1)
        assert not got  # waiting for the lock
        # Renamed away while the other waits: it locks a new file at the path, not this one.
        os.pwrite(first.fd, b"moved", 0)
        store.keep(first, "c" * 64)
    thread.join(timeout=5)
    assert got == [b""]
    assert store.read("c" * 64, 0, 100) == b"moved"


def test_a_piece_over_64_chunks_is_refused_where_envelopes_may_be_larger(tmp_path: Path) -> None:
    service = relay(settings_for(tmp_path / "home"))  # max_envelope_bytes 16 MiB: read whole
    try:
        message_id = "f" * 32
        path = f"/api/v1/uploads/{message_id}"
        length = sealed_length(10 * 1024 * 1024)
        opened = service.call(ALICE, "PUT", path, {"v": 2, "length": length})
        assert opened.status_code == 201, opened.json
        piece = bytes(MAX_PIECE_BYTES + SEALED)
        refused = service.call(
            ALICE,
            "POST",
            path,
            piece,
            query="offset=0",
            content_type="application/octet-stream",
        )
        assert refused.status_code == 413
        assert refused.json["code"] == "too_large"
        assert f"a piece is at most {MAX_PIECE_BYTES} bytes" in refused.json["message"]
        state = service.call(ALICE, "GET", path)
        assert state.json == {"id": message_id, "length": length, "received": 0}
    finally:
        service.app.extensions["securecomm"]["engine"].dispose()


def test_a_serving_relay_sweeps_once_an_hour(tmp_path: Path) -> None:
    service = relay(settings_for(tmp_path / "home"))
    try:
        streams: Streams = service.app.extensions["streams"]
        assert streams.next_sweep > time.time() + SWEEP_SECONDS - 60  # swept at start
        first, second = streams.store.partial("1" * 32), streams.store.partial("2" * 32)
        first.write_bytes(b"no upload row names this")
        assert service.send("GET", "/healthz").status_code == 200
        assert first.exists()  # not due yet: a request costs one comparison
        streams.next_sweep = 0
        assert service.send("GET", "/healthz").status_code == 200
        assert not first.exists()
        second.write_bytes(b"nor this")
        assert service.send("GET", "/healthz").status_code == 200
        assert second.exists()
    finally:
        service.app.extensions["securecomm"]["engine"].dispose()

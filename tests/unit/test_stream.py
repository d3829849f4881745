"""The payload stream (spec/format-v2.md section 3): round trips at the sizes around a
chunk, resumption, and every way a stream can differ from the one sealed, each refused
with its own error."""

from __future__ import annotations

import os
import re
import tracemalloc
from collections.abc import Iterable, Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from securecomm import errors, stream

CHUNK, SEALED = stream.CHUNK_BYTES, stream.SEALED_CHUNK_BYTES
KEY = stream.payload_key(bytes(range(32)), bytes(16), b'{"v":2}')


def _plaintext(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


def _seal(plaintext: bytes, key: bytes = KEY) -> list[bytes]:
    return list(stream.encrypt(key, [plaintext]))


def _open(chunks: Iterable[bytes], length: int, key: bytes = KEY, start: int = 0) -> bytes:
    return b"".join(stream.decrypt(key, [b"".join(chunks)], length=length, start=start))


def _pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` in pieces of the given sizes, cycled."""
    offset, i = 0, 0
    while offset < len(data):
        size = max(1, sizes[i % len(sizes)])
        yield data[offset : offset + size]
        offset += size
        i += 1


@pytest.mark.parametrize("length", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_around_a_chunk(length: int) -> None:
    plaintext = _plaintext(length)
    chunks = _seal(plaintext)
    assert len(chunks) == stream.chunk_count(length)
    assert all(len(c) == SEALED for c in chunks[:-1])
    assert sum(map(len, chunks)) == stream.sealed_length(length)
    assert stream.plaintext_length(stream.sealed_length(length)) == length
    assert _open(chunks, length) == plaintext


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(0, 3 * CHUNK + 7),
    into=st.lists(st.integers(1, 2 * SEALED), min_size=1, max_size=5),
    out=st.lists(st.integers(1, 2 * SEALED), min_size=1, max_size=5),
)
def test_pieces_of_any_size_give_the_same_stream(
    length: int, into: list[int], out: list[int]
) -> None:
    plaintext = os.urandom(length)
    sealed = b"".join(stream.encrypt(KEY, _pieces(plaintext, into)))
    assert sealed == b"".join(_seal(plaintext))
    assert b"".join(stream.decrypt(KEY, _pieces(sealed, out), length=length)) == plaintext


def test_resuming_at_a_chunk_gives_the_same_bytes_as_the_whole() -> None:
    plaintext = _plaintext(3 * CHUNK + 5)
    whole = _seal(plaintext)
    assert list(stream.encrypt(KEY, [plaintext[2 * CHUNK :]], start=2)) == whole[2:]
    assert _open(whole[2:], len(plaintext), start=2) == plaintext[2 * CHUNK :]


def test_resuming_past_the_end_is_refused() -> None:
    with pytest.raises(errors.ParameterError):
        list(stream.encrypt(KEY, [b""], start=1))
    with pytest.raises(errors.ParameterError):
        _open([], CHUNK, start=1)


def test_lengths_no_stream_has_are_refused() -> None:
    for sealed in (0, 15, SEALED + 3, SEALED + 16, 2 * SEALED + 16):
        with pytest.raises(errors.LengthError):
            stream.plaintext_length(sealed)
    assert stream.plaintext_length(16) == 0
    assert stream.plaintext_length(SEALED) == CHUNK
    assert stream.plaintext_length(SEALED + 17) == CHUNK + 1


# Every way a stream may differ from the one sealed.

LENGTH = 2 * CHUNK + 100
THREE = _seal(_plaintext(LENGTH))  # chunks 0 and 1 full, 2 final
FOUR = _seal(_plaintext(3 * CHUNK + 1))
FLIPPED = bytes([THREE[1][0] ^ 1]) + THREE[1][1:]


@pytest.mark.parametrize(
    ("chunks", "length", "error", "says"),
    [
        (
            THREE[:2],
            LENGTH,
            errors.StreamTruncatedError,
            "ends before chunk 2; its final chunk is 2",
        ),
        (THREE[:1], LENGTH, errors.StreamTruncatedError, "ends before chunk 1"),
        ([*THREE[:2], THREE[2][:-1]], LENGTH, errors.StreamTruncatedError, "inside chunk 2"),
        ([], LENGTH, errors.StreamTruncatedError, "ends before chunk 0"),
        ([], 0, errors.StreamTruncatedError, "ends before chunk 0"),
        ([*THREE, THREE[0]], LENGTH, errors.StreamExtendedError, "final chunk (chunk 2)"),
        ([*THREE, b"x"], LENGTH, errors.StreamExtendedError, "final chunk (chunk 2)"),
        (
            [FOUR[0], *FOUR[2:]],
            3 * CHUNK + 1,
            errors.StreamReorderedError,
            "chunk 2 came at position 1",
        ),
        (
            [THREE[1], THREE[0], THREE[2]],
            LENGTH,
            errors.StreamReorderedError,
            "chunk 1 came at position 0",
        ),
        (
            [THREE[0], THREE[0], *THREE[1:]],
            LENGTH,
            errors.StreamDuplicateError,
            "chunk 1 is chunk 0 again",
        ),
        (
            [THREE[0], FLIPPED, THREE[2]],
            LENGTH,
            errors.StreamChunkError,
            "chunk 1 does not authenticate",
        ),
    ],
    ids=[
        "cut-at-a-boundary",
        "cut-to-one-chunk",
        "final-chunk-cut",
        "empty",
        "empty-for-the-empty-message",
        "chunk-appended",
        "byte-appended",
        "chunk-dropped",
        "chunks-swapped",
        "chunk-repeated",
        "bit-flipped",
    ],
)
def test_a_stream_that_is_not_the_one_sealed_is_refused(
    chunks: list[bytes], length: int, error: type[errors.StreamError], says: str
) -> None:
    with pytest.raises(error, match=re.escape(says)) as refused:
        _open(chunks, length)
    assert type(refused.value) is error


def test_a_stream_of_another_header_or_message_opens_nowhere() -> None:
    for other in (
        stream.payload_key(bytes(range(32)), bytes(16), b'{"v":2} '),
        stream.payload_key(bytes(range(32)), bytes(15) + b"\x01", b'{"v":2}'),
        stream.payload_key(bytes(range(1, 33)), bytes(16), b'{"v":2}'),
    ):
        with pytest.raises(errors.StreamChunkError, match="chunk 0 does not authenticate"):
            _open(THREE, LENGTH, key=other)


def test_a_chunk_sealed_with_the_wrong_flag_is_refused() -> None:
    """Only the key's holder (the sender) can seal one: a non-final chunk where the length
    puts the final one, or a final one before its place."""
    plaintext = _plaintext(2 * CHUNK)
    aes = AESGCM(KEY)
    chunk_0 = aes.encrypt(bytes(11) + b"\x00", plaintext[:CHUNK], None)
    not_final_1 = aes.encrypt(bytes(10) + b"\x01\x00", plaintext[CHUNK:], None)
    assert chunk_0 == _seal(plaintext)[0]
    with pytest.raises(errors.StreamChunkError, match="chunk 1 does not authenticate"):
        _open([chunk_0, not_final_1], 2 * CHUNK)
    final_0 = aes.encrypt(bytes(11) + b"\x01", plaintext[:CHUNK], None)
    with pytest.raises(errors.StreamChunkError, match="chunk 0 does not authenticate"):
        _open([final_0, _seal(plaintext)[1]], 2 * CHUNK)


def test_what_comes_before_a_refusal_is_yielded_but_the_stream_fails() -> None:
    """The caller must hold back what it was given until the stream ends (the CLI writes a
    temporary file and renames it only then)."""
    opened = stream.decrypt(KEY, [b"".join(THREE[:2])], length=LENGTH)
    assert next(opened) == _plaintext(CHUNK)
    with pytest.raises(errors.StreamTruncatedError):
        list(opened)


def test_memory_stays_flat_whatever_the_size() -> None:
    """Both directions hold a piece and a chunk or two, never the message: the peak for
    32 MiB is no higher than for 4 MiB (the bytes come from a generator, as from a file)."""

    def peak(size: int) -> int:
        def plaintext() -> Iterator[bytes]:
            for _ in range(size // 2**20):
                yield bytes(2**20)

        tracemalloc.start()
        try:
            sealed = stream.encrypt(KEY, plaintext())
            for _ in stream.decrypt(KEY, sealed, length=size):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(4 * 2**20), peak(32 * 2**20)
    assert large < 4 * 2**20
    assert large < small * 1.5

"""Shares that people and networks can carry: versioned, self-describing, checksummed.

Recipe layer over :mod:`securecomm.shamir`. A :class:`Share` knows its split
id, threshold and index, so :func:`combine` can refuse shares that do not
belong together, with an error that names the share, instead of returning a
wrong secret. The byte layout is in spec/format-v1.md, section "Share".

The checksum is CRC-32 (the polynomial of IEEE 802.3, as computed by
:func:`zlib.crc32`). It is for typing and copying mistakes, not for attacks:
a CRC detects every error burst of 32 bits or fewer, so every single-byte
change and every swap of two adjacent bytes. Against a custodian that lies,
securecomm checks each share against the digest the sender signed
(:func:`securecomm.envelope.share_digest`).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from . import shamir
from ._encoding import b64decode, b64encode
from .errors import (
    ChecksumError,
    DuplicateShareError,
    FieldError,
    FormatError,
    InconsistentSharesError,
    InsufficientSharesError,
    LengthError,
    MixedSplitError,
    RaggedSharesError,
    ShareIndexError,
    UnknownVersionError,
)

__all__ = [
    "CHECKSUM_LENGTH_BYTES",
    "HEADER_LENGTH_BYTES",
    "SPLIT_ID_LENGTH_BYTES",
    "TEXT_PREFIX",
    "TEXT_SPACE",
    "VERSION",
    "Share",
    "combine",
    "split",
]

VERSION = 1
SPLIT_ID_LENGTH_BYTES = 16
# version (1) | split id (16) | threshold (1) | index (1) | secret length (4, big-endian)
_HEADER = struct.Struct(">B16sBBI")
HEADER_LENGTH_BYTES = _HEADER.size
CHECKSUM_LENGTH_BYTES = 4
#: Every text share starts with this; the version is part of it.
TEXT_PREFIX = "securecomm-share-v1:"
_TEXT_PREFIX_STEM = "securecomm-share-"


#: What a reader ignores before and after a text share (spec section 3.2): ASCII space,
#: tab, line feed, carriage return. Other white space (U+00A0, U+3000, ...) is refused.
TEXT_SPACE = " \t\n\r"


@dataclass(frozen=True)
class Share:
    """One share of a split secret."""

    split_id: bytes
    threshold: int
    index: int
    value: bytes

    def __post_init__(self) -> None:
        if len(self.split_id) != SPLIT_ID_LENGTH_BYTES:
            raise LengthError(
                f"share: split id length {len(self.split_id)} bytes,"
                f" expected {SPLIT_ID_LENGTH_BYTES}"
            )
        if not shamir.MIN_THRESHOLD <= self.threshold <= shamir.MAX_SHARES:
            raise FieldError(
                f"share {self.index}: threshold {self.threshold} is outside"
                f" {shamir.MIN_THRESHOLD}..{shamir.MAX_SHARES}"
            )
        if not 1 <= self.index <= shamir.MAX_SHARES:
            raise ShareIndexError(
                f"share: index {self.index} is outside 1..{shamir.MAX_SHARES}"
                + (" (0 is the secret's own)" if self.index == 0 else "")
            )
        if len(self.value) == 0:
            raise LengthError(f"share {self.index}: empty value")

    def __repr__(self) -> str:
        # The value is a piece of a secret: keep it out of logs and tracebacks.
        return (
            f"Share(split_id={self.split_id.hex()}, threshold={self.threshold},"
            f" index={self.index}, value=<{len(self.value)} bytes>)"
        )

    def to_raw(self) -> bytes:
        """The Vault-style raw share: y-bytes, then the index."""
        return self.value + bytes((self.index,))

    def to_bytes(self) -> bytes:
        body = (
            _HEADER.pack(VERSION, self.split_id, self.threshold, self.index, len(self.value))
            + self.value
        )
        return body + zlib.crc32(body).to_bytes(CHECKSUM_LENGTH_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "share") -> Share:
        """Decode a binary share; ``name`` is how errors refer to it."""
        data = bytes(data)
        if len(data) < 1:
            raise LengthError(f"{name}: empty")
        if data[0] != VERSION:
            raise UnknownVersionError(f"{name}: version {data[0]}, expected {VERSION}")
        minimum = HEADER_LENGTH_BYTES + 1 + CHECKSUM_LENGTH_BYTES
        if len(data) < minimum:
            raise LengthError(f"{name}: length {len(data)} bytes, expected at least {minimum}")
        _, split_id, threshold, index, length = _HEADER.unpack_from(data)
        expected = HEADER_LENGTH_BYTES + length + CHECKSUM_LENGTH_BYTES
        if len(data) != expected:
            raise LengthError(
                f"{name}: length {len(data)} bytes, expected {expected} for a {length}-byte secret"
            )
        body, checksum = data[:-CHECKSUM_LENGTH_BYTES], data[-CHECKSUM_LENGTH_BYTES:]
        if zlib.crc32(body).to_bytes(CHECKSUM_LENGTH_BYTES, "big") != checksum:
            raise ChecksumError(f"{name}: checksum mismatch (the share was altered or mistyped)")
        if index == 0:
            raise ShareIndexError(f"{name}: index 0 is the secret's own")
        if threshold < shamir.MIN_THRESHOLD:
            raise FieldError(
                f"{name}: threshold {threshold}, expected at least {shamir.MIN_THRESHOLD}"
            )
        return cls(split_id, threshold, index, body[HEADER_LENGTH_BYTES:])

    def to_text(self) -> str:
        """One line a person can copy: :data:`TEXT_PREFIX`, then padded base64."""
        return TEXT_PREFIX + b64encode(self.to_bytes())

    @classmethod
    def from_text(cls, text: str, *, name: str = "share") -> Share:
        text = text.strip(TEXT_SPACE)
        if not text.startswith(TEXT_PREFIX):
            if text.startswith(_TEXT_PREFIX_STEM) and ":" in text:
                version = text[len(_TEXT_PREFIX_STEM) : text.index(":")]
                raise UnknownVersionError(f"{name}: text version {version!r}, expected 'v1'")
            raise FormatError(f"{name}: does not start with {TEXT_PREFIX!r}")
        return cls.from_bytes(b64decode(text[len(TEXT_PREFIX) :], field=name), name=name)


def split(secret: bytes, n: int, t: int, *, split_id: bytes | None = None) -> list[Share]:
    """Split ``secret`` into ``n`` shares with indices 1..n, any ``t`` rebuilding it."""
    if split_id is None:
        split_id = os.urandom(SPLIT_ID_LENGTH_BYTES)
    raw = shamir.split(secret, n, t)
    return [Share(split_id, t, share[-1], share[:-1]) for share in raw]


def _describe(share: Share, position: int) -> str:
    return f"share {position} (index {share.index})"


def combine(shares: Sequence[Share]) -> bytes:
    """Rebuild the secret, refusing shares that do not belong together.

    Each refusal names the share at fault by its position in ``shares`` and
    its index. The first t shares rebuild the secret; any further ones are
    checked to lie on the same polynomials, so a share altered in a way its
    checksum cannot see is caught when more than t are given.
    """
    if not shares:
        raise InsufficientSharesError("combine: no shares given")
    first = shares[0]
    seen: dict[int, int] = {}
    for position, share in enumerate(shares, start=1):
        if share.split_id != first.split_id:
            raise MixedSplitError(
                f"combine: {_describe(share, position)} is from split {share.split_id.hex()},"
                f" share 1 from split {first.split_id.hex()}"
            )
        if share.threshold != first.threshold:
            raise MixedSplitError(
                f"combine: {_describe(share, position)} has threshold {share.threshold},"
                f" share 1 has {first.threshold}"
            )
        if len(share.value) != len(first.value):
            raise RaggedSharesError(
                f"combine: {_describe(share, position)}: length {len(share.value)} bytes,"
                f" expected {len(first.value)} like share 1"
            )
        if share.index in seen:
            raise DuplicateShareError(
                f"combine: {_describe(share, position)} repeats the index of share"
                f" {seen[share.index]}"
            )
        seen[share.index] = position
    t = first.threshold
    if len(shares) < t:
        raise InsufficientSharesError(f"combine: {len(shares)} share(s) given, threshold is {t}")
    basis = [share.to_raw() for share in shares[:t]]
    for position, extra in enumerate(shares[t:], start=t + 1):
        if shamir.interpolate(basis, extra.index) != extra.value:
            raise InconsistentSharesError(
                f"combine: {_describe(extra, position)} does not agree with shares 1..{t}"
                " (one of them is wrong)"
            )
    return shamir.combine(basis)

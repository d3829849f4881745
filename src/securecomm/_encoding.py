"""Strict base64 (RFC 4648 section 4, padded) and small encoding helpers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from .errors import FormatError, LengthError, NonCanonicalError

__all__ = ["b64decode", "b64encode", "labelled_hash"]


def b64encode(data: bytes | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


# The alphabet only; the padding is checked apart. A pattern of four-character groups says
# the same, but Python's re keeps a backtracking frame per group it repeats: some 35 bytes
# of memory per byte decoded (a 64 MiB message's ciphertext took 2.8 GiB to check).
_BASE64_ALPHABET = re.compile(r"[A-Za-z0-9+/]*")


def b64decode(text: str, *, field: str, length: int | None = None) -> bytes:
    """Decode padded standard base64, refusing anything but its one canonical form.

    ``field`` names the value in errors; ``length``, when given, is the only
    length accepted.
    """
    if not isinstance(text, str):
        raise FormatError(f"{field}: expected a base64 string, got {type(text).__name__}")
    # The form first (spec section 1.2): groups of four, padding only to end the last one.
    # Missing, superfluous or misplaced padding is a FormatError, whatever Python accepts.
    unpadded = text.rstrip("=")
    if (
        len(text) % 4
        or len(text) - len(unpadded) > 2
        or _BASE64_ALPHABET.fullmatch(unpadded) is None
    ):
        raise FormatError(f"{field}: not valid base64 (RFC 4648 section 4, padded)")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{field}: not valid base64 (RFC 4648 section 4, padded)") from None
    # Python ignores the unused low bits of the last character: "QQ==" and
    # "QR==" both decode to b"A". Only the canonical spelling is accepted.
    if base64.b64encode(data).decode("ascii") != text:
        raise NonCanonicalError(f"{field}: base64 is not in canonical form")
    if length is not None and len(data) != length:
        raise LengthError(f"{field}: length {len(data)} bytes, expected {length}")
    return data


def labelled_hash(label: str, *parts: bytes) -> bytes:
    """SHA-256 over a label and parts, each prefixed with its 4-byte big-endian length.

    The length prefixes make the encoding injective: no two different lists
    of parts hash the same input.
    """
    digest = hashlib.sha256()
    for part in (label.encode("utf-8"), *parts):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.digest()

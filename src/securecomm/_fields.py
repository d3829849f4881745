"""The field readers every JSON document of the format is decoded with (spec §1, §7).

Each reader names the path of what it refuses, with what it expected; the envelope,
the custody bodies and public identities all use these, so one document is not
stricter, or more talkative, than another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import FieldError, UnknownVersionError

VERSION = 1
#: The versions of the message envelope (spec/format-v2.md); every other document has one.
ENVELOPE_VERSIONS = (1, 2)
#: Seconds since the epoch: far beyond any real date, well inside canonical JSON's range.
TIME_MAX_SECONDS = 2**40
HEX_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
HEX_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def version(value: Mapping[str, Any], path: str, known: Sequence[int] = (VERSION,)) -> int:
    found = value.get("v")
    if found not in known or isinstance(found, bool):
        expected = " or ".join(str(v) for v in known)
        raise UnknownVersionError(f"{path}.v: version {found!r}, expected {expected}")
    assert isinstance(found, int)
    return found


def expect_object(
    value: object,
    path: str,
    keys: set[str],
    *,
    optional: frozenset[str] | set[str] = frozenset(),
    versioned: bool = False,
    versions: Sequence[int] = (VERSION,),
) -> Mapping[str, Any]:
    """``value`` as an object with exactly ``keys`` and any of ``optional``; a versioned one
    has its "v" checked first, so a later version with new members is an unknown version,
    not a bad field."""
    if not isinstance(value, Mapping):
        raise FieldError(f"{path}: expected an object, got {type(value).__name__}")
    if versioned:
        version(value, path, versions)
    missing = keys - set(value)
    if missing:
        raise FieldError(f"{path}: missing field(s) {sorted(missing)}")
    extra = set(value) - keys - set(optional)
    if extra:
        raise FieldError(f"{path}: unexpected field(s) {sorted(extra)}")
    return value


def integer(value: object, path: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(f"{path}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise FieldError(f"{path}: {value} is outside {low}..{high}")
    return value


def optional_integer(value: object, path: str, low: int, high: int) -> int | None:
    return None if value is None else integer(value, path, low, high)


def array(value: object, path: str, low: int, high: int) -> list[Any]:
    if not isinstance(value, list):
        raise FieldError(f"{path}: expected an array, got {type(value).__name__}")
    if not low <= len(value) <= high:
        expected = f"exactly {low}" if low == high else f"{low}..{high}"
        raise FieldError(f"{path}: {len(value)} item(s), expected {expected}")
    return value


def matching(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise FieldError(f"{path}: expected {what}")
    return value


def message_id_hex(value: object, path: str) -> str:
    return matching(value, path, HEX_MESSAGE_ID, "32 hex digits")


def fingerprint_hex(value: object, path: str) -> str:
    return matching(value, path, HEX_FINGERPRINT, "64 hex digits")


def unique(values: Sequence[str], path: str, what: str = "name") -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            shown = repr(value) if what == "name" else value[:16]
            raise FieldError(f"{path}[{i}]: {what} {shown} appears twice")
        seen.add(value)

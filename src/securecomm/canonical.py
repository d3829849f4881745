"""Canonical JSON: RFC 8785 (JCS) for the values securecomm uses.

The formats hold no floats, so the subset is: objects with string keys,
arrays, strings, integers within +/-(2^53 - 1), true, false and null.
:func:`dumps` writes the one canonical form: keys sorted by their UTF-16
code units, no insignificant whitespace, UTF-8, and strings escaped as
RFC 8785 section 3.2.2.2 says (only ``"``, ``\\`` and control characters).
:func:`loads` accepts only that form, so a signed document has exactly one
byte string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from .errors import FieldError, FormatError, NonCanonicalError

__all__ = ["MAX_SAFE_INTEGER", "dumps", "loads"]

#: Larger integers lose precision as IEEE 754 doubles, which RFC 8785 numbers are.
MAX_SAFE_INTEGER = 2**53 - 1

_string = json.JSONEncoder(ensure_ascii=False).encode


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _write(value: Any, out: list[str], path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise FieldError(f"canonical JSON: {path}: integer outside +/-(2^53 - 1)")
        out.append(str(int(value)))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise FieldError(f"canonical JSON: {path}: object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out, f"{path}.{key}")
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, f"{path}[{i}]")
        out.append("]")
    else:
        raise FieldError(f"canonical JSON: {path}: {type(value).__name__} has no JSON form here")


def dumps(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value``."""
    out: list[str] = []
    _write(value, out, "$")
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError("canonical JSON: a string holds a lone UTF-16 surrogate") from None


def _refuse_float(text: str) -> NoReturn:
    raise FormatError(f"canonical JSON: number {text} is not an integer")


def _refuse_constant(text: str) -> NoReturn:
    raise FormatError(f"canonical JSON: {text} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FormatError(f"canonical JSON: duplicate key {key!r}")
        result[key] = value
    return result


def loads(data: bytes, *, what: str = "document") -> Any:
    """Parse canonical JSON bytes; refuse invalid UTF-8, floats, duplicates, other spellings."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what}: not UTF-8") from None
    try:
        value = json.loads(
            text,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise FormatError(f"{what}: not JSON ({exc.msg}; offset {exc.pos})") from None
    except RecursionError:
        raise FormatError(f"{what}: nested too deeply") from None
    except ValueError:
        # Python refuses to convert integers of more than 4300 digits.
        raise FormatError(f"{what}: a number is too long") from None
    try:
        canonical = dumps(value)
    except FieldError as exc:
        raise FormatError(f"{what}: {exc}") from None
    if canonical != bytes(data):
        raise NonCanonicalError(
            f"{what}: JSON is not in canonical form (RFC 8785: sorted keys, no spaces)"
        )
    return value

"""Canonical JSON: RFC 8785 (JCS) for the values securecomm uses.

The formats hold no floats, so the subset is: objects with string keys,
arrays, strings, integers within +/-(2^53 - 1), true, false and null.
:func:`dumps` writes the one canonical form: keys sorted by their UTF-16
code units, no insignificant whitespace, UTF-8, and strings escaped as
RFC 8785 section 3.2.2.2 says (only ``"``, ``\\`` and control characters).
:func:`loads` accepts only that form, so a signed document has exactly one
byte string. :func:`parse_json` reads an HTTP body: the same values, any spelling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from .errors import FieldError, FormatError, NonCanonicalError

__all__ = ["MAX_SAFE_INTEGER", "dumps", "loads", "loads_file", "parse_json"]

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


# The C encoder of the standard library writes exactly RFC 8785's form for the values
# :func:`_plain` lets through: compact separators, strings escaped as 3.2.2.2 says (only
# '"', '\\' and control characters, in lowercase hex), integers in shortest form, and keys
# sorted by code point, which is the order of UTF-16 code units unless a key holds a
# character beyond U+FFFF.
_c_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False
).encode


_PLAIN_NODES = 1_000_000


def _plain(value: Any) -> bool:
    """True if ``value`` holds only dicts with str keys of the Basic Multilingual Plane,
    lists, tuples, str, bool, None and ints within +/-(2^53 - 1): what the C encoder
    writes canonically. False for anything else, which :func:`_write` then writes or
    refuses with the path at fault."""
    stack = [value]
    budget = _PLAIN_NODES  # a container that holds itself never ends the walk
    while stack:
        budget -= 1
        if budget < 0:
            return False
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                    return False
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        else:
            return False
    return True


def dumps(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value``."""
    if _plain(value):
        text = _c_encode(value)
    else:
        out: list[str] = []
        _write(value, out, "$")
        text = "".join(out)
    try:
        return text.encode("utf-8")
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


def _parse(data: bytes, what: str) -> tuple[Any, bytes]:
    """The value of JSON ``data`` under section 1.4's value rules, and its canonical bytes."""
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
        return value, dumps(value)
    except FieldError as exc:
        raise FormatError(f"{what}: {exc}") from None


def parse_json(data: bytes, *, what: str = "body") -> dict[str, Any]:
    """Parse a JSON body (spec 1.4.1): an object of canonical JSON's values, in any spelling.

    Whitespace and member order are free; what is refused is refused for the value, not
    the spelling: invalid UTF-8, a byte order mark, floats, NaN, integers beyond
    +/-(2^53 - 1), duplicate keys, lone surrogates and a value that is not an object, all
    as ``FormatError``.
    """
    value = _parse(data, what)[0]
    if not isinstance(value, dict):
        raise FormatError(f"{what}: not a JSON object")
    return value


def loads(data: bytes, *, what: str = "document") -> Any:
    """Parse canonical JSON bytes; refuse invalid UTF-8, floats, duplicates, other spellings."""
    value, canonical = _parse(data, what)
    if canonical != bytes(data):
        raise NonCanonicalError(
            f"{what}: JSON is not in canonical form (RFC 8785: sorted keys, no spaces)"
        )
    return value


def loads_file(data: bytes, *, what: str = "file") -> Any:
    """A document stored as a file (spec 1.4): canonical JSON, then one optional LF."""
    data = bytes(data)
    return loads(data[:-1] if data.endswith(b"\n") else data, what=what)

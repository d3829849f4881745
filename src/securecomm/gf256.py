"""Arithmetic in GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11B).

Low-level layer: the field only, for :mod:`securecomm.shamir`. Addition is XOR.
Multiplication goes through log/exp tables over the generator 0x03, and
multiplying a whole byte string by one constant is a single
:meth:`bytes.translate` with that constant's 256-byte table.

Table lookups are not constant-time; timing side channels inside one process
are outside securecomm's threat model (see the README).
"""

from __future__ import annotations

from functools import cache

__all__ = ["POLYNOMIAL", "div", "inverse", "mul", "mul_bytes", "mul_table", "xor_bytes"]

#: The AES reduction polynomial, as in FIPS 197 section 4.2, Vault's shamir and SLIP-0039.
POLYNOMIAL = 0x11B
_GENERATOR = 0x03


def _build_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    exp = [0] * 510
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        # value * 3 = value * 2 + value, with the reduction on overflow
        doubled = value << 1
        if doubled & 0x100:
            doubled ^= POLYNOMIAL
        value = doubled ^ value
    # A second copy spares a modulo in mul: log a + log b <= 508.
    for power in range(255, 510):
        exp[power] = exp[power - 255]
    return tuple(exp), tuple(log)


_EXP, _LOG = _build_tables()


def mul(a: int, b: int) -> int:
    """Return a * b in the field."""
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def inverse(a: int) -> int:
    """Return the multiplicative inverse of a non-zero element."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    return _EXP[255 - _LOG[a]]


def div(a: int, b: int) -> int:
    """Return a / b in the field."""
    return mul(a, inverse(b))


@cache
def mul_table(constant: int) -> bytes:
    """The 256-byte table mapping x to constant * x, for :meth:`bytes.translate`."""
    if not 0 <= constant <= 255:
        raise ValueError(f"field element out of range: {constant}")
    if constant == 0:
        return bytes(256)
    shift = _LOG[constant]
    return bytes([0]) + bytes(_EXP[shift + _LOG[x]] for x in range(1, 256))


def mul_bytes(data: bytes, constant: int) -> bytes:
    """Multiply every byte of ``data`` by ``constant``."""
    return data.translate(mul_table(constant))


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """Add two byte strings of equal length (field addition is XOR)."""
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")

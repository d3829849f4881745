"""Shamir's secret sharing over GF(2^8), byte by byte.

Low-level layer. Each byte of the secret is the constant term of its own
random polynomial of degree t-1; share x holds every polynomial evaluated at
x. A raw share is laid out as HashiCorp Vault's ``shamir`` package lays it:
the y-bytes, then the x-coordinate as the last byte. Raw shares carry no
checksum and no threshold: use :mod:`securecomm.shares` for anything a person
or a network touches.

Any t shares give the secret; t-1 shares say nothing about it, because every
candidate secret is consistent with them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from types import ModuleType
from typing import Any

from . import gf256
from .errors import (
    DuplicateShareError,
    InsufficientSharesError,
    LengthError,
    ParameterError,
    RaggedSharesError,
    ShareIndexError,
)

__all__ = [
    "MAX_SHARES",
    "MIN_THRESHOLD",
    "combine",
    "interpolate",
    "recover_secret",
    "split",
    "split_secret",
]

#: x-coordinates are one byte and 0 is the secret's own, so at most 255 shares.
MAX_SHARES = 255
#: A threshold of 1 would hand the secret itself to every holder.
MIN_THRESHOLD = 2


def check_parameters(n: int, t: int) -> None:
    """Raise :class:`ParameterError` unless 2 <= t <= n <= 255."""
    if not isinstance(n, int) or not isinstance(t, int) or isinstance(n | t, bool):
        raise ParameterError("shamir: n and t must be integers")
    if not MIN_THRESHOLD <= t:
        raise ParameterError(f"shamir: threshold {t} is below the minimum {MIN_THRESHOLD}")
    if t > n:
        raise ParameterError(f"shamir: threshold {t} is above the number of shares {n}")
    if n > MAX_SHARES:
        raise ParameterError(f"shamir: {n} shares asked for, at most {MAX_SHARES} exist")


#: Secrets at least this long are split with numpy when it is installed, and
#: shares at least this long combined with it: the same bytes, sooner (below
#: these sizes numpy's cost per call outweighs it). Everything else, and
#: everything when numpy is missing, goes through Python's big integers.
NUMPY_SPLIT_FROM_BYTES = 8192
NUMPY_COMBINE_FROM_BYTES = 2048

_numpy_module: ModuleType | None = None
_numpy_tried = False


def _numpy() -> ModuleType | None:
    """numpy if it is installed (imported on first use only: most secrets are 32-byte keys)."""
    global _numpy_module, _numpy_tried
    if not _numpy_tried:
        _numpy_tried = True
        try:
            _numpy_module = importlib.import_module("numpy")
        except ImportError:
            _numpy_module = None
    return _numpy_module


def _is_power_of_two(exponent: int) -> bool:
    return exponent & (exponent - 1) == 0


# One product to add: coefficient j times the constant whose table this is (None: times 1).
_Term = tuple[int, bytes | None]


@dataclass(frozen=True)
class _Plan:
    """How :func:`split` computes the shares for one (n, t); see :func:`_split_plan`."""

    n: int
    first: tuple[_Term, ...]  # added to D for share 1
    # Shares 2-3, 4-5, ...: the even one's table for each coefficient, and what the odd
    # one adds to D (None: the odd one is past n).
    pairs: tuple[tuple[tuple[bytes, ...], tuple[_Term, ...] | None], ...]
    in_changes: tuple[int, ...]  # the coefficients that make up D
    # For numpy: for each coefficient, for each bit 0..7 up to the highest needed, the
    # shares (0-based) whose multiplier x^j has that bit set.
    bits: tuple[tuple[tuple[int, ...], ...], ...]


_IDENTITY = bytes(range(256))


@lru_cache(maxsize=64)
def _split_plan(n: int, t: int) -> _Plan:
    """How to compute the shares; the caller has checked n and t.

    Share x is y(x) = s + a_1 x + a_2 x^2 + ..., each product one multiplication
    table. Squaring is additive in GF(2^8), so for a power of two p,
    (x + 1)^p = x^p + 1. An odd x is x - 1 plus 1, so a coefficient whose
    exponent is a power of two (a_1, a_2, a_4, ...) adds to share x what it
    added to share x - 1, plus itself: y(x) = y(x - 1) + D + what the other
    coefficients change, with D = a_1 + a_2 + a_4 + .... With t = 3 every odd
    share is one addition away from the even one before it, which halves the
    multiplications.
    """

    def powers(x: int) -> list[int]:
        result = []
        power = 1
        for _ in range(t - 1):
            power = gf256.mul(power, x)
            result.append(power)
        return result

    def odd_terms(x: int) -> tuple[_Term, ...]:
        terms: list[_Term] = []
        for j, (now, before) in enumerate(zip(powers(x), powers(x - 1), strict=True)):
            change = now ^ before
            if _is_power_of_two(j + 1) or change == 0:
                continue
            terms.append((j, None if change == 1 else gf256.mul_table(change)))
        return tuple(terms)

    pairs = []
    for x in range(2, n + 1, 2):
        tables = tuple(_IDENTITY if power == 1 else gf256.mul_table(power) for power in powers(x))
        pairs.append((tables, odd_terms(x + 1) if x + 1 <= n else None))
    in_changes = tuple(j for j in range(t - 1) if _is_power_of_two(j + 1))
    multipliers = [powers(x) for x in range(1, n + 1)]
    bits = []
    for j in range(t - 1):
        column = [row[j] for row in multipliers]
        bits.append(
            tuple(
                tuple(share for share, c in enumerate(column) if c >> bit & 1)
                for bit in range(max(column).bit_length())
            )
        )
    return _Plan(n, odd_terms(1), tuple(pairs), in_changes, tuple(bits))


def split(secret: bytes, n: int, t: int) -> list[bytes]:
    """Split ``secret`` into ``n`` raw shares, any ``t`` of which rebuild it.

    Share i (0-based) has x-coordinate i + 1 and is ``len(secret) + 1`` bytes.
    """
    check_parameters(n, t)
    if type(secret) is not bytes:
        secret = bytes(secret)
    length = len(secret)
    if length == 0:
        raise ParameterError("shamir: the secret is empty")
    # Coefficients a_1 .. a_{t-1}, each a byte string: one random polynomial per secret byte.
    coefficients = [os.urandom(length) for _ in range(t - 1)]
    plan = _split_plan(n, t)
    if length >= NUMPY_SPLIT_FROM_BYTES:
        numpy = _numpy()
        if numpy is not None:
            return _split_arrays(numpy, secret, coefficients, plan)
    if t == 3:
        return _split_ints_3(secret, coefficients[0], coefficients[1], plan)
    return _split_ints(secret, coefficients, plan)


def _split_ints_3(secret: bytes, a_1: bytes, a_2: bytes, plan: _Plan) -> list[bytes]:
    """:func:`_split_ints` for t = 3, the usual threshold, spelled out.

    For a key, Python's loop overhead is as large as the work: without it,
    this is about a third faster. Both exponents are powers of two, so every
    odd share is the even one before it plus D = a_1 + a_2.
    """
    size = len(secret) + 1
    from_bytes = int.from_bytes
    a_1 += b"\x01"  # see _split_ints
    constant = from_bytes(secret, "little")
    changes = from_bytes(a_1, "little") ^ from_bytes(a_2, "little")
    shares = [(constant ^ changes).to_bytes(size, "little")]
    for (table_1, table_2), odd in plan.pairs:
        y = (
            constant
            ^ from_bytes(a_1.translate(table_1), "little")
            ^ from_bytes(a_2.translate(table_2), "little")
        )
        shares.append(y.to_bytes(size, "little"))
        if odd is not None:
            shares.append((y ^ changes).to_bytes(size, "little"))
    return shares


def _split_ints(secret: bytes, coefficients: list[bytes], plan: _Plan) -> list[bytes]:
    """The shares as Python integers: each product one translate, each sum one XOR."""
    size = len(secret) + 1
    # a_1 gets one more byte, 1: times x it is x, the share's last byte, so no share is copied.
    coefficients[0] += b"\x01"
    from_bytes = int.from_bytes
    constant = from_bytes(secret, "little")
    changes = 0  # D
    for j in plan.in_changes:
        changes ^= from_bytes(coefficients[j], "little")
    y = constant ^ changes  # x = 1
    for j, table in plan.first:
        y ^= from_bytes(
            coefficients[j] if table is None else coefficients[j].translate(table), "little"
        )
    shares = [y.to_bytes(size, "little")]
    for tables, odd in plan.pairs:
        y = constant
        for j, table in enumerate(tables):
            y ^= from_bytes(coefficients[j].translate(table), "little")
        shares.append(y.to_bytes(size, "little"))
        if odd is None:
            break
        y ^= changes
        for j, table in odd:
            term = coefficients[j] if table is None else coefficients[j].translate(table)
            y ^= from_bytes(term, "little")
        shares.append(y.to_bytes(size, "little"))
    return shares


def _split_arrays(numpy: Any, secret: bytes, coefficients: list[bytes], plan: _Plan) -> list[bytes]:
    """The shares computed in numpy arrays, all at once, then copied out.

    Multiplying by a constant c is linear over GF(2): a·c is the sum of a·2^i
    over the bits i of c, and a·2 (xtime) is a shift and a conditional XOR of
    0x1B, a few whole-array operations on 64-bit words. So each coefficient
    is doubled up to seven times and added into the shares whose multiplier
    has that bit set.
    """
    length = len(secret)
    n = plan.n
    uint8, uint64 = numpy.uint8, numpy.uint64
    xor = numpy.bitwise_xor
    # One block (numpy asks for huge pages for big ones): n shares, then two rows to work
    # in, each row padded to whole 64-bit words.
    stride = (length + 1 + 7) // 8 * 8
    work = numpy.empty((n + 2, stride), uint8)
    shares = work[:n, :length]
    shares[:] = numpy.frombuffer(secret, uint8)
    work[:n, length] = numpy.arange(1, n + 1, dtype=uint8)
    value, value_words = work[n, :length], work[n].view(uint64)
    carry = work[n + 1].view(uint64)
    high, low, reduce = uint64(0x0101010101010101), uint64(0x7F7F7F7F7F7F7F7F), uint64(0x1B)
    for coefficient, by_bit in zip(coefficients, plan.bits, strict=False):
        value[:] = numpy.frombuffer(coefficient, uint8)
        for bit, rows in enumerate(by_bit):
            if bit:  # value = value · 2, every byte at once
                numpy.right_shift(value_words, uint64(7), out=carry)
                numpy.bitwise_and(carry, high, out=carry)
                numpy.multiply(carry, reduce, out=carry)
                numpy.bitwise_and(value_words, low, out=value_words)
                numpy.left_shift(value_words, uint64(1), out=value_words)
                xor(value_words, carry, out=value_words)
            for row in rows:
                xor(shares[row], value, out=shares[row])
    return [work[row, : length + 1].tobytes() for row in range(n)]


def _lagrange_weights(xs: Sequence[int], at: int) -> list[int]:
    """The weight of each share's y in the interpolated value at x = ``at``."""
    weights = []
    for i, xi in enumerate(xs):
        numerator = 1
        denominator = 1
        for j, xj in enumerate(xs):
            if i != j:
                numerator = gf256.mul(numerator, at ^ xj)
                denominator = gf256.mul(denominator, xi ^ xj)
        weights.append(gf256.div(numerator, denominator))
    return weights


@lru_cache(maxsize=1024, typed=True)
def _weight_tables(xs: tuple[int, ...], at: int) -> tuple[bytes | None, ...]:
    """The multiplication table of each share's weight (None where the weight is 1)."""
    return tuple(
        None if weight == 1 else gf256.mul_table(weight) for weight in _lagrange_weights(xs, at)
    )


_last_byte = itemgetter(-1)


def _check_raw(shares: Sequence[bytes]) -> tuple[int, ...]:
    """Refuse what cannot be combined; return the shares' x-coordinates."""
    count = len(shares)
    if count >= MIN_THRESHOLD:
        lengths = set(map(len, shares))
        if len(lengths) == 1 and lengths.pop() >= 2:
            xs: tuple[int, ...] = tuple(map(_last_byte, shares))
            if 0 not in xs and len(set(xs)) == count:
                return xs
    # Something is wrong: name the first share at fault, in order.
    if len(shares) < MIN_THRESHOLD:
        raise InsufficientSharesError(
            f"shamir: {len(shares)} share(s) given, at least {MIN_THRESHOLD} needed"
        )
    length = len(shares[0])
    seen: dict[int, int] = {}
    for position, share in enumerate(shares, start=1):
        if len(share) < 2:
            raise LengthError(
                f"shamir: share {position}: length {len(share)} bytes, expected at least 2"
            )
        if len(share) != length:
            raise RaggedSharesError(
                f"shamir: share {position}: length {len(share)} bytes, expected {length}"
                " like share 1"
            )
        x = share[-1]
        if x == 0:
            raise ShareIndexError(f"shamir: share {position}: index 0 is the secret's own")
        if x in seen:
            raise DuplicateShareError(
                f"shamir: share {position}: index {x} already given by share {seen[x]}"
            )
        seen[x] = position
    return tuple(seen)


def interpolate(shares: Sequence[bytes], x: int) -> bytes:
    """Evaluate at ``x`` the polynomials through the given raw shares (x = 0 is the secret)."""
    xs = _check_raw(shares)
    if not 0 <= x <= 255:
        raise ParameterError(f"shamir: x = {x} is outside the field")
    tables = _weight_tables(xs, x)
    # Each share is multiplied whole, index byte and all; that last byte is dropped at the end.
    size = len(shares[0])
    if size > NUMPY_COMBINE_FROM_BYTES:
        numpy = _numpy()
        if numpy is not None:
            return _interpolate_arrays(numpy, shares, tables)
    from_bytes = int.from_bytes
    value = 0
    for share, table in zip(shares, tables, strict=False):
        value ^= from_bytes(share if table is None else share.translate(table), "little")
    return value.to_bytes(size, "little")[:-1]


def _interpolate_arrays(
    numpy: Any, shares: Sequence[bytes], tables: tuple[bytes | None, ...]
) -> bytes:
    uint8 = numpy.uint8
    value = None
    for share, table in zip(shares, tables, strict=False):
        term = numpy.frombuffer(share if table is None else share.translate(table), uint8)
        value = term.copy() if value is None else numpy.bitwise_xor(value, term, out=value)
    assert value is not None
    result: bytes = value[:-1].tobytes()
    return result


def combine(shares: Sequence[bytes]) -> bytes:
    """Rebuild the secret from raw shares (all of them are used).

    Refuses, each with its own error naming the share: fewer than two shares,
    a share too short to hold a byte, ragged lengths, index 0, duplicate
    indices. It cannot know the threshold: with fewer than t shares it returns
    a wrong secret, which is why :mod:`securecomm.shares` records t.
    """
    return interpolate(shares, 0)


# The seed's integer API, kept as a thin layer over the byte API above.


def split_secret(secret_int: int, n: int, t: int) -> list[tuple[int, int]]:
    """Split a non-negative integer into ``n`` shares ``(x, y)``, any ``t`` rebuilding it."""
    if not isinstance(secret_int, int) or isinstance(secret_int, bool) or secret_int < 0:
        raise ParameterError("shamir: the secret must be a non-negative integer")
    length = max(1, (secret_int.bit_length() + 7) // 8)
    raw = split(secret_int.to_bytes(length, "big"), n, t)
    return [(share[-1], int.from_bytes(share[:-1], "big")) for share in raw]


def recover_secret(shares: Sequence[tuple[int, int]], t: int) -> int:
    """Rebuild the integer from at least ``t`` shares made by :func:`split_secret`."""
    if not isinstance(t, int) or t < MIN_THRESHOLD:
        raise ParameterError(f"shamir: threshold {t} is below the minimum {MIN_THRESHOLD}")
    if len(shares) < t:
        raise InsufficientSharesError(f"shamir: {len(shares)} share(s) given, threshold is {t}")
    # A y whose top bytes are zero in every share comes from a secret whose
    # same bytes are zero, so the widest y is wide enough.
    width = max(1, *((y.bit_length() + 7) // 8 for _, y in shares))
    raw = []
    for position, (x, y) in enumerate(shares, start=1):
        if not 1 <= x <= 255:
            raise ShareIndexError(f"shamir: share {position}: index {x} is out of range 1..255")
        if y < 0:
            raise ParameterError(f"shamir: share {position}: negative value")
        raw.append(y.to_bytes(width, "big") + bytes((x,)))
    return int.from_bytes(combine(raw), "big")

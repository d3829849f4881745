"""The fast paths of :mod:`securecomm.shamir`: the same shares, sooner.

:mod:`securecomm.shamir` holds the readable reference (one Horner evaluation per
byte, one Lagrange sum per byte); this module computes exactly the same bytes with
whole-secret operations on Python integers, each multiplication by a constant one
``bytes.translate`` through a table. tests/unit/test_shamir.py checks, for random
secrets and coefficients, that both give identical shares and identical
interpolations. (numpy was tried for long secrets and dropped: as a user's
``securecomm split`` sees it, a fresh process, its import costs more than it saves,
up to 16 MiB measured.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from . import gf256

__all__ = ["interpolate", "split"]


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
    return _Plan(n, odd_terms(1), tuple(pairs), in_changes)


def split(secret: bytes, coefficients: Sequence[bytes], n: int) -> list[bytes]:
    """The n raw shares of ``secret`` under ``coefficients`` (a_1 .. a_{t-1}, each as long as
    the secret): what :func:`securecomm.shamir.evaluate` gives, computed whole."""
    plan = _split_plan(n, len(coefficients) + 1)
    if len(coefficients) == 2:
        return _split_ints_3(secret, coefficients[0], coefficients[1], plan)
    return _split_ints(secret, list(coefficients), plan)


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


@lru_cache(maxsize=1024, typed=True)
def _weight_tables(weights: tuple[int, ...]) -> tuple[bytes | None, ...]:
    """The multiplication table of each weight (None where the weight is 1)."""
    return tuple(None if weight == 1 else gf256.mul_table(weight) for weight in weights)


def interpolate(shares: Sequence[bytes], weights: tuple[int, ...]) -> bytes:
    """The sum of each share times its Lagrange weight, the index byte dropped: what
    :func:`securecomm.shamir.interpolate_reference` gives, computed whole."""
    size = len(shares[0])
    from_bytes = int.from_bytes
    value = 0
    for share, table in zip(shares, _weight_tables(weights), strict=True):
        value ^= from_bytes(share if table is None else share.translate(table), "little")
    return value.to_bytes(size, "little")[:-1]

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

import os
from collections.abc import Sequence
from functools import lru_cache
from operator import itemgetter

from . import _shamir_fast, gf256
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
    "evaluate",
    "interpolate",
    "interpolate_reference",
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


def split(secret: bytes, n: int, t: int) -> list[bytes]:
    """Split ``secret`` into ``n`` raw shares, any ``t`` of which rebuild it.

    Share i (0-based) has x-coordinate i + 1 and is ``len(secret) + 1`` bytes.
    """
    check_parameters(n, t)
    if type(secret) is not bytes:
        secret = bytes(secret)
    if not secret:
        raise ParameterError("shamir: the secret is empty")
    # Coefficients a_1 .. a_{t-1}, each a byte string: one random polynomial per secret byte.
    coefficients = [os.urandom(len(secret)) for _ in range(t - 1)]
    return _shamir_fast.split(secret, coefficients, n)  # = evaluate(secret, coefficients, n)


def evaluate(secret: bytes, coefficients: Sequence[bytes], n: int) -> list[bytes]:
    """The reference split: share x (1..n) holds, for each byte i of the secret,
    y = secret[i] + a_1[i]·x + a_2[i]·x^2 + ... in GF(2^8) (Horner's rule), then x."""
    shares = []
    for x in range(1, n + 1):
        ys = bytearray()
        for i, constant in enumerate(secret):
            y = 0
            for coefficient in reversed(coefficients):
                y = gf256.mul(y, x) ^ coefficient[i]
            ys.append(gf256.mul(y, x) ^ constant)
        shares.append(bytes(ys) + bytes([x]))
    return shares


@lru_cache(maxsize=1024)
def _lagrange_weights(xs: tuple[int, ...], at: int) -> tuple[int, ...]:
    """The weight of each share's y in the interpolated value at x = ``at``:
    the product over the other shares j of (at - x_j) / (x_i - x_j)."""
    weights = []
    for i, xi in enumerate(xs):
        numerator = 1
        denominator = 1
        for j, xj in enumerate(xs):
            if i != j:
                numerator = gf256.mul(numerator, at ^ xj)
                denominator = gf256.mul(denominator, xi ^ xj)
        weights.append(gf256.div(numerator, denominator))
    return tuple(weights)


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
    return _shamir_fast.interpolate(shares, _lagrange_weights(xs, x))


def interpolate_reference(shares: Sequence[bytes], x: int) -> bytes:
    """The reference of :func:`interpolate`: for each byte position, the sum over the
    shares of y times its Lagrange weight."""
    xs = _check_raw(shares)
    weights = _lagrange_weights(xs, x)
    value = bytearray(len(shares[0]) - 1)
    for share, weight in zip(shares, weights, strict=True):
        for i in range(len(value)):
            value[i] ^= gf256.mul(share[i], weight)
    return bytes(value)


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

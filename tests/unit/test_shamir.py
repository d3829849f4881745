"""The raw Shamir layer: correctness, secrecy, refusals, and the seed's integer API."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecomm import _shamir_fast, errors, gf256, recover_secret, shamir, split_secret


@st.composite
def split_case(draw: st.DrawFn) -> tuple[bytes, int, int, list[int]]:
    secret = draw(st.binary(min_size=1, max_size=1024))
    n = draw(st.integers(min_value=2, max_value=12))
    t = draw(st.integers(min_value=2, max_value=n))
    chosen = draw(st.permutations(range(n)))[: draw(st.integers(min_value=t, max_value=n))]
    return secret, n, t, chosen


@given(split_case())
@settings(max_examples=150, deadline=None)
def test_any_t_of_n_shares_rebuild_the_secret(case: tuple[bytes, int, int, list[int]]) -> None:
    secret, n, t, chosen = case
    shares = shamir.split(secret, n, t)
    assert len(shares) == n
    assert all(len(s) == len(secret) + 1 for s in shares)
    assert [s[-1] for s in shares] == list(range(1, n + 1))
    assert shamir.combine([shares[i] for i in chosen]) == secret


def test_every_subset_of_five_works() -> None:
    secret = bytes(range(32))
    shares = shamir.split(secret, 5, 3)
    for size in (3, 4, 5):
        for subset in itertools.combinations(shares, size):
            assert shamir.combine(list(subset)) == secret


def test_t_minus_one_shares_miss_the_secret() -> None:
    secret = b"\x01" * 64
    shares = shamir.split(secret, 5, 3)
    # Two shares interpolate a line, not the degree-2 polynomial: the result is not the secret.
    assert shamir.combine(shares[:2]) != secret


def test_two_of_n_reveal_nothing_about_a_one_byte_secret_exhaustively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For t = 2 every (secret, coefficient) pair is tried: each share value arises
    from every one of the 256 secrets exactly once, so one share says nothing."""
    seen: dict[int, set[int]] = {}
    coefficient = [0]
    monkeypatch.setattr("os.urandom", lambda size: bytes([coefficient[0]]) * size)
    for secret in range(256):
        for a1 in range(256):
            coefficient[0] = a1
            y = shamir.split(bytes([secret]), 3, 2)[1][0]  # the share at x = 2
            seen.setdefault(y, set()).add(secret)
    assert len(seen) == 256
    assert all(len(secrets_) == 256 for secrets_ in seen.values())


def test_t_minus_one_of_three_fit_every_candidate_secret_exhaustively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """t = 3: for two real shares of a 1-byte secret, each of the 256 candidate secrets
    has exactly one pair of coefficients that gives those two shares, and split with
    those coefficients reproduces them."""
    real = shamir.split(b"\x2a", 5, 3)
    (y1, x1), (y2, x2) = (real[0][0], real[0][1]), (real[3][0], real[3][1])
    # q(x) = a1 x + a2 x^2 is a bijection from (a1, a2) to (q(x1), q(x2)).
    solutions: dict[tuple[int, int], tuple[int, int]] = {}
    for a1 in range(256):
        for a2 in range(256):
            point = (
                gf256.mul(a1, x1) ^ gf256.mul(a2, gf256.mul(x1, x1)),
                gf256.mul(a1, x2) ^ gf256.mul(a2, gf256.mul(x2, x2)),
            )
            assert point not in solutions
            solutions[point] = (a1, a2)
    for candidate in range(256):
        a1, a2 = solutions[(y1 ^ candidate, y2 ^ candidate)]
        stream = iter([bytes([a1]), bytes([a2])])
        monkeypatch.setattr("os.urandom", lambda size, s=stream: next(s))
        again = shamir.split(bytes([candidate]), 5, 3)
        assert again[0] == real[0] and again[3] == real[3]


@pytest.mark.parametrize(
    ("n", "t", "message"),
    [
        (5, 1, "below the minimum"),
        (5, 6, "above the number"),
        (256, 3, "at most 255"),
        (5, 0, "below"),
        (2, 3, "above"),
    ],
)
def test_impossible_parameters_are_refused(n: int, t: int, message: str) -> None:
    with pytest.raises(errors.ParameterError, match=message):
        shamir.split(b"k", n, t)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(errors.ParameterError, match="empty"):
        shamir.split(b"", 5, 3)


def test_largest_split_works() -> None:
    shares = shamir.split(b"abc", 255, 255)
    assert shamir.combine(shares) == b"abc"
    assert shares[-1][-1] == 255


def test_combine_refusals_name_the_share() -> None:
    shares = shamir.split(b"secret", 5, 3)
    with pytest.raises(errors.InsufficientSharesError):
        shamir.combine(shares[:1])
    with pytest.raises(errors.RaggedSharesError, match="share 2: length 6 bytes, expected 7"):
        shamir.combine([shares[0], shares[1][1:], shares[2]])
    with pytest.raises(errors.ShareIndexError, match="share 3: index 0"):
        shamir.combine([shares[0], shares[1], shares[2][:-1] + b"\x00"])
    with pytest.raises(
        errors.DuplicateShareError, match="share 3: index 1 already given by share 1"
    ):
        shamir.combine([shares[0], shares[1], shares[0]])
    with pytest.raises(errors.LengthError, match="share 1"):
        shamir.combine([b"\x01", b"\x02"])


def test_interpolate_reproduces_missing_shares() -> None:
    shares = shamir.split(b"0123456789", 6, 4)
    for missing in shares[4:]:
        assert shamir.interpolate(shares[:4], missing[-1]) == missing[:-1]


@given(st.integers(min_value=0, max_value=2**521), st.integers(min_value=2, max_value=7))
@settings(max_examples=60, deadline=None)
def test_seed_integer_api_round_trips(secret: int, t: int) -> None:
    shares = split_secret(secret, 7, t)
    assert all(isinstance(x, int) and isinstance(y, int) for x, y in shares)
    assert recover_secret(shares[-t:], t) == secret


def test_seed_integer_api_refusals() -> None:
    with pytest.raises(errors.ParameterError):
        split_secret(-1, 5, 3)
    with pytest.raises(errors.InsufficientSharesError):
        recover_secret(split_secret(5, 5, 3)[:2], 3)
    with pytest.raises(errors.ParameterError):
        recover_secret([], 0)
    shares = split_secret(5, 5, 3)
    with pytest.raises(errors.ShareIndexError, match="share 2: index 0"):
        recover_secret([shares[0], (0, shares[1][1]), shares[2]], 3)
    with pytest.raises(errors.ShareIndexError, match="index 256"):
        recover_secret([shares[0], (256, shares[1][1]), shares[2]], 3)


@st.composite
def polynomials(draw: st.DrawFn) -> tuple[bytes, list[bytes], int]:
    """A secret, its coefficients a_1 .. a_{t-1} and n, for every threshold path."""
    t = draw(st.integers(2, 9))
    n = draw(st.integers(t, 20)) if draw(st.booleans()) else draw(st.sampled_from([t, 255]))
    length = draw(st.integers(1, 80))
    secret = draw(st.binary(min_size=length, max_size=length))
    coefficients = [draw(st.binary(min_size=length, max_size=length)) for _ in range(t - 1)]
    return secret, coefficients, n


@given(polynomials())
def test_the_fast_split_is_the_reference(case: tuple[bytes, list[bytes], int]) -> None:
    """_shamir_fast computes exactly the shares the readable reference does."""
    secret, coefficients, n = case
    reference = shamir.evaluate(secret, coefficients, n)
    assert _shamir_fast.split(secret, coefficients, n) == reference
    t = len(coefficients) + 1
    assert shamir.combine(reference[-t:]) == secret


@given(polynomials(), st.integers(0, 255), st.randoms(use_true_random=False))
def test_the_fast_interpolation_is_the_reference(
    case: tuple[bytes, list[bytes], int], x: int, rng: random.Random
) -> None:
    secret, coefficients, n = case
    shares = rng.sample(shamir.evaluate(secret, coefficients, n), len(coefficients) + 1)
    assert shamir.interpolate(shares, x) == shamir.interpolate_reference(shares, x)


def test_the_reference_is_the_polynomial_worked_by_hand() -> None:
    # y = 0x53 + 0xCA·x over GF(2^8) with the AES polynomial: x = 1 gives 0x53 ^ 0xCA;
    # x = 2 gives 0x53 ^ xtime(0xCA) = 0x53 ^ 0x8F (0xCA << 1 = 0x194, ^ 0x11B).
    assert shamir.evaluate(b"\x53", [b"\xca"], 2) == [
        bytes([0x53 ^ 0xCA, 1]),
        bytes([0x53 ^ 0x8F, 2]),
    ]


def test_split_draws_its_coefficients_and_evaluates(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = [b"\x01\x02\x03", b"\x04\x05\x06"]
    queue = list(drawn)
    monkeypatch.setattr("os.urandom", lambda size: queue.pop(0))
    assert shamir.split(b"abc", 5, 3) == shamir.evaluate(b"abc", drawn, 5)

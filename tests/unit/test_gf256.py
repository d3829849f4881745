"""GF(2^8) against a slow bitwise reference, exhaustively."""

from __future__ import annotations

from securecomm import gf256


def reference_mul(a: int, b: int) -> int:
    """Schoolbook carry-less multiplication reduced by 0x11B, one bit at a time."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
    return product


def test_fips197_worked_example() -> None:
    # FIPS 197, section 4.2: {57} . {83} = {c1}
    assert gf256.mul(0x57, 0x83) == 0xC1


def test_mul_matches_reference_for_every_pair() -> None:
    for a in range(256):
        row = gf256.mul_table(a)
        for b in range(256):
            expected = reference_mul(a, b)
            assert gf256.mul(a, b) == expected
            assert row[b] == expected


def test_every_nonzero_element_has_an_inverse() -> None:
    for a in range(1, 256):
        assert gf256.mul(a, gf256.inverse(a)) == 1
        assert gf256.div(a, a) == 1


def test_mul_bytes_and_xor_bytes() -> None:
    data = bytes(range(256))
    assert gf256.mul_bytes(data, 0x03) == bytes(reference_mul(x, 3) for x in data)
    assert gf256.xor_bytes(b"\x0f\xf0", b"\xff\xff") == b"\xf0\x0f"

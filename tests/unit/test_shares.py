"""Share encoding: round trips, every single-byte change refused, combine's refusals."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tools import generate_vectors

from securecomm import errors, shares
from securecomm.shares import Share

SPLIT_A = bytes(range(16))
SPLIT_B = bytes(range(1, 17))


def craft(**fields: Any) -> bytes:
    """A binary share with a correct checksum over whatever fields it is given."""
    return generate_vectors.craft_share(**fields)


def test_layout_matches_the_spec() -> None:
    share = Share(SPLIT_A, 3, 2, b"\xaa\xbb")
    data = share.to_bytes()
    assert data[0] == 1
    assert data[1:17] == SPLIT_A
    assert data[17] == 3 and data[18] == 2
    assert data[19:23] == (2).to_bytes(4, "big")
    assert data[23:25] == b"\xaa\xbb"
    assert data[25:] == zlib.crc32(data[:25]).to_bytes(4, "big")
    assert share.to_text() == "securecomm-share-v1:" + base64.b64encode(data).decode()
    assert share.to_raw() == b"\xaa\xbb\x02"


@given(st.binary(min_size=1, max_size=300), st.integers(2, 9), st.data())
@settings(max_examples=80, deadline=None)
def test_split_encode_decode_combine(secret: bytes, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(2, n))
    split = shares.split(secret, n, t)
    texts = [s.to_text() for s in split]
    chosen = data.draw(st.permutations(texts))[:t]
    decoded = [Share.from_text(text) for text in chosen]
    assert shares.combine(decoded) == secret
    assert all(Share.from_bytes(s.to_bytes()) == s for s in split)


def test_every_single_byte_change_of_a_binary_share_is_refused() -> None:
    original = shares.split(bytes(range(32)), 5, 3)[1].to_bytes()
    for position in range(len(original)):
        for value in range(256):
            if value == original[position]:
                continue
            changed = bytearray(original)
            changed[position] = value
            with pytest.raises((errors.FormatError, errors.ShareError)):
                Share.from_bytes(bytes(changed))


def test_every_swap_of_two_adjacent_bytes_is_refused() -> None:
    original = shares.split(bytes(range(32)), 5, 3)[2].to_bytes()
    swaps = 0
    for position in range(len(original) - 1):
        if original[position] == original[position + 1]:
            continue
        changed = bytearray(original)
        changed[position], changed[position + 1] = changed[position + 1], changed[position]
        swaps += 1
        with pytest.raises((errors.FormatError, errors.ShareError)):
            Share.from_bytes(bytes(changed))
    assert swaps > 40


def test_every_single_character_change_of_a_text_share_is_refused() -> None:
    original = shares.split(b"a 32-byte key, or near enough...", 5, 3)[0].to_text()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_:. "
    for position in range(len(original)):
        for char in alphabet:
            if char == original[position]:
                continue
            changed = original[:position] + char + original[position + 1 :]
            with pytest.raises((errors.FormatError, errors.ShareError)) as caught:
                Share.from_text(changed, name="share 4")
            assert "share 4" in str(caught.value)


def test_decode_errors_each_have_their_own_class() -> None:
    good = craft()
    assert Share.from_bytes(good).index == 1
    with pytest.raises(errors.UnknownVersionError, match="version 2, expected 1"):
        Share.from_bytes(craft(version=2))
    with pytest.raises(errors.LengthError, match="expected at least"):
        Share.from_bytes(good[:20])
    with pytest.raises(errors.LengthError, match="for a 9-byte secret"):
        Share.from_bytes(craft(length=9))
    with pytest.raises(errors.ChecksumError):
        Share.from_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(errors.ShareIndexError, match="index 0"):
        Share.from_bytes(craft(index=0))
    with pytest.raises(errors.FieldError, match="threshold 1"):
        Share.from_bytes(craft(threshold=1))
    with pytest.raises(errors.LengthError, match="empty"):
        Share.from_bytes(b"")
    text = "securecomm-share-v1:" + base64.b64encode(good).decode()
    assert Share.from_text(text).index == 1
    with pytest.raises(errors.UnknownVersionError, match="'v2'"):
        Share.from_text(text.replace("-v1:", "-v2:"))
    with pytest.raises(errors.FormatError, match="does not start with"):
        Share.from_text(text[1:])
    with pytest.raises(errors.FormatError, match="not valid base64"):
        Share.from_text(text[:-2] + "!!")
    # "...A=" and "...B=" can decode alike (unused low bits): only one spelling is accepted.
    non_canonical = text[:-2] + chr(ord(text[-2]) + 1) + "="
    if base64.b64decode(non_canonical[len("securecomm-share-v1:") :]) == good:
        with pytest.raises(errors.NonCanonicalError):
            Share.from_text(non_canonical)


def test_non_canonical_base64_is_refused() -> None:
    data = craft(value=b"\x11" * 7)  # 35 bytes: the last base64 group has unused bits
    text = base64.b64encode(data).decode()
    assert text.endswith("=")
    last = text.rstrip("=")[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) + 1]
    spelled = text.rstrip("=")[:-1] + twin + "=" * (len(text) - len(text.rstrip("=")))
    assert base64.b64decode(spelled) == data
    with pytest.raises(errors.NonCanonicalError):
        Share.from_text("securecomm-share-v1:" + spelled)


def test_combine_refusals_name_the_share() -> None:
    a = shares.split(b"secret!", 5, 3, split_id=SPLIT_A)
    b = shares.split(b"secret!", 5, 3, split_id=SPLIT_B)
    four = shares.split(b"secret!", 5, 4, split_id=SPLIT_A)
    with pytest.raises(errors.MixedSplitError, match="share 3 \\(index 3\\) is from split"):
        shares.combine([a[0], a[1], b[2]])
    with pytest.raises(errors.MixedSplitError, match="threshold 4"):
        shares.combine([a[0], four[1], a[2]])
    with pytest.raises(errors.DuplicateShareError, match="share 3 \\(index 1\\)"):
        shares.combine([a[0], a[1], a[0]])
    with pytest.raises(errors.RaggedSharesError, match="share 2"):
        shares.combine([a[0], Share(SPLIT_A, 3, 2, b"short"), a[2]])
    with pytest.raises(
        errors.InsufficientSharesError, match="2 share\\(s\\) given, threshold is 3"
    ):
        shares.combine(a[:2])
    with pytest.raises(errors.InsufficientSharesError):
        shares.combine([])
    forged = Share(SPLIT_A, 3, 4, bytes(x ^ 1 for x in a[3].value))
    with pytest.raises(errors.InconsistentSharesError, match="share 4 \\(index 4\\)"):
        shares.combine([a[0], a[1], a[2], forged])
    assert shares.combine([a[0], a[1], a[2], a[3], a[4]]) == b"secret!"


def test_field_checks_on_construction() -> None:
    with pytest.raises(errors.LengthError):
        Share(b"short", 3, 1, b"x")
    with pytest.raises(errors.ShareIndexError, match="0 is the secret's own"):
        Share(SPLIT_A, 3, 0, b"x")
    with pytest.raises(errors.FieldError):
        Share(SPLIT_A, 1, 1, b"x")
    with pytest.raises(errors.LengthError):
        Share(SPLIT_A, 3, 1, b"")


def test_repr_hides_the_value() -> None:
    share = Share(SPLIT_A, 3, 1, b"TOPSECRET")
    assert "TOPSECRET" not in repr(share)
    assert b"TOPSECRET".hex() not in repr(share)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_binary_decoder_raises_only_its_own_errors(data: bytes) -> None:
    try:
        Share.from_bytes(data)
    except errors.SecureCommError:
        pass


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_text_decoder_raises_only_its_own_errors(text: str) -> None:
    for candidate in (text, "securecomm-share-v1:" + text):
        try:
            Share.from_text(candidate)
        except errors.SecureCommError:
            pass

"""The MITM tool's own parts: the leak detector, the field classifier, the bit flipper."""

from __future__ import annotations

import base64
import json
import os
import random
import urllib.parse

import pytest

from securecomm.testing.mitm import _flip_string, describe_json, encodings_of


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5])
def test_every_encoding_of_a_secret_is_found_at_every_alignment(offset: int) -> None:
    secret = os.urandom(32)
    spellings = encodings_of(secret)
    prefix = os.urandom(offset)
    carriers = [
        prefix + secret,
        (prefix + secret).hex().encode(),
        (prefix + secret).hex().upper().encode(),
        base64.b64encode(prefix + secret),
        base64.urlsafe_b64encode(prefix + secret).rstrip(b"="),
        urllib.parse.quote_from_bytes(prefix + secret).encode(),
    ]
    for carrier in carriers:
        framed = b'{"x":"' + carrier + b'"}'
        assert any(spelling in framed for spelling in spellings), carrier


def test_unrelated_bytes_raise_no_alarm() -> None:
    secret = os.urandom(32)
    spellings = encodings_of(secret)
    for _ in range(200):
        noise = base64.b64encode(os.urandom(256)) + os.urandom(256).hex().encode()
        assert not any(spelling in noise for spelling in spellings)


def test_text_secret_spellings() -> None:
    spellings = encodings_of(b"attack at dawn")
    assert b"attack at dawn" in spellings
    assert b"attack%20at%20dawn" in spellings
    assert b"61747461636b206174206461776e" in spellings


def test_describe_json_gives_the_seed_summary_and_classifies_fields() -> None:
    body = json.dumps(
        {
            "v": 1,
            "header": {
                "n": 5,
                "threshold": 3,
                "id": "ab" * 16,
                "sender": {"name": "alice", "sign": base64.b64encode(bytes(32)).decode()},
            },
            "ciphertext": "4teyEx+eeJT6BTsZAAAAAAAA",
            "nonce": "AAAAAAAAAAAAAAAA",
            "tag": "AAAAAAAAAAAAAAAAAAAAAA==",
            "signature": "x" * 88,
        }
    ).encode()
    lines = describe_json(body)
    assert "Ciphertext: 4teyEx+eeJT6BTsZ..." in lines
    assert "5 shares, threshold 3" in lines
    assert any(line.startswith("Nonce: ") for line in lines)
    assert any(line.startswith("Tag: ") for line in lines)
    joined = "\n".join(lines)
    assert "header.sender.sign: public key:" in joined
    assert "header.id: identifier:" in joined
    assert "header.sender.name: readable text: 'alice'" in joined
    assert "signature: signature:" in joined
    assert describe_json(b"not json") == ["(not JSON: 8 bytes)"]


def test_flip_string_keeps_the_spelling_valid_and_changes_one_bit() -> None:
    rng = random.Random(1)
    raw = os.urandom(48)
    text = base64.b64encode(raw).decode()
    flipped = base64.b64decode(_flip_string(text, rng))
    assert sum(bin(a ^ b).count("1") for a, b in zip(raw, flipped, strict=True)) == 1
    hexed = "0123456789abcdef" * 2
    changed = _flip_string(hexed, rng)
    assert len(changed) == 32 and changed != hexed
    assert sum(a != b for a, b in zip(hexed, changed, strict=True)) == 1
    assert all(c in "0123456789abcdef" for c in changed)

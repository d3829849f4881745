"""AES-256-GCM layer: NIST SP 800-38D vectors both ways, tamper refusal, the seed's API."""

from __future__ import annotations

import pytest

from securecomm import aead, aes_decrypt, aes_encrypt, errors

from ._vectors import load

NIST = load("nist-gcm-aes256.json")["vectors"]


@pytest.mark.parametrize("vector", NIST, ids=[v["description"][:60] for v in NIST])
def test_nist_vectors(vector: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    key, iv = bytes.fromhex(vector["key"]), bytes.fromhex(vector["iv"])
    aad, pt = bytes.fromhex(vector["aad"]), bytes.fromhex(vector["plaintext"])
    sealed = bytes.fromhex(vector["ciphertext"]) + bytes.fromhex(vector["tag"])
    if vector["expect"] == "fail":
        with pytest.raises(errors.DecryptionError):
            aead.open(key, iv, sealed, aad)
        return
    assert aead.open(key, iv, sealed, aad) == pt
    # Encrypt direction: seal draws its nonce from os.urandom; give it the vector's IV.
    monkeypatch.setattr("os.urandom", lambda size: iv)
    assert aead.seal(key, pt, aad) == (iv, sealed)


def test_vectors_cover_what_they_must() -> None:
    ok = [v for v in NIST if v["expect"] == "ok"]
    assert any(v["plaintext"] == "" and v["aad"] == "" for v in ok)
    assert any(v["plaintext"] and v["aad"] for v in ok)
    assert any(v["plaintext"] and not v["aad"] for v in ok)
    assert any(v["expect"] == "fail" for v in NIST)
    assert all(len(v["iv"]) == 24 and len(v["tag"]) == 32 for v in NIST)


def test_every_bit_flip_is_refused_with_one_opaque_error() -> None:
    key = aead.generate_key()
    aad = b"header"
    nonce, sealed = aead.seal(key, b"attack at dawn", aad)
    messages = set()
    for name, buffer in (("nonce", nonce), ("sealed", sealed), ("aad", aad), ("key", key)):
        for bit in range(len(buffer) * 8):
            changed = bytearray(buffer)
            changed[bit // 8] ^= 1 << (bit % 8)
            args = {"key": key, "nonce": nonce, "ciphertext_and_tag": sealed, "aad": aad}
            args[{"sealed": "ciphertext_and_tag"}.get(name, name)] = bytes(changed)
            with pytest.raises(errors.DecryptionError) as caught:
                aead.open(**args)
            messages.add(str(caught.value))
    assert messages == {"decryption failed: wrong key or altered data"}
    assert aead.open(key, nonce, sealed, aad) == b"attack at dawn"


def test_truncation_and_wrong_nonce_length_are_refused() -> None:
    key = aead.generate_key()
    nonce, sealed = aead.seal(key, b"x")
    for cut in range(len(sealed)):
        with pytest.raises(errors.DecryptionError):
            aead.open(key, nonce, sealed[:cut])
    for size in (0, 8, 11, 13, 16):
        with pytest.raises(errors.DecryptionError):
            aead.open(key, bytes(size), sealed)


def test_nonces_are_fresh_and_twelve_bytes() -> None:
    key = aead.generate_key()
    nonces = {aead.seal(key, b"same")[0] for _ in range(2000)}
    assert len(nonces) == 2000
    assert {len(n) for n in nonces} == {aead.NONCE_LENGTH_BYTES}


def test_key_length_is_checked() -> None:
    for size in (0, 16, 24, 31, 33):
        with pytest.raises(errors.LengthError, match=f"key length {size} bytes, expected 32"):
            aead.seal(bytes(size), b"x")


def test_seed_api_round_trip() -> None:
    key = aead.generate_key()
    ciphertext, nonce, tag = aes_encrypt("héllo", key)
    assert len(nonce) == 12 and len(tag) == 16 and len(ciphertext) == len("héllo".encode())
    assert aes_decrypt(ciphertext, key, nonce, tag) == "héllo".encode()
    with pytest.raises(errors.DecryptionError):
        aes_decrypt(ciphertext, key, nonce, tag[:-1])
    with pytest.raises(errors.DecryptionError):
        aes_decrypt(ciphertext, aead.generate_key(), nonce, tag)

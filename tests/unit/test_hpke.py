"""HPKE sealing: RFC 9180 vectors for our suite, and context binding."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securecomm import errors, hpke

from ._vectors import load

RFC = load("hpke-rfc9180.json")["vectors"]


@pytest.mark.parametrize("vector", RFC, ids=[v["description"][:50] for v in RFC])
def test_rfc9180_vector(vector: dict[str, object]) -> None:
    assert (vector["mode"], vector["kem_id"], vector["kdf_id"], vector["aead_id"]) == (0, 32, 1, 2)

    def h(name: str) -> bytes:
        value = vector[name]
        assert isinstance(value, str)
        return bytes.fromhex(value)

    sk_r = X25519PrivateKey.from_private_bytes(h("skRm"))
    assert sk_r.public_key().public_bytes_raw() == h("pkRm")
    key, base_nonce, info = h("key"), h("base_nonce"), h("info")
    # The published ciphertexts, under the published key schedule (nonce = base_nonce ^ seq).
    encryptions = vector["encryptions"]
    assert isinstance(encryptions, list)
    for seq, enc in enumerate(encryptions):
        nonce = (int.from_bytes(base_nonce, "big") ^ seq).to_bytes(12, "big")
        assert bytes.fromhex(enc["nonce"]) == nonce
        plaintext = AESGCM(key).decrypt(
            nonce, bytes.fromhex(enc["ciphertext"]), bytes.fromhex(enc["aad"])
        )
        assert plaintext == bytes.fromhex(enc["plaintext"])
    # Our open derives that same key and base nonce from enc, skR and info (KEM + key
    # schedule of the suite). Its API has no AAD, so seal sequence 0 with an empty one.
    probe = AESGCM(key).encrypt(base_nonce, b"securecomm probe", b"")
    assert hpke.open(h("enc") + probe, sk_r, info) == b"securecomm probe"
    with pytest.raises(errors.DecryptionError):
        hpke.open(h("enc") + probe, sk_r, info + b"x")


def test_seal_open_round_trip_and_size() -> None:
    key = X25519PrivateKey.generate()
    info = hpke.info("deposit", {"message_id": "00" * 16, "custodian": "alpha"})
    sealed = hpke.seal(b"share bytes", key.public_key(), info)
    assert len(sealed) == len(b"share bytes") + hpke.OVERHEAD_BYTES
    assert hpke.open(sealed, key, info) == b"share bytes"
    assert hpke.seal(b"share bytes", key.public_key(), info) != sealed  # fresh ephemeral key


def test_context_binding() -> None:
    key = X25519PrivateKey.generate()
    info = hpke.info("release", {"message_id": "ab" * 16, "custodian": "alpha", "to": "bob"})
    sealed = hpke.seal(b"share", key.public_key(), info)
    others = [
        hpke.info("deposit", {"message_id": "ab" * 16, "custodian": "alpha", "to": "bob"}),
        hpke.info("release", {"message_id": "ac" * 16, "custodian": "alpha", "to": "bob"}),
        hpke.info("release", {"message_id": "ab" * 16, "custodian": "bravo", "to": "bob"}),
        hpke.info("release", {"message_id": "ab" * 16, "custodian": "alpha", "to": "eve"}),
    ]
    for other in others:
        with pytest.raises(errors.DecryptionError):
            hpke.open(sealed, key, other)
    with pytest.raises(errors.DecryptionError):
        hpke.open(sealed, X25519PrivateKey.generate(), info)


def test_every_bit_flip_and_truncation_is_refused() -> None:
    key = X25519PrivateKey.generate()
    info = hpke.info("deposit", {})
    sealed = hpke.seal(b"0123456789abcdef", key.public_key(), info)
    for bit in range(len(sealed) * 8):
        changed = bytearray(sealed)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(errors.DecryptionError):
            hpke.open(bytes(changed), key, info)
    for cut in range(len(sealed)):
        with pytest.raises(errors.DecryptionError):
            hpke.open(sealed[:cut], key, info)


def test_unknown_purpose_is_refused() -> None:
    for purpose in ("other", "test", "Deposit"):
        with pytest.raises(errors.FieldError):
            hpke.info(purpose, {})


def test_an_unusable_recipient_key_is_refused_with_our_error() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    zero = X25519PublicKey.from_public_bytes(bytes(32))
    with pytest.raises(errors.IdentityError, match="not usable"):
        hpke.seal(b"share", zero, hpke.info("deposit", {}))

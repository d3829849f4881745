"""Identities: key files, passphrases, fingerprints, signatures."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from securecomm import errors
from securecomm._encoding import b64encode
from securecomm.identity import (
    Identity,
    PublicIdentity,
    check_name,
    format_fingerprint,
    load_public,
    new_name_refusal,
    public_file,
)


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate("alice")


def test_plain_key_file_round_trip(alice: Identity, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    alice.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("securecomm-identity: alice\n")
    assert text.count("-----BEGIN PRIVATE KEY-----") == 2
    loaded = Identity.load(path)
    assert loaded.public.fingerprint == alice.public.fingerprint
    assert loaded.name == "alice"


def test_encrypted_key_file(alice: Identity, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    alice.save(path, b"correct horse battery staple")
    text = path.read_text()
    assert text.count("-----BEGIN ENCRYPTED PRIVATE KEY-----") == 2
    assert Identity.load(path, b"correct horse battery staple").public == alice.public
    with pytest.raises(errors.IdentityError, match="wrong passphrase") as caught:
        Identity.load(path, b"wrong")
    assert "wrong" not in str(caught.value).replace("wrong passphrase", "")
    with pytest.raises(errors.IdentityError, match="a passphrase is needed"):
        Identity.load(path)
    with pytest.raises(errors.IdentityError, match="empty"):
        alice.save(tmp_path / "x.key", b"")


def test_encrypted_blocks_use_pbes2_with_600k_iterations(alice: Identity, tmp_path: Path) -> None:
    """The standard tool reads our wrapper and reports the parameters we claim."""
    pem = alice.to_pem(b"pw").decode()
    block = pem[
        pem.index("-----BEGIN") : pem.index("-----END") + len("-----END ENCRYPTED PRIVATE KEY-----")
    ]
    (tmp_path / "one.pem").write_text(block + "\n")
    try:
        parsed = subprocess.run(
            ["openssl", "asn1parse", "-in", str(tmp_path / "one.pem")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except FileNotFoundError:
        pytest.fail("openssl is needed to check the key file format")
    assert "PBES2" in parsed and "PBKDF2" in parsed and "hmacWithSHA256" in parsed
    assert "aes-256-cbc" in parsed
    assert ":0927C0" in parsed  # 600000


def test_a_public_file_given_for_a_key_file_is_named_so(alice: Identity) -> None:
    """The .pub beside alice.key, picked for it, said only "does not start with ..."."""
    with pytest.raises(errors.IdentityError) as refused:
        Identity.from_pem(public_file(alice.public))
    said = str(refused.value)
    assert "public key file (alice.pub), which holds no private key" in said, said
    assert "alice.key" in said


def test_a_key_file_given_for_a_public_file_is_named_so(alice: Identity, tmp_path: Path) -> None:
    """alice.key given to `decrypt --sender` said "alice.key: not JSON"; it names the .pub
    to give instead, and nothing of the key file but its name line."""
    path = tmp_path / "alice.key"
    path.write_bytes(alice.to_pem())
    with pytest.raises(errors.IdentityError) as refused:
        load_public(path)
    said = str(refused.value)
    assert "private key file (alice.key), not a public one: give alice.pub" in said, said
    assert "PRIVATE KEY" not in said and "-----" not in said


def test_damaged_key_files_are_refused(alice: Identity) -> None:
    pem = alice.to_pem()
    with pytest.raises(errors.IdentityError, match="does not start with"):
        Identity.from_pem(pem[5:])
    with pytest.raises(errors.IdentityError, match="1 private key block"):
        Identity.from_pem(pem[: pem.index(b"-----BEGIN", 40)])
    swapped_name = pem.replace(b"alice", b"Bad Name", 1)
    with pytest.raises(errors.FieldError):
        Identity.from_pem(swapped_name)
    blocks = pem.split(b"-----BEGIN")
    reversed_keys = blocks[0] + b"-----BEGIN" + blocks[2] + b"-----BEGIN" + blocks[1]
    with pytest.raises(errors.IdentityError, match="expected an Ed25519 key, then an X25519"):
        Identity.from_pem(reversed_keys)
    with pytest.raises(errors.IdentityError):
        Identity.load("/nonexistent/alice.key")
    mismatched = pem.replace(
        b"-----END PRIVATE KEY-----", b"-----END ENCRYPTED PRIVATE KEY-----", 1
    )
    with pytest.raises(errors.IdentityError, match="1 private key block"):
        Identity.from_pem(mismatched)


def test_mixed_or_unexpected_encryption_is_refused(alice: Identity) -> None:
    plain, encrypted = alice.to_pem(), alice.to_pem(b"pw", iterations=1000)
    first_plain = plain[: plain.index(b"-----BEGIN", 40)]
    second_encrypted = encrypted[encrypted.index(b"-----BEGIN", 40) :]
    with pytest.raises(errors.IdentityError, match="one key is encrypted and one is not"):
        Identity.from_pem(first_plain + second_encrypted, b"pw")
    with pytest.raises(errors.IdentityError, match="not encrypted, yet a passphrase"):
        Identity.from_pem(plain, b"pw")
    assert Identity.from_pem(encrypted, b"pw").public == alice.public


def test_fingerprint(alice: Identity) -> None:
    bob = Identity.generate("bob")
    assert len(alice.public.fingerprint) == 32
    assert alice.public.fingerprint != bob.public.fingerprint
    short = alice.public.short_fingerprint()
    assert len(short.split(" ")) == 8 and all(len(g) == 4 for g in short.split(" "))
    assert format_fingerprint(bytes(range(32))) == "0001 0203 0405 0607 0809 0a0b 0c0d 0e0f"
    # The name is not part of the fingerprint: the keys are.
    renamed = PublicIdentity("other", alice.public.signing_key, alice.public.kem_key)
    assert renamed.fingerprint == alice.public.fingerprint


def test_signatures_bind_purpose_and_content(alice: Identity) -> None:
    obj = {"message": "hi", "n": 5}
    signature = alice.sign("envelope", obj)
    alice.public.verify(signature, "envelope", obj)
    with pytest.raises(errors.SignatureError, match="alice"):
        alice.public.verify(signature, "receipt", obj)
    with pytest.raises(errors.SignatureError):
        alice.public.verify(signature, "envelope", {"message": "hi", "n": 6})
    with pytest.raises(errors.SignatureError):
        Identity.generate("alice").public.verify(signature, "envelope", obj)
    with pytest.raises(errors.LengthError):
        alice.public.verify(signature[:-1], "envelope", obj)
    with pytest.raises(errors.FieldError):
        alice.sign("bad purpose\n", obj)


def test_public_json_round_trip_and_refusals(alice: Identity) -> None:
    doc = alice.public.to_json()
    assert PublicIdentity.from_json(doc) == alice.public
    cases = [
        ({**doc, "v": 2}, errors.UnknownVersionError),
        ({**doc, "extra": 1}, errors.FieldError),
        ({k: v for k, v in doc.items() if k != "kem"}, errors.FieldError),
        ({**doc, "name": "Alice"}, errors.FieldError),
        ({**doc, "sign": doc["sign"][:-4]}, errors.LengthError),
        ({**doc, "kem": "not base64!"}, errors.FormatError),
        ({**doc, "kem": b64encode(bytes(33))}, errors.LengthError),
        ("not an object", errors.FieldError),
    ]
    for value, error in cases:
        with pytest.raises(error):
            PublicIdentity.from_json(value)


@pytest.mark.parametrize("name", ["", "Alice", "-x", "a b", "a" * 65, "é", "a/b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(errors.FieldError):
        Identity.generate(name)


@pytest.mark.parametrize(
    ("name", "taken", "refused"),
    [
        ("bob", {"bob", "alice"}, None),  # its own name: registering again is no look-alike
        ("bobby", {"bob"}, None),
        ("alpha-operator", {"alpha"}, None),
        ("bob.", set(), "ends in '.'"),
        ("bob-", set(), "ends in '-'"),
        ("bob_", set(), "ends in '_'"),
        ("b.ob", {"bob"}, "'b.ob' looks like 'bob'"),
        ("bob", {"b-ob"}, "'bob' looks like 'b-ob'"),
        ("a_l-p.ha", {"alpha"}, "looks like 'alpha'"),
    ],
)
def test_a_new_name_is_refused_if_it_ends_in_a_separator_or_looks_like_one_taken(
    name: str, taken: set[str], refused: str | None
) -> None:
    """Held to new registrations only: check_name still takes every one of these."""
    assert check_name(name) == name
    said = new_name_refusal(name, taken)
    assert said is None if refused is None else said is not None and refused in said, said


def test_repr_shows_no_private_key(alice: Identity) -> None:
    text = repr(alice)
    assert "alice" in text
    for key in (alice._signing_key, alice._kem_key):
        raw = key.private_bytes_raw()
        assert raw.hex() not in text and b64encode(raw)[:16] not in text

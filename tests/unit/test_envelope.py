"""The envelope: a full seal and open, every alteration refused, every MUST-reject rule."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securecomm import canonical, errors
from securecomm import envelope as envelope_mod
from securecomm._encoding import b64decode, b64encode
from securecomm.envelope import (
    Draft,
    Envelope,
    Policy,
    Receipt,
    _check_commitment,
    key_commitment,
    prepare,
    share_digest,
)
from securecomm.identity import Identity
from securecomm.shares import Share

NAMES = ["alpha", "bravo", "charlie", "delta", "echo"]


class World:
    def __init__(self) -> None:
        self.alice = Identity.generate("alice")
        self.bob = Identity.generate("bob")
        self.custodians = [Identity.generate(name) for name in NAMES]
        self.keys = {c.name: c.public for c in self.custodians}
        self.draft = self.make_draft(b"the launch code is 0000")
        self.envelope = self.finish(self.draft)

    def make_draft(self, message: bytes, **kwargs: Any) -> Draft:
        return prepare(
            message,
            sender=self.alice.public,
            recipients=[self.bob.public],
            custodians=[(c.name, c.public.fingerprint) for c in self.custodians],
            threshold=3,
            policy=Policy(expires=2_000_000_000, max_releases=1),
            **kwargs,
        )

    def finish(self, draft: Draft) -> Envelope:
        receipts = [
            Receipt.issue(
                c,
                i + 1,
                draft.header.message_id,
                f"ref-{c.name}",
                draft.header.custodians[i].share_digest,
            )
            for i, c in enumerate(self.custodians)
        ]
        return draft.finish(self.alice, receipts)

    def released(self, *indices: int) -> dict[str, Share]:
        return {NAMES[i]: self.draft.shares[i] for i in indices}


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_any_three_custodians_open_it(world: World) -> None:
    data = world.envelope.to_bytes()
    envelope = Envelope.from_bytes(data)
    assert envelope == world.envelope
    envelope.verify(world.alice.public, world.keys)
    for chosen in itertools.combinations(range(5), 3):
        assert envelope.open(world.released(*chosen)) == b"the launch code is 0000"
    assert envelope.header.is_recipient(world.bob.public)
    assert not envelope.header.is_recipient(world.alice.public)


def test_the_envelope_holds_no_key_and_no_share(world: World) -> None:
    data = world.envelope.to_bytes()
    secrets_ = [s.value for s in world.draft.shares] + [s.to_bytes() for s in world.draft.shares]
    key = world.envelope.recover_key(world.released(0, 1, 2))
    for secret in [key, *secrets_, b"the launch code"]:
        for spelling in (secret, secret.hex().encode(), b64encode(secret).encode()):
            assert spelling not in data


def test_fewer_than_t_shares_are_refused(world: World) -> None:
    with pytest.raises(errors.InsufficientSharesError, match="2 share\\(s\\), threshold is 3"):
        world.envelope.open(world.released(0, 4))


def test_a_wrong_share_is_blamed_on_its_custodian(world: World) -> None:
    released = world.released(0, 1, 2)
    bad = released["bravo"]
    released["bravo"] = replace(bad, value=bytes([bad.value[0] ^ 1]) + bad.value[1:])
    with pytest.raises(errors.ShareDigestError, match="custodian 'bravo'"):
        world.envelope.open(released)
    # A genuine share handed over as another custodian's is caught too.
    swapped = {
        "alpha": world.draft.shares[1],
        "bravo": world.draft.shares[0],
        "charlie": world.draft.shares[2],
    }
    with pytest.raises(errors.ShareDigestError, match="custodian 'alpha'"):
        world.envelope.open(swapped)
    other = world.make_draft(b"another message")
    with pytest.raises(errors.ShareDigestError, match="custodian 'charlie'"):
        world.envelope.open({**world.released(0, 1), "charlie": other.shares[2]})


def test_key_commitment_refuses_a_key_that_is_not_the_committed_one(world: World) -> None:
    header = world.envelope.header
    key = world.envelope.recover_key(world.released(2, 3, 4))
    assert key_commitment(key, header.message_id) == header.key_commitment
    for wrong in (bytes(32), key[:-1] + bytes([key[-1] ^ 1])):
        with pytest.raises(errors.KeyCommitmentError):
            _check_commitment(wrong, header.message_id, header.key_commitment)
    with pytest.raises(errors.KeyCommitmentError):
        _check_commitment(key, bytes(16), header.key_commitment)


def _flip_each_bit(
    field: bytes, rebuild: Callable[[bytes], Envelope], check: Callable[[Envelope], object]
) -> int:
    refused = 0
    for bit in range(len(field) * 8):
        changed = bytearray(field)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(errors.SecureCommError):
            check(rebuild(bytes(changed)))
        refused += 1
    return refused


def test_every_bit_flip_in_ciphertext_nonce_tag_is_refused(world: World) -> None:
    env = world.envelope
    shares = world.released(0, 1, 2)
    for name in ("ciphertext", "nonce", "tag"):
        value = getattr(env, name)

        def rebuild(changed: bytes, name: str = name) -> Envelope:
            fields = {"nonce": env.nonce, "ciphertext": env.ciphertext, "tag": env.tag}
            fields[name] = changed
            return Envelope(env.header, receipts=env.receipts, signature=env.signature, **fields)

        # Without the signature check, AES-GCM alone refuses each flip...
        def open_only(e: Envelope) -> bytes:
            with pytest.raises(errors.DecryptionError):
                e.open(shares)
            raise errors.DecryptionError()

        assert _flip_each_bit(value, rebuild, open_only) == len(value) * 8
        # ...and the sender's signature refuses it before any share is asked for.
        _flip_each_bit(value, rebuild, lambda e: e.verify(world.alice.public))


def test_every_bit_flip_in_the_header_and_key_commitment_is_refused(world: World) -> None:
    """Flip every bit of the header's canonical bytes: each either stops decoding, fails
    the signature, or (with the signature skipped) fails to decrypt."""
    env = world.envelope
    aad = env.header.aad()
    shares = world.released(0, 1, 2)
    decoded_variants = 0
    for bit in range(len(aad) * 8):
        changed = bytearray(aad)
        changed[bit // 8] ^= 1 << (bit % 8)
        try:
            header_json = canonical.loads(bytes(changed))
            doc = {**env.to_json(), "header": header_json}
            variant = Envelope.from_json(doc)
        except errors.SecureCommError:
            continue
        decoded_variants += 1
        with pytest.raises(errors.SignatureError):
            variant.verify()
        with pytest.raises(errors.SecureCommError):
            variant.open({k: v for k, v in shares.items()})
    assert decoded_variants > 100  # many flips land in base64/hex text and still decode
    commitment = env.header.key_commitment
    for bit in range(len(commitment) * 8):
        changed = bytearray(commitment)
        changed[bit // 8] ^= 1 << (bit % 8)
        variant = replace(env, header=replace(env.header, key_commitment=bytes(changed)))
        with pytest.raises(errors.KeyCommitmentError):
            variant.open(shares)
        with pytest.raises(errors.SignatureError):
            variant.verify()


def test_pinned_sender_and_custodian_keys(world: World) -> None:
    mallory = Identity.generate("alice")
    with pytest.raises(errors.SignatureError, match="is not the expected 'alice'"):
        world.envelope.verify(mallory.public)
    impostor = {**world.keys, "charlie": Identity.generate("charlie").public}
    with pytest.raises(errors.SignatureError, match="charlie"):
        world.envelope.verify(world.alice.public, impostor)
    # A forged envelope signed by mallory under alice's name verifies only against itself.
    forged = world.make_draft(b"x")
    forged_env = replace(forged, header=replace(forged.header, sender=mallory.public))
    with pytest.raises(errors.SignatureError):
        forged_env.finish(world.alice)


def test_receipt_signatures_are_checked(world: World) -> None:
    env = world.envelope
    receipt = env.receipts[2]
    bad = replace(receipt, signature=bytes(64))
    receipts = (*env.receipts[:2], bad, *env.receipts[3:])
    resigned = Envelope(env.header, env.nonce, env.ciphertext, env.tag, receipts, b"")
    resigned = replace(resigned, signature=world.alice.sign("envelope", resigned._signed_body()))
    resigned.verify(world.alice.public)  # without custodian keys, receipts are not checked
    with pytest.raises(errors.SignatureError, match="receipt"):
        resigned.verify(world.alice.public, world.keys)
    with pytest.raises(errors.SignatureError):
        receipt.verify(world.keys["alpha"])


def _mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    target = doc
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


_DELETE = object()


def _reject_cases(env: Envelope) -> list[tuple[str, Any, type[Exception], str]]:
    doc = env.to_json()
    header = doc["header"]
    return [
        ("v", 2, errors.UnknownVersionError, "envelope.v: version 2"),
        ("header.v", 0, errors.UnknownVersionError, "envelope.header.v"),
        ("header.v", True, errors.UnknownVersionError, "envelope.header.v: version True"),
        ("header.sender.v", True, errors.UnknownVersionError, "envelope.header.sender"),
        ("receipts.0.v", 2, errors.UnknownVersionError, "envelope.receipts[0].v"),
        ("receipts", [], errors.FieldError, "0 receipt(s), expected 5"),
        ("header.custodians.2.fingerprint", None, errors.FieldError, "every custodian"),
        (
            "nonce",
            b64encode(bytes(16)),
            errors.LengthError,
            "envelope.nonce: length 16 bytes, expected 12",
        ),
        ("tag", b64encode(bytes(15)), errors.LengthError, "envelope.tag: length 15"),
        ("ciphertext", "@@@", errors.FormatError, "envelope.ciphertext: not valid base64"),
        ("signature", b64encode(bytes(63)), errors.LengthError, "envelope.signature"),
        ("signature", _DELETE, errors.FieldError, "missing field(s) ['signature']"),
        ("extra", 1, errors.FieldError, "unexpected field(s) ['extra']"),
        ("header.id", "XYZ", errors.FieldError, "envelope.header.id: expected 32 hex digits"),
        ("header.threshold", 6, errors.FieldError, "threshold: 6 is above n = 5"),
        ("header.threshold", 1, errors.FieldError, "threshold: 1 is outside 2..255"),
        ("header.threshold", "3", errors.FieldError, "expected an integer"),
        ("header.threshold", True, errors.FieldError, "expected an integer"),
        ("header.n", 4, errors.FieldError, "custodians: 5 item(s), expected exactly 4"),
        (
            "header.custodians.1.name",
            "alpha",
            errors.FieldError,
            "custodians[1]: name 'alpha' appears twice",
        ),
        (
            "header.custodians.0.share_digest",
            b64encode(bytes(31)),
            errors.LengthError,
            "custodians[0].share_digest: length 31 bytes, expected 32",
        ),
        ("header.custodians.0.fingerprint", "ab", errors.FieldError, "fingerprint"),
        ("header.recipients", [], errors.FieldError, "recipients: 0 item(s)"),
        ("header.recipients", header["recipients"] * 2, errors.FieldError, "appears twice"),
        (
            "header.recipients",
            [header["recipients"][0], {**header["recipients"][0], "name": "bob-work"}],
            errors.FieldError,
            "recipients[1]: fingerprint",
        ),
        (
            "header.custodians.1.fingerprint",
            header["custodians"][0]["fingerprint"],
            errors.FieldError,
            "custodians[1]: fingerprint",
        ),
        ("header.sender.v", 9, errors.UnknownVersionError, "envelope.header.sender"),
        ("header.policy.not_before", 2_000_000_001, errors.FieldError, "not after"),
        ("header.policy.max_releases", 0, errors.FieldError, "max_releases"),
        ("header.policy.require_approval", "yes", errors.FieldError, "require_approval"),
        ("header.created", -1, errors.FieldError, "created"),
        ("header.key_commitment", b64encode(bytes(8)), errors.LengthError, "key_commitment"),
        (
            "receipts",
            doc["receipts"][:1],
            errors.FieldError,
            "1 receipt(s), expected 5 (one per custodian)",
        ),
        ("receipts.1", doc["receipts"][2], errors.FieldError, "receipts[1]: receipt of 'charlie'"),
        ("receipts.0.message_id", "00" * 16, errors.FieldError, "not this envelope's id"),
        (
            "receipts.0.share_digest",
            doc["receipts"][1]["share_digest"],
            errors.FieldError,
            "differs from the header",
        ),
        ("receipts.0.ref", "../../etc", errors.FieldError, "ref"),
    ]


def test_each_must_reject_rule_has_its_own_error(world: World) -> None:
    doc = world.envelope.to_json()
    for path, value, error, message in _reject_cases(world.envelope):
        mutated = _mutate(doc, path, value)
        with pytest.raises(error) as caught:
            Envelope.from_bytes(canonical.dumps(mutated))
        assert message in str(caught.value), (path, str(caught.value))


def test_version_is_checked_before_the_fields(world: World) -> None:
    """A later version may add fields: it gets the version error, not a field error."""
    doc = world.envelope.to_json()
    for path in ("header", "receipts.0"):
        future = _mutate(_mutate(doc, f"{path}.v", 2), f"{path}.new_field", 1)
        with pytest.raises(errors.UnknownVersionError):
            Envelope.from_bytes(canonical.dumps(future))


def test_recipient_check(world: World) -> None:
    world.envelope.verify(world.alice.public, world.keys, recipient=world.bob.public)
    with pytest.raises(errors.NotRecipientError, match="carol"):
        world.envelope.verify(recipient=Identity.generate("carol").public)
    # Same name, other keys: still not the recipient.
    with pytest.raises(errors.NotRecipientError):
        world.envelope.verify(recipient=Identity.generate("bob").public)


def test_policy_window_boundaries() -> None:
    policy = Policy(not_before=100, expires=200)
    assert not policy.allows_release_at(99)
    assert policy.allows_release_at(100)
    assert policy.allows_release_at(199)
    assert not policy.allows_release_at(200)
    assert Policy().allows_release_at(0)
    with pytest.raises(errors.FieldError, match="policy: expires"):
        Policy(not_before=5, expires=5)


def test_non_canonical_bytes_are_refused(world: World) -> None:
    data = world.envelope.to_bytes()
    with pytest.raises(errors.NonCanonicalError):
        Envelope.from_bytes(json.dumps(json.loads(data), indent=1).encode())
    with pytest.raises(errors.FormatError):
        Envelope.from_bytes(data[:-1])


def test_offline_custodians_without_receipts(world: World) -> None:
    offline = prepare(
        b"x",
        sender=world.alice.public,
        recipients=[world.bob.public],
        custodians=[("share-1", None), ("share-2", None)],
        threshold=2,
    )
    with pytest.raises(errors.FieldError, match="expected 0"):
        offline.finish(world.alice, world.finish(world.draft).receipts[:2])
    draft = prepare(
        b"offline",
        sender=world.alice.public,
        recipients=[world.alice.public],
        custodians=[(f"share-{i}", None) for i in range(1, 4)],
        threshold=2,
    )
    env = Envelope.from_bytes(draft.finish(world.alice).to_bytes())
    env.verify(world.alice.public)
    assert env.receipts == ()
    assert env.open({"share-3": draft.shares[2], "share-1": draft.shares[0]}) == b"offline"


def test_share_digest_binds_message_and_custodian(world: World) -> None:
    share = world.draft.shares[0]
    mid = world.envelope.header.message_id
    assert share_digest(mid, "alpha", share) != share_digest(mid, "bravo", share)
    assert share_digest(mid, "alpha", share) != share_digest(bytes(16), "alpha", share)
    assert b64decode(
        world.envelope.to_json()["header"]["custodians"][0]["share_digest"], field="x"
    ) == share_digest(mid, "alpha", share)


def test_prepare_refusals(world: World) -> None:
    with pytest.raises(errors.ParameterError):
        prepare(
            b"x",
            sender=world.alice.public,
            recipients=[world.bob.public],
            custodians=[("a", None), ("b", None)],
            threshold=3,
        )
    with pytest.raises(errors.FieldError):
        prepare(
            b"x",
            sender=world.alice.public,
            recipients=[],
            custodians=[("a", None), ("b", None)],
            threshold=2,
        )
    with pytest.raises(errors.FieldError, match="appears twice"):
        prepare(
            b"x",
            sender=world.alice.public,
            recipients=[world.bob.public],
            custodians=[("a", None), ("a", None)],
            threshold=2,
        )


def test_draft_repr_hides_shares(world: World) -> None:
    text = repr(world.draft)
    for share in world.draft.shares:
        assert share.value.hex() not in text and b64encode(share.value) not in text


# Named payload (spec 7.10): the file name travels encrypted, and a reader refuses a bad one


@given(st.text(max_size=300))
def test_name_for_file_gives_a_name_a_reader_accepts_or_none(path: str) -> None:
    name = envelope_mod.name_for_file(path)
    if name is not None:
        assert envelope_mod.check_filename(name) == name
        assert "/" not in name and "\\" not in name


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("reports/q3.pdf", "q3.pdf"),
        ("C:\\Users\\a\\notes.txt", "notes.txt"),
        ("tab\there", "tab_here"),
        ("..", None),
        ("dir/", None),
        ("é" * 200, "é" * 127),
    ],
)
def test_name_for_file(path: str, name: str | None) -> None:
    assert envelope_mod.name_for_file(path) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00b", "a\x7fb", "x" * 256])
def test_check_filename_refuses(name: str) -> None:
    with pytest.raises(errors.FieldError):
        envelope_mod.check_filename(name)


def test_a_file_name_is_encrypted_not_in_the_header() -> None:
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    custodians = [Identity.generate(n) for n in ("alpha", "bravo", "charlie")]
    draft = envelope_mod.prepare(
        b"contents",
        sender=alice.public,
        recipients=[bob.public],
        custodians=[(c.name, None) for c in custodians],
        threshold=2,
        filename="secret-plan.txt",
    )
    sealed = draft.finish(alice)
    data = sealed.to_bytes()
    assert b"secret-plan" not in data
    assert json.loads(data)["header"]["payload"] == "named"
    opened = envelope_mod.Envelope.from_bytes(data).open_named(
        {"alpha": draft.shares[0], "charlie": draft.shares[2]}
    )
    assert (opened.filename, opened.content) == ("secret-plan.txt", b"contents")
    assert "contents" not in repr(opened)

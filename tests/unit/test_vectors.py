"""The project's own vectors, read in both directions, and regenerated identically."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from tools import generate_vectors

from securecomm import canonical, errors, httpsig, shamir, shares, stream
from securecomm._encoding import b64decode
from securecomm.envelope import (
    Envelope,
    Opened,
    Policy,
    Receipt,
    StreamEnvelope,
    document_from_bytes,
    name_record,
    prepare,
    prepare_stream,
)
from securecomm.identity import (
    NAME_SEPARATORS,
    Identity,
    PublicIdentity,
    name_skeleton,
    new_name_refusal,
    public_file,
    read_public_file,
)
from securecomm.passphrases import weakness
from securecomm.shares import Share

from ._vectors import VECTORS, load

SHAMIR = load("shamir.json")
SHARES = load("shares.json")
ENVELOPE = load("envelope.json")
ENVELOPE_V2 = load("envelope-v2.json")
CANONICAL = load("canonical.json")
ANSWERS = load("answers.json")
ENCODING = load("encoding.json")
IDENTITY = load("identity.json")
PASSPHRASES = load("passphrases.json")
STREAM = load("stream.json")


def error_class(name: str) -> type[Exception]:
    cls = getattr(errors, name)
    assert isinstance(cls, type) and issubclass(cls, errors.SecureCommError)
    return cls


def expect_outcome(expect: str, call: Callable[[], object]) -> object:
    """What ``call`` returns when ``expect`` is "ok"; else it must raise exactly that class."""
    if expect == "ok":
        return call()
    with pytest.raises(error_class(expect)) as caught:
        call()
    assert type(caught.value).__name__ == expect
    return None


def replay(monkeypatch: pytest.MonkeyPatch, drawn: list[str]) -> None:
    """Make os.urandom hand out exactly the recorded bytes, in order, and no more."""
    stream: Iterator[str] = iter(drawn)

    def urandom(size: int) -> bytes:
        value = bytes.fromhex(next(stream))
        assert len(value) == size
        return value

    monkeypatch.setattr("os.urandom", urandom)


def test_generated_files_match_the_generator() -> None:
    for name, text in generate_vectors.build().items():
        assert (VECTORS / name).read_text("utf-8") == text, f"vectors/{name} is stale"


def test_every_file_is_mostly_failure_cases_with_descriptions() -> None:
    total = failures = 0
    names = ("shamir.json", "shares.json", "envelope.json", "canonical.json", "answers.json")
    more = ("encoding.json", "identity.json", "passphrases.json", "stream.json", "envelope-v2.json")
    for name in (*names, *more):
        for key, cases in load(name).items():
            if not isinstance(cases, list):
                continue
            for case in cases:
                assert case["description"] and case["expect"], (name, key)
                total += 1
                failures += case["expect"] != "ok"
    assert failures > total / 2


@pytest.mark.parametrize("case", SHAMIR["split"], ids=lambda c: c["description"])
def test_shamir_split(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    secret = bytes.fromhex(case["secret"])
    raw = [bytes.fromhex(s) for s in case["shares"]]
    replay(monkeypatch, case["coefficients"])
    assert shamir.split(secret, case["n"], case["t"]) == raw
    for subset in itertools.islice(itertools.combinations(raw, case["t"]), 20):
        assert shamir.combine(list(subset)) == secret


@pytest.mark.parametrize("case", SHAMIR["combine"], ids=lambda c: c["description"])
def test_shamir_combine_refusals(case: dict[str, Any]) -> None:
    with pytest.raises(error_class(case["expect"])):
        shamir.combine([bytes.fromhex(s) for s in case["shares"]])


@pytest.mark.parametrize("case", SHARES["encode"], ids=lambda c: c["description"])
def test_share_encoding(case: dict[str, Any]) -> None:
    share = Share(
        bytes.fromhex(case["split_id"]),
        case["threshold"],
        case["index"],
        bytes.fromhex(case["value"]),
    )
    assert share.to_bytes().hex() == case["binary"]
    assert share.to_text() == case["text"]
    assert Share.from_bytes(bytes.fromhex(case["binary"])) == share
    assert Share.from_text(case["text"]) == share


@pytest.mark.parametrize("case", SHARES["decode"], ids=lambda c: c["description"])
def test_share_decode_refusals(case: dict[str, Any]) -> None:
    with pytest.raises(error_class(case["expect"])) as caught:
        Share.from_text(case["text"], name="share 7")
    assert type(caught.value).__name__ == case["expect"]
    assert "share 7" in str(caught.value)


@pytest.mark.parametrize("case", SHARES["combine"], ids=lambda c: c["description"])
def test_share_combine(case: dict[str, Any]) -> None:
    given = [Share.from_text(t) for t in case["shares"]]
    if case["expect"] == "ok":
        assert shares.combine(given).hex() == case["secret"]
    else:
        with pytest.raises(error_class(case["expect"])) as caught:
            shares.combine(given)
        assert type(caught.value).__name__ == case["expect"]


def _identities() -> dict[str, Identity]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    result = {}
    for name, keys in ENVELOPE["identities"].items():
        ident = Identity(
            name,
            Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys["ed25519_seed"])),
            X25519PrivateKey.from_private_bytes(bytes.fromhex(keys["x25519_private"])),
        )
        assert ident.public.to_json() == keys["public"]
        result[name] = ident
    return result


CUSTODIANS = ["alpha", "bravo", "charlie", "delta", "echo"]


@pytest.mark.parametrize("member", ["valid", "valid_named"])
def test_envelope_encode_direction(monkeypatch: pytest.MonkeyPatch, member: str) -> None:
    ids = _identities()
    valid = ENVELOPE[member]
    replay(monkeypatch, valid["random"])
    draft = prepare(
        bytes.fromhex(valid["plaintext"]),
        sender=ids["alice"].public,
        recipients=[ids["bob"].public],
        custodians=[(n, ids[n].public.fingerprint) for n in CUSTODIANS],
        threshold=3,
        policy=Policy(**valid["policy"]),
        created=valid["created"],
        filename=valid.get("filename"),
    )
    receipts = [
        Receipt.issue(
            ids[n],
            i + 1,
            draft.header.message_id,
            valid["receipt_refs"][i],
            draft.header.custodians[i].share_digest,
        )
        for i, n in enumerate(CUSTODIANS)
    ]
    assert draft.finish(ids["alice"], receipts).to_bytes().decode() == valid["envelope"]
    assert [s.to_text() for s in draft.shares] == valid["shares"]


@pytest.mark.parametrize("member", ["valid", "valid_named"])
def test_envelope_decode_direction(member: str) -> None:
    ids = _identities()
    valid = ENVELOPE[member]
    envelope = Envelope.from_bytes(valid["envelope"].encode())
    envelope.verify(ids["alice"].public, {n: ids[n].public for n in CUSTODIANS})
    released = {k: Share.from_text(v) for k, v in valid["released"].items()}
    assert envelope.open(released).hex() == valid["plaintext"]
    opened = envelope.open_named(released)
    assert (opened.filename, opened.content.hex()) == (valid.get("filename"), valid["plaintext"])
    assert envelope.to_bytes().decode() == valid["envelope"]


@pytest.mark.parametrize("case", ENVELOPE["failures"], ids=lambda c: c["description"])
def test_envelope_refusals(case: dict[str, Any]) -> None:
    ids = _identities()
    error = error_class(case["expect"])
    reached = "decode"
    with pytest.raises(error) as caught:
        env = Envelope.from_bytes(case["envelope"].encode())
        reached = "verify"
        env.verify(ids["alice"].public, {n: ids[n].public for n in CUSTODIANS})
        reached = "open"
        env.open({k: Share.from_text(v) for k, v in case["released"].items()})
    assert type(caught.value).__name__ == case["expect"]
    assert reached == case["stage"]


@pytest.mark.parametrize("case", ENVELOPE["combine"], ids=lambda c: c["description"])
def test_envelope_combine(case: dict[str, Any]) -> None:
    """Spec 7.7 steps 6-8: every share given is combined, in index order, so the order
    given never changes the outcome; an extra share off the polynomial is caught."""
    ids = _identities()
    env = Envelope.from_bytes(case["envelope"].encode())
    env.verify(ids["alice"].public, {n: ids[n].public for n in CUSTODIANS})
    given = {k: Share.from_text(v) for k, v in case["released"].items()}
    plaintext = expect_outcome(case["expect"], lambda: env.open(given).hex())
    if case["expect"] == "ok":
        assert plaintext == case["plaintext"]


# Version 2 documents (spec/format-v2.md section 4)

V2 = ENVELOPE_V2["valid"]


def test_v2_identities_are_the_envelope_files() -> None:
    assert ENVELOPE_V2["identities"] == ENVELOPE["identities"]


def test_v2_document_encode_direction(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_stream with the recorded randomness, the stream sealed from the plaintext
    in pieces of every size, then signed: the file's stream and document, byte for byte."""
    ids = _identities()
    replay(monkeypatch, V2["random"])
    draft = prepare_stream(
        len(bytes.fromhex(V2["plaintext"])),
        sender=ids["alice"].public,
        recipients=[ids["bob"].public],
        custodians=[(n, ids[n].public.fingerprint) for n in CUSTODIANS],
        threshold=3,
        policy=Policy(**V2["policy"]),
        created=V2["created"],
        filename=V2["filename"],
    )
    message = bytes.fromhex(V2["plaintext"])
    sealed = b"".join(draft.seal(message[i : i + 5] for i in range(0, len(message), 5)))
    assert sealed.hex() == V2["stream"]
    assert stream.payload_key(
        bytes.fromhex(V2["key"]), draft.header.message_id, draft.header.aad()
    ) == bytes.fromhex(V2["payload_key"])
    receipts = [
        Receipt.issue(
            ids[n],
            i + 1,
            draft.header.message_id,
            V2["receipt_refs"][i],
            draft.header.custodians[i].share_digest,
        )
        for i, n in enumerate(CUSTODIANS)
    ]
    document = draft.finish(ids["alice"], receipts, hashlib.sha256(sealed).digest())
    assert document.to_bytes().decode() == V2["document"]
    assert [s.to_text() for s in draft.shares] == V2["shares"]


def _read_v2(
    document: str, sealed: str, released: dict[str, str], reached: list[str]
) -> tuple[str | None, bytes]:
    """A reader of a version 2 document (format-v2 4.2), telling ``reached`` each stage."""
    ids = _identities()
    reached.append("decode")
    doc = document_from_bytes(document.encode())
    assert isinstance(doc, StreamEnvelope)
    reached.append("verify")
    doc.verify(
        ids["alice"].public, {n: ids[n].public for n in CUSTODIANS}, recipient=ids["bob"].public
    )
    reached.append("open")
    key = doc.recover_key({k: Share.from_text(v) for k, v in released.items()})
    plaintext = b"".join(doc.decrypt(key, [bytes.fromhex(sealed)]))
    if doc.header.payload is None:
        return None, plaintext
    name, start = name_record(plaintext)
    return name, plaintext[start:]


def test_v2_document_decode_direction() -> None:
    reached: list[str] = []
    opened = _read_v2(V2["document"], V2["stream"], V2["released"], reached)
    assert opened == (V2["filename"], bytes.fromhex(V2["plaintext"]))
    doc = StreamEnvelope.from_bytes(V2["document"].encode())
    assert doc.to_bytes().decode() == V2["document"]
    assert doc.payload_digest == hashlib.sha256(bytes.fromhex(V2["stream"])).digest()
    assert doc.recover_key({k: Share.from_text(v) for k, v in V2["released"].items()}) == (
        bytes.fromhex(V2["key"])
    )


@pytest.mark.parametrize("case", ENVELOPE_V2["failures"], ids=lambda c: c["description"])
def test_v2_document_refusals(case: dict[str, Any]) -> None:
    reached: list[str] = []
    with pytest.raises(error_class(case["expect"])) as caught:
        _read_v2(case["document"], case["stream"], case["released"], reached)
    assert type(caught.value).__name__ == case["expect"]
    assert reached[-1] == case["stage"]


OFFLINE = ENVELOPE["offline"]


def test_offline_envelope_as_written() -> None:
    """Spec 7.1: slots share-1..share-n without keys, no receipts, the sender the one
    recipient; the .pub file is canonical JSON and a LF; each share file its text and a LF."""
    sender = read_public_file(OFFLINE["sender_pub"].encode())
    assert OFFLINE["sender_pub"].encode() == public_file(sender)
    envelope = Envelope.from_bytes(OFFLINE["envelope"].encode())
    envelope.verify(sender, recipient=sender)
    header = envelope.header
    assert [(c.name, c.fingerprint) for c in header.custodians] == [
        (f"share-{i}", None) for i in range(1, header.n + 1)
    ]
    assert envelope.receipts == ()
    assert [r.name for r in header.recipients] == [sender.name]
    for index in range(1, header.n + 1):
        text = OFFLINE["files"][f"{envelope.id}.share-{index}.txt"]
        assert text.endswith("\n") and text.count("\n") == 1
        assert Share.from_text(text).index == index


@pytest.mark.parametrize("case", OFFLINE["cases"], ids=lambda c: c["description"])
def test_offline_share_files(case: dict[str, Any]) -> None:
    envelope = Envelope.from_file(OFFLINE["envelope"].encode())
    envelope.verify(read_public_file(OFFLINE["sender_pub"].encode()))
    gathered = envelope.gather([(name, OFFLINE["files"][name]) for name in case["given"]])
    assert [type(error).__name__ for _, error in gathered.skipped] == case["skipped"]
    for (label, error), name in zip(gathered.skipped, case["skipped"], strict=True):
        assert label in str(error), (name, str(error))
    opened = expect_outcome(case["expect"], lambda: envelope.open_named(gathered.released))
    if case["expect"] == "ok":
        assert isinstance(opened, Opened)
        assert opened.content.hex() == case["plaintext"] == OFFLINE["plaintext"]
        assert opened.filename == OFFLINE["filename"]


@pytest.mark.parametrize("case", OFFLINE["envelope_files"], ids=lambda c: c["description"])
def test_offline_envelope_files(case: dict[str, Any]) -> None:
    found = expect_outcome(case["expect"], lambda: Envelope.from_file(case["text"].encode()).id)
    if case["expect"] == "ok":
        assert found == case["id"]


@pytest.mark.parametrize("case", ENCODING["base64"], ids=lambda c: c["description"])
def test_base64(case: dict[str, Any]) -> None:
    def decode() -> str:
        return b64decode(case["text"], field="value", length=case.get("length")).hex()

    if case["expect"] == "ok":
        assert expect_outcome("ok", decode) == case["bytes_hex"]
    else:
        expect_outcome(case["expect"], decode)


@pytest.mark.parametrize("case", IDENTITY["cases"], ids=lambda c: c["description"])
def test_public_identity(case: dict[str, Any]) -> None:
    found = expect_outcome(
        case["expect"], lambda: PublicIdentity.from_json(case["identity"]).fingerprint_hex
    )
    if case["expect"] == "ok":
        assert found == case["fingerprint"]


@pytest.mark.parametrize("case", IDENTITY["new_names"], ids=lambda c: c["description"])
def test_new_name(case: dict[str, Any]) -> None:
    refusal = new_name_refusal(case["name"], case["taken"])
    if refusal is None:
        found = "ok"
    else:
        found = "separator_end" if case["name"][-1] in NAME_SEPARATORS else "lookalike"
    assert found == case["expect"], refusal
    assert name_skeleton(case["name"]) == case["skeleton"]


@pytest.mark.parametrize("case", PASSPHRASES["cases"], ids=lambda c: c["description"])
def test_new_passphrase(case: dict[str, Any]) -> None:
    found = weakness(case["passphrase"])
    assert (found[0] if found else "ok") == case["expect"], found


@pytest.mark.parametrize("case", IDENTITY["key_files"], ids=lambda c: c["description"])
def test_key_file(case: dict[str, Any]) -> None:
    found = expect_outcome(
        case["expect"],
        lambda: Identity.from_pem(case["text"].encode(), None).public.fingerprint_hex,
    )
    if case["expect"] == "ok":
        assert found == case["fingerprint"]


@pytest.mark.parametrize("case", CANONICAL["valid"], ids=lambda c: c["description"])
def test_canonical_valid(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["canonical_hex"])
    assert canonical.dumps(case["value"]) == data
    assert canonical.loads(data) == case["value"]


@pytest.mark.parametrize("case", CANONICAL["invalid"], ids=lambda c: c["description"])
def test_canonical_invalid(case: dict[str, Any]) -> None:
    assert case["expect"] != "ok"
    expect_outcome(case["expect"], lambda: canonical.loads(bytes.fromhex(case["text_hex"])))


@pytest.mark.parametrize("case", CANONICAL["bodies"], ids=lambda c: c["description"])
def test_json_bodies(case: dict[str, Any]) -> None:
    """Spec 1.4.1: a body is read for its values, whatever its spelling; the same bytes as
    a document (1.4) are held to the one canonical spelling."""
    data = bytes.fromhex(case["text_hex"])
    value = expect_outcome(case["expect"], lambda: canonical.parse_json(data))
    if case["expect"] == "ok":
        assert value == case["value"]
    expect_outcome(case["as_document"], lambda: canonical.loads(data))


def test_vector_files_are_valid_json_with_sources() -> None:
    for path in VECTORS.glob("*.json"):
        data = json.loads(path.read_text("utf-8"))
        assert data.get("description")
        assert data.get("source") or data.get("generator") == "tools/generate_vectors.py"


# Signed answers of the relay (spec section 11.4)


def test_the_answers_relay_key_is_the_one_its_seeds_make() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    keys = ANSWERS["relay"]
    relay = Identity(
        "relay",
        Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys["ed25519_seed"])),
        X25519PrivateKey.from_private_bytes(bytes.fromhex(keys["x25519_private"])),
    )
    assert relay.public.to_json() == keys["identity"]


@pytest.mark.parametrize("case", ANSWERS["cases"], ids=lambda c: c["description"])
def test_signed_answers(case: dict[str, Any]) -> None:
    relay = PublicIdentity.from_json(ANSWERS["relay"]["identity"])

    def check() -> object:
        return httpsig.verify_answer(
            relay,
            case["header"],
            httpsig.AnswerBinding(**case["request"]),
            status=case["status"],
            body=bytes.fromhex(case["body_hex"]),
        )

    if case["expect"] == "ok":
        check()
        return
    with pytest.raises(error_class(case["expect"])) as caught:
        check()
    assert generate_vectors.ANSWER_STEPS[case["step"]] in str(caught.value), str(caught.value)


# Payload streams (spec/format-v2.md section 3)


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 with one block of output, written out: the spec's PK, computed without
    the implementation's HKDF."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_stream_payload_key() -> None:
    key, message_id = bytes.fromhex(STREAM["key"]), bytes.fromhex(STREAM["message_id"])
    header = STREAM["header"].encode()
    derived = stream.payload_key(key, message_id, header)
    assert derived.hex() == STREAM["payload_key"]
    info = b"securecomm/v2/payload" + hashlib.sha256(header).digest()
    assert _hkdf_sha256(key, message_id, info) == derived
    other = stream.payload_key(key, message_id, header + b" ")
    assert other.hex() == STREAM["other_header_payload_key"]


@pytest.mark.parametrize("case", STREAM["sealed"], ids=lambda c: c["description"])
def test_stream_sealed(case: dict[str, Any]) -> None:
    key = bytes.fromhex(STREAM["payload_key"])
    plaintext = generate_vectors.stream_plaintext(case["length"])
    sealed = b"".join(stream.encrypt(key, [plaintext]))
    assert len(sealed) == case["sealed_length"] == stream.sealed_length(case["length"])
    assert hashlib.sha256(sealed).hexdigest() == case["sealed_sha256"]
    final = (stream.chunk_count(case["length"]) - 1) * stream.SEALED_CHUNK_BYTES
    assert sealed[final:][:64].hex() == case["final_chunk"]
    if "sealed" in case:
        assert sealed.hex() == case["sealed"]
    opened = b"".join(stream.decrypt(key, [sealed], length=case["length"]))
    assert opened == plaintext


@pytest.mark.parametrize("case", STREAM["refusals"], ids=lambda c: c["description"])
def test_stream_refusals(case: dict[str, Any]) -> None:
    sealed_under = bytes.fromhex(STREAM[case.get("sealed_under", "payload_key")])
    given = generate_vectors.stream_input(case, sealed_under)
    key = bytes.fromhex(STREAM["payload_key"])
    expect_outcome(
        case["expect"],
        lambda: b"".join(stream.decrypt(key, [given], length=case["length"])),
    )


# The base64 form check, as spec 1.2 states it (four-character groups, the last padded
# with at most two "="), against the grammar written as one pattern: the same verdict.
_GROUPS = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


@hyp_settings(max_examples=400, deadline=None)
@given(st.text(alphabet="AQg+/=!", max_size=14))
def test_base64_form_is_the_grammar_of_section_1_2(text: str) -> None:
    try:
        b64decode(text, field="value")
        verdict = "ok"
    except errors.FormatError as exc:
        verdict = "form" if type(exc) is errors.FormatError else "other"
    assert (verdict != "form") == bool(_GROUPS.fullmatch(text)), (text, verdict)


def test_checking_a_long_base64_value_takes_no_memory_per_byte() -> None:
    """A message's ciphertext is one base64 value: a pattern that repeats a group kept a
    frame per group (2.8 GiB to check 85 MB)."""
    text = base64.b64encode(bytes(3 * 2**20)).decode()
    tracemalloc.start()
    try:
        b64decode(text, field="ciphertext")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(text)

"""Version 2 envelopes (spec/format-v2.md 4): the document, the streamed draft, reading."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecomm import canonical, errors, stream
from securecomm._encoding import b64encode
from securecomm.envelope import (
    Envelope,
    Policy,
    Receipt,
    StreamDraft,
    StreamEnvelope,
    document_from_bytes,
    name_record,
    prepare_stream,
)
from securecomm.identity import Identity

from .test_envelope import _DELETE, NAMES, _mutate

CHUNK = stream.CHUNK_BYTES


class World:
    def __init__(self) -> None:
        self.alice = Identity.generate("alice")
        self.bob = Identity.generate("bob")
        self.custodians = [Identity.generate(name) for name in NAMES]
        self.keys = {c.name: c.public for c in self.custodians}

    def draft(self, length: int, filename: str | None = None) -> StreamDraft:
        return prepare_stream(
            length,
            sender=self.alice.public,
            recipients=[self.bob.public],
            custodians=[(c.name, c.public.fingerprint) for c in self.custodians],
            threshold=3,
            policy=Policy(max_releases=1),
            filename=filename,
        )

    def receipts(self, draft: StreamDraft) -> list[Receipt]:
        return [
            Receipt.issue(c, i + 1, draft.header.message_id, f"ref-{c.name}", slot.share_digest)
            for i, (c, slot) in enumerate(
                zip(self.custodians, draft.header.custodians, strict=True)
            )
        ]

    def send(
        self, message: bytes, filename: str | None = None, piece: int = 10_000
    ) -> tuple[StreamDraft, StreamEnvelope, bytes]:
        draft = self.draft(len(message), filename)
        pieces = (message[i : i + piece] for i in range(0, len(message), piece))
        sealed = b"".join(draft.seal(pieces))
        document = draft.finish(self.alice, self.receipts(draft), hashlib.sha256(sealed).digest())
        return draft, document, sealed

    def read(
        self, draft: StreamDraft, document: StreamEnvelope, sealed: bytes
    ) -> tuple[str | None, bytes]:
        document.verify(self.alice.public, self.keys, recipient=self.bob.public)
        key = document.recover_key(
            {NAMES[i]: draft.shares[i] for i in (4, 0, 2)}  # any three, in any order
        )
        opened = list(
            document.decrypt(key, [sealed[i : i + 7_777] for i in range(0, len(sealed), 7_777)])
        )
        if document.header.payload is None:
            return None, b"".join(opened)
        name, start = name_record(opened[0])
        return name, b"".join(opened)[start:]


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
@pytest.mark.parametrize("filename", [None, "disk.img", "n" * 255])
def test_round_trip(world: World, size: int, filename: str | None) -> None:
    message = os.urandom(size)
    draft, document, sealed = world.send(message, filename)
    assert len(sealed) == draft.stream_length == document.payload_length
    again = document_from_bytes(document.to_bytes())
    assert isinstance(again, StreamEnvelope) and again == document
    assert canonical.loads(document.to_bytes())["v"] == 2
    assert world.read(draft, again, sealed) == (filename, message)


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 3 * CHUNK), start=st.integers(0, 3), name=st.booleans())
def test_sealing_from_any_chunk_gives_the_same_bytes(
    world: World, size: int, start: int, name: bool
) -> None:
    message = os.urandom(size)
    draft, _, sealed = world.send(message, "f.bin" if name else None)
    start = min(start, stream.chunk_count(draft.length) - 1)
    resumed = b"".join(draft.seal([message[draft.message_offset(start) :]], start=start))
    assert resumed == sealed[start * stream.SEALED_CHUNK_BYTES :]
    # A draft restored from its header and shares (a resumed send) seals the same bytes.
    restored = StreamDraft.restore(draft.header, draft.shares, draft.filename)
    assert b"".join(restored.seal([message])) == sealed


def test_a_message_that_changed_length_is_refused_before_it_is_sealed_past_its_end(
    world: World,
) -> None:
    draft = world.draft(CHUNK + 10)
    with pytest.raises(errors.ParameterError, match="longer than the 65,546 bytes"):
        list(draft.seal([bytes(CHUNK + 11)]))
    with pytest.raises(errors.ParameterError, match="ended after 65,545 of the 65,546"):
        list(draft.seal([bytes(CHUNK + 9)]))


def test_restore_refuses_shares_that_are_not_the_headers(world: World) -> None:
    draft, other = world.draft(5), world.draft(5)
    with pytest.raises(errors.ShareDigestError):
        StreamDraft.restore(draft.header, other.shares)
    with pytest.raises(errors.FieldError, match="file name"):
        StreamDraft.restore(draft.header, draft.shares, "name.txt")
    assert "shares=<hidden>" in repr(draft) and draft.shares[0].to_text() not in repr(draft)


def _refused(doc: dict[str, Any]) -> type[Exception]:
    with pytest.raises(errors.FormatError) as caught:
        document_from_bytes(canonical.dumps(doc))
    return type(caught.value)


def test_document_refusals(world: World) -> None:
    _, document, _ = world.send(b"x" * 100)
    doc = document.to_json()
    # 4.1: a version 2 header has a length in range; a version 1 header has none.
    assert _refused(_mutate(doc, "header.length", _DELETE)) is errors.FieldError
    assert _refused(_mutate(doc, "header.length", -1)) is errors.FieldError
    assert _refused(_mutate(doc, "header.length", 2**53)) is errors.FieldError
    assert _refused(_mutate(doc, "header.v", 1)) is errors.UnknownVersionError
    assert _refused(_mutate(doc, "header.v", 3)) is errors.UnknownVersionError
    # 4.2: the payload's members, and a length that is the header's sealed.
    assert _refused(_mutate(doc, "payload.length", 100)) is errors.FieldError
    assert _refused(_mutate(doc, "payload.length", 117)) is errors.FieldError
    assert _refused(_mutate(doc, "payload.extra", 1)) is errors.FieldError
    assert _refused(_mutate(doc, "payload.digest", "AAAA")) is errors.LengthError
    assert _refused(_mutate(doc, "payload", _DELETE)) is errors.FieldError
    assert _refused(_mutate(doc, "ciphertext", "AAAA")) is errors.FieldError
    assert _refused(_mutate(doc, "v", 3)) is errors.UnknownVersionError
    # A version 1 document with a version 2 header, and with a length in its header.
    old = canonical.loads(_v1_envelope(world).to_bytes())
    assert _refused(_mutate(old, "header.v", 2)) is errors.UnknownVersionError
    assert _refused(_mutate(old, "header.length", 5)) is errors.FieldError


def _v1_envelope(world: World) -> Envelope:
    from securecomm.envelope import prepare

    draft = prepare(
        b"old",
        sender=world.alice.public,
        recipients=[world.bob.public],
        custodians=[(c.name, c.public.fingerprint) for c in world.custodians],
        threshold=3,
    )
    receipts = [
        Receipt.issue(c, i + 1, draft.header.message_id, "r", slot.share_digest)
        for i, (c, slot) in enumerate(zip(world.custodians, draft.header.custodians, strict=True))
    ]
    envelope = draft.finish(world.alice, receipts)
    assert isinstance(document_from_bytes(envelope.to_bytes()), Envelope)
    return envelope


def test_every_signed_member_is_covered(world: World) -> None:
    """The digest, the length and the header's length are under the sender's signature."""
    _, document, _ = world.send(b"y" * 1000)
    doc = document.to_json()
    other = hashlib.sha256(b"other").digest()
    for changed in (
        _mutate(doc, "payload.digest", b64encode(other)),
        _mutate(_mutate(doc, "header.length", 999), "payload.length", 1015),
    ):
        forged = document_from_bytes(canonical.dumps(changed))
        with pytest.raises(errors.SignatureError):
            forged.verify(world.alice.public, world.keys)


def test_the_header_is_bound_to_every_chunk(world: World) -> None:
    """A header changed by its key's holder (re-signed) opens no chunk: PK binds it."""
    draft, document, sealed = world.send(os.urandom(2 * CHUNK))
    key = document.recover_key({NAMES[i]: draft.shares[i] for i in range(3)})
    changed = StreamEnvelope.from_json(_mutate(document.to_json(), "header.created", 7))
    with pytest.raises(errors.StreamChunkError):
        list(changed.decrypt(key, [sealed]))


def test_prepare_stream_refusals(world: World) -> None:
    with pytest.raises(errors.ParameterError):
        world.draft(-1)
    with pytest.raises(errors.ParameterError):
        world.draft(stream.MAX_CHUNKS * CHUNK + 1)
    with pytest.raises(errors.FieldError):
        world.draft(1, filename="a/b")

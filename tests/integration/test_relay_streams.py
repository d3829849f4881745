"""The relay's payload streams (spec/format-v2.md section 5) against a real relay process
(gunicorn, as ``securecomm relay serve`` runs it, two workers) on each backend: uploads
opened, appended, abandoned; version 2 documents posted with their stream; ranges
downloaded; every refusal; a stream whose append was cut off going on from what was
acknowledged; the sweep; and a ``kill -9`` in the middle of an upload.

The relay's limits are small here (an envelope of 64 KiB, a stream of 8 MiB, 20 MiB per
sender) so that each is reached cheaply, and so that a piece (4 MiB) is larger than an
envelope may be. Receipts come from stand-in custodian keys: the relay checks the
document's form and its sender's signature, not the receipts' keys.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from securecomm import httpsig
from securecomm.client import streamed
from securecomm.client.transport import ServiceClient, close_idle_pools
from securecomm.config import MAX_PIECE_BYTES
from securecomm.envelope import (
    Draft,
    Envelope,
    Receipt,
    StreamDraft,
    StreamEnvelope,
    prepare,
    prepare_stream,
)
from securecomm.errors import ServiceError
from securecomm.identity import Identity, PublicIdentity, load_public
from securecomm.local.home import config_text
from securecomm.stream import SEALED_CHUNK_BYTES, sealed_length
from tests.backends import Backend
from tests.pagecache import cached_bytes, needs_droppable_cache

from .conftest import NAMES, Service, engine_of, free_port

MIB = 1024 * 1024
LIMITS = {
    "max_envelope_bytes": 64 * 1024,
    "max_payload_bytes": 8 * MIB,
    "max_sender_bytes": 20 * MIB,
}
#: Pieces of 16 sealed chunks (about 1 MiB): several appends for a few MiB.
PIECE = 16 * SEALED_CHUNK_BYTES
CUSTODIANS = [Identity.generate(name) for name in NAMES]
OCTETS = "application/octet-stream"


@dataclass
class Relay:
    service: Service
    key: PublicIdentity
    database: str

    @property
    def payloads(self) -> Path:
        return self.service.home / "relay" / "payloads"

    def client(self, who: Identity | None = None) -> ServiceClient:
        """Signed requests as ``who``; every answer checked to be the relay's, for them."""
        return ServiceClient(self.service.url, "relay", who, answers=self.key, timeout=30)

    def restart(self, kill: bool = False) -> None:
        close_idle_pools()  # kept-alive connections to the old process are dead
        if kill:
            self.service.kill9()
        else:
            self.service.stop()
        self.service.start()

    def files(self) -> set[str]:
        """Every file under the payloads directory, relative to it."""
        return {
            str(path.relative_to(self.payloads))
            for path in self.payloads.rglob("*")
            if path.is_file()
        }

    def rows(self, statement: str) -> list[Any]:
        engine = engine_of(self.database)
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement))
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Relay]:
    home = tmp_path_factory.mktemp(f"streams-{backend}") / "home"
    home.mkdir()
    port = free_port()
    urls = backend.database_urls(["relay"])
    (home / "securecomm.toml").write_text(
        config_text(
            len(NAMES),
            3,
            relay_port=port,
            ports={name: free_port() for name in NAMES},
            database_urls=urls,
            **LIMITS,
        )
    )
    service = Service("relay", "relay", port, home, workers=2)
    service.start()
    try:
        database = urls.get("relay", f"sqlite:///{home / 'relay' / 'relay.db'}")
        yield Relay(service, load_public(home / "relay" / "identity.pub"), database)
    finally:
        close_idle_pools()
        service.stop()


# Documents, uploads and downloads.


@dataclass
class Message:
    document: StreamEnvelope
    stream: bytes
    plaintext: bytes
    key: bytes  # the message key, recovered from the draft's shares

    @property
    def id(self) -> str:
        return self.document.id

    @property
    def upload(self) -> str:
        return f"/api/v1/uploads/{self.id}"

    @property
    def payload(self) -> str:
        return f"/api/v1/messages/{self.id}/payload"


def stream_draft(sender: Identity, recipients: list[Identity], length: int) -> StreamDraft:
    return prepare_stream(
        length,
        sender=sender.public,
        recipients=[r.public for r in recipients],
        custodians=[(c.name, c.public.fingerprint) for c in CUSTODIANS],
        threshold=3,
    )


def stand_in_receipts(draft: StreamDraft | Draft) -> list[Receipt]:
    """Receipts from the stand-in custodians' keys, one per slot of ``draft``'s header."""
    return [
        Receipt.issue(c, i + 1, draft.header.message_id, f"ref{i}", slot.share_digest)
        for i, (c, slot) in enumerate(zip(CUSTODIANS, draft.header.custodians, strict=True))
    ]


def stream_message(sender: Identity, recipients: list[Identity], plaintext: bytes) -> Message:
    draft = stream_draft(sender, recipients, len(plaintext))
    stream = b"".join(draft.seal([plaintext]))
    receipts = stand_in_receipts(draft)
    document = draft.finish(sender, receipts, hashlib.sha256(stream).digest())
    key = document.recover_key({c.name: s for c, s in zip(CUSTODIANS, draft.shares, strict=True)})
    return Message(document, stream, plaintext, key)


def v1_envelope(sender: Identity, recipients: list[Identity], plaintext: bytes) -> Envelope:
    draft = prepare(
        plaintext,
        sender=sender.public,
        recipients=[r.public for r in recipients],
        custodians=[(c.name, c.public.fingerprint) for c in CUSTODIANS],
        threshold=3,
    )
    return draft.finish(sender, stand_in_receipts(draft))


def open_upload(client: ServiceClient, message: Message, expect: int = 201) -> dict[str, Any]:
    answer = client.request("PUT", message.upload, body={"v": 2, "length": len(message.stream)})
    assert answer.status_code == expect
    state: dict[str, Any] = answer.json()
    return state


def append(client: ServiceClient, message: Message, offset: int, piece: bytes) -> dict[str, Any]:
    answer = client.request(
        "POST", message.upload, raw=piece, content_type=OCTETS, params={"offset": str(offset)}
    )
    state: dict[str, Any] = answer.json()
    return state


def upload(client: ServiceClient, message: Message, start: int = 0, piece: int = PIECE) -> None:
    """Send the stream from ``start`` to its end, a piece at a time."""
    for offset in range(start, len(message.stream), piece):
        state = append(client, message, offset, message.stream[offset : offset + piece])
        assert state["received"] == min(offset + piece, len(message.stream))


def post(relay: Relay, document: StreamEnvelope | Envelope) -> httpx.Response:
    with relay.client() as client:
        return client.request("POST", "/api/v1/messages", raw=document.to_bytes(), sign=False)


def download(client: ServiceClient, message: Message, piece: int = MAX_PIECE_BYTES) -> bytes:
    got = bytearray()
    while len(got) < len(message.stream):
        params = {"offset": str(len(got)), "length": str(piece)}
        got += client.request("GET", message.payload, params=params).content
    return bytes(got)


def refused(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(ServiceError) as error:
        call()
    return error.value.status, error.value.code


def inbox(relay: Relay, who: Identity) -> list[dict[str, Any]]:
    with relay.client(who) as client:
        messages: list[dict[str, Any]] = client.request("GET", "/api/v1/inbox").json()["messages"]
    return messages


def people(*names: str) -> list[Identity]:
    return [Identity.generate(name) for name in names]


# A round trip.


def test_a_stream_of_a_few_mib_goes_up_in_pieces_and_comes_down_in_ranges(relay: Relay) -> None:
    alice, bob = people("alice", "bob")
    message = stream_message(alice, [bob], os.urandom(5 * MIB + 12345))
    with relay.client(alice) as client:
        assert open_upload(client, message) == {
            "id": message.id,
            "length": len(message.stream),
            "received": 0,
        }
        upload(client, message, piece=PIECE)
        # Opening it again says where it stands: whole.
        assert open_upload(client, message, expect=200)["received"] == len(message.stream)
    assert f"partial/{message.id}" in relay.files()
    stored = post(relay, message.document)
    body = message.document.to_bytes()
    assert stored.status_code == 201
    assert stored.json()["digest"] == hashlib.sha256(body).hexdigest()
    assert stored.json()["size"] == len(body)
    assert post(relay, message.document).status_code == 200  # a retry: the same answer
    # The upload became the message's stream, under its digest; the upload is gone.
    files = relay.files()
    assert message.document.payload_digest.hex() in files
    assert f"partial/{message.id}" not in files
    stored_file = relay.payloads / message.document.payload_digest.hex()
    assert stored_file.read_bytes() == message.stream
    with relay.client(alice) as client:
        assert refused(lambda: client.request("GET", message.upload)) == (404, "no_upload")
        # Its id is taken.
        assert refused(lambda: open_upload(client, message)) == (409, "duplicate_id")
    (entry,) = inbox(relay, bob)
    assert (entry["id"], entry["size"]) == (message.id, len(body) + len(message.stream))
    with relay.client(bob) as client:
        assert client.request("GET", f"/api/v1/messages/{message.id}").content == body
        got = download(client, message, piece=3 * SEALED_CHUNK_BYTES)
        assert refused(lambda: client.request("GET", message.payload, params={"offset": "1"})) == (
            400,
            "bad_field",
        )
        past = {"offset": str(len(message.stream) // SEALED_CHUNK_BYTES * SEALED_CHUNK_BYTES)}
        assert len(client.request("GET", message.payload, params=past).content) < PIECE
        beyond = {"offset": str(len(message.stream) + SEALED_CHUNK_BYTES)}
        assert refused(lambda: client.request("GET", message.payload, params=beyond)) == (
            400,
            "bad_field",
        )
    assert got == message.stream
    with relay.client(alice) as client:
        assert download(client, message) == message.stream  # the sender too, whole pieces
    assert b"".join(message.document.decrypt(message.key, [got])) == message.plaintext


# Refusals.


def test_opening_an_upload_is_refused_as_the_spec_says(relay: Relay) -> None:
    alice, eve = people("alice", "eve")
    message = stream_message(alice, [eve], b"small")
    with relay.client(alice) as client:
        for body in (
            {"v": 1, "length": len(message.stream)},
            {"v": 2},
            {"v": 2, "length": "21"},
            {"v": 2, "length": len(message.stream), "more": 1},
            {"v": 2, "length": SEALED_CHUNK_BYTES + 1},  # no stream is this long
        ):
            opening = functools.partial(client.request, "PUT", message.upload, body=body)
            assert refused(opening) == (400, "bad_field"), body
        bad_id = "/api/v1/uploads/" + "A" * 32
        assert refused(lambda: client.request("PUT", bad_id, body={"v": 2, "length": 16})) == (
            400,
            "bad_field",
        )
        too_long = {"v": 2, "length": sealed_length(8 * MIB + 1)}
        assert refused(lambda: client.request("PUT", message.upload, body=too_long)) == (
            413,
            "too_large",
        )
        open_upload(client, message)
        other_length = {"v": 2, "length": len(message.stream) + 1}
        assert refused(lambda: client.request("PUT", message.upload, body=other_length)) == (
            409,
            "duplicate_id",
        )
    # Another sender's upload: not theirs to open, append to, see or drop.
    with relay.client(eve) as client:
        assert refused(lambda: open_upload(client, message)) == (409, "duplicate_id")
        assert refused(lambda: append(client, message, 0, message.stream)) == (404, "no_upload")
        assert refused(lambda: client.request("GET", message.upload)) == (404, "no_upload")
        assert refused(lambda: client.request("DELETE", message.upload)) == (404, "no_upload")
    with relay.client(alice) as client:
        assert client.request("GET", message.upload).json()["received"] == 0


def test_the_quota_counts_stored_messages_and_open_uploads(relay: Relay) -> None:
    (alice,) = people("alice")
    seven = sealed_length(7 * MIB)
    first, second, third = (stream_message(alice, [alice], b"x") for _ in range(3))
    with relay.client(alice) as client:
        for message in (first, second):
            client.request("PUT", message.upload, body={"v": 2, "length": seven})
        over = functools.partial(
            client.request, "PUT", third.upload, body={"v": 2, "length": seven}
        )
        assert refused(over) == (413, "quota_exceeded")
        assert client.request("DELETE", first.upload).status_code == 204
        assert over().status_code == 201
        # A stored message counts as its document and its stream.
        client.request("DELETE", second.upload)
        client.request("DELETE", third.upload)
        big = stream_message(alice, [alice], os.urandom(7 * MIB))
        open_upload(client, big)
        upload(client, big, piece=MAX_PIECE_BYTES)
        assert post(relay, big.document).status_code == 201
        held = len(big.document.to_bytes()) + len(big.stream)
        client.request("PUT", first.upload, body={"v": 2, "length": seven})
        room = 20 * MIB - held - seven
        fits = {"v": 2, "length": room // SEALED_CHUNK_BYTES * SEALED_CHUNK_BYTES}
        client.request("PUT", second.upload, body=fits)
        chunk = {"v": 2, "length": SEALED_CHUNK_BYTES}  # more than the room left
        assert refused(lambda: client.request("PUT", third.upload, body=chunk)) == (
            413,
            "quota_exceeded",
        )
        client.request("DELETE", first.upload)
        client.request("DELETE", second.upload)
        assert client.request("DELETE", f"/api/v1/messages/{big.id}").status_code == 204


def test_pieces_are_refused_as_the_spec_says(relay: Relay) -> None:
    (alice,) = people("alice")
    message = stream_message(alice, [alice], os.urandom(3 * 65536 + 5))
    small = stream_message(alice, [alice], b"x" * 100)
    recording = _Recording()
    with ServiceClient(
        relay.service.url, "relay", alice, answers=relay.key, transport=recording
    ) as client:
        assert refused(lambda: append(client, message, 0, b"x")) == (404, "no_upload")
        open_upload(client, message)
        open_upload(client, small)
        # Not where the upload stands: the answer says where it does.
        second = message.stream[SEALED_CHUNK_BYTES : 2 * SEALED_CHUNK_BYTES]
        assert refused(lambda: append(client, message, SEALED_CHUNK_BYTES, second)) == (
            409,
            "upload_offset",
        )
        assert recording.json()["received"] == 0
        append(client, message, 0, message.stream[:SEALED_CHUNK_BYTES])
        first = message.stream[:SEALED_CHUNK_BYTES]
        assert refused(lambda: append(client, message, 0, first)) == (
            409,
            "upload_offset",
        )
        assert recording.json()["received"] == SEALED_CHUNK_BYTES
        at = SEALED_CHUNK_BYTES
        # Larger than a piece (and than the relay reads: its envelopes are smaller).
        assert refused(lambda: append(client, message, at, bytes(MAX_PIECE_BYTES + 1))) == (
            413,
            "too_large",
        )
        # Not a whole number of sealed chunks, and not the stream's last piece.
        assert refused(lambda: append(client, message, at, message.stream[at : at + 1000])) == (
            400,
            "bad_length",
        )
        # Past the stream's end.
        assert refused(lambda: append(client, small, 0, small.stream + b"x")) == (
            400,
            "bad_length",
        )
        assert refused(lambda: append(client, message, at, b"")) == (400, "bad_length")
        wrong_type = functools.partial(
            client.request, "POST", message.upload, raw=b"x", params={"offset": str(at)}
        )
        assert refused(wrong_type) == (415, "unsupported_media_type")
        no_offset = functools.partial(
            client.request, "POST", message.upload, raw=b"x", content_type=OCTETS
        )
        assert refused(no_offset) == (400, "bad_field")
        # Nothing refused was counted; the rest goes on from where it stood.
        assert client.request("GET", message.upload).json()["received"] == at
        upload(client, message, start=at, piece=2 * SEALED_CHUNK_BYTES)
        append(client, small, 0, small.stream)
    assert post(relay, message.document).status_code == 201
    assert post(relay, small.document).status_code == 201


def test_a_document_is_stored_only_with_its_whole_stream(relay: Relay) -> None:
    alice, bob, eve = people("alice", "bob", "eve")
    message = stream_message(alice, [bob], os.urandom(2 * 65536))
    assert refused(lambda: post(relay, message.document)) == (409, "no_upload")
    with relay.client(eve) as client:  # an upload of this id, but not by its sender
        open_upload(client, message)
        append(client, message, 0, message.stream)
    assert refused(lambda: post(relay, message.document)) == (409, "no_upload")
    with relay.client(eve) as client:
        client.request("DELETE", message.upload)
    with relay.client(alice) as client:
        open_upload(client, message)
        append(client, message, 0, message.stream[:SEALED_CHUNK_BYTES])
        assert refused(lambda: post(relay, message.document)) == (409, "payload_mismatch")
        # Whole, but other bytes than the document names.
        tail = bytearray(message.stream[SEALED_CHUNK_BYTES:])
        tail[-1] ^= 1
        append(client, message, SEALED_CHUNK_BYTES, bytes(tail))
        assert refused(lambda: post(relay, message.document)) == (409, "payload_mismatch")
        assert client.request("DELETE", message.upload).status_code == 204
        # A stream another message has is not taken by a second document.
        open_upload(client, message)
        upload(client, message)
        assert post(relay, message.document).status_code == 201
        copy = stream_message(alice, [bob], b"")
        forged = _document_naming(alice, message, copy)
        client.request(
            "PUT", f"/api/v1/uploads/{forged.id}", body={"v": 2, "length": len(message.stream)}
        )
        for offset in range(0, len(message.stream), PIECE):
            client.request(
                "POST",
                f"/api/v1/uploads/{forged.id}",
                raw=message.stream[offset : offset + PIECE],
                content_type=OCTETS,
                params={"offset": str(offset)},
            )
        assert refused(lambda: post(relay, forged)) == (409, "payload_mismatch")
        client.request("DELETE", f"/api/v1/uploads/{forged.id}")
    # An envelope larger than the relay's max_envelope_bytes, though smaller than a piece.
    big = v1_envelope(alice, [bob], os.urandom(64 * 1024))
    assert refused(lambda: post(relay, big)) == (413, "too_large")
    assert [m["id"] for m in inbox(relay, bob)] == [message.id]


def test_a_download_is_the_sender_s_or_a_recipient_s_of_a_stream(relay: Relay) -> None:
    alice, bob, eve = people("alice", "bob", "eve")
    message = stream_message(alice, [bob], b"for bob")
    with relay.client(alice) as client:
        open_upload(client, message)
        upload(client, message)
    post(relay, message.document)
    old = v1_envelope(alice, [bob], b"version 1")
    assert post(relay, old).status_code == 201
    with relay.client(eve) as client:
        assert refused(lambda: client.request("GET", message.payload)) == (404, "not_found")
    with relay.client(bob) as client:
        assert client.request("GET", message.payload).content == message.stream
        v1 = f"/api/v1/messages/{old.id}/payload"
        assert refused(lambda: client.request("GET", v1)) == (404, "not_found")
        nothing = f"/api/v1/messages/{'0' * 32}/payload"
        assert refused(lambda: client.request("GET", nothing)) == (404, "not_found")


# Interrupted, deleted, swept, killed.


def test_an_append_cut_off_after_its_bytes_reached_disk_goes_on_from_what_was_acknowledged(
    relay: Relay,
) -> None:
    alice, bob = people("alice", "bob")
    message = stream_message(alice, [bob], os.urandom(40 * 65536))
    partial = relay.payloads / "partial" / message.id
    with relay.client(alice) as client:
        open_upload(client, message)
        append(client, message, 0, message.stream[:PIECE])
        # A piece written but never acknowledged (the relay stopped before its commit).
        with partial.open("ab") as file:
            file.write(os.urandom(PIECE - 5))
        assert client.request("GET", message.upload).json()["received"] == PIECE
        append(client, message, PIECE, message.stream[PIECE : 2 * PIECE])
        assert partial.stat().st_size == 2 * PIECE  # what lay past PIECE was cut away
        upload(client, message, start=2 * PIECE)
    assert post(relay, message.document).status_code == 201
    with relay.client(bob) as client:
        assert download(client, message) == message.stream


def test_a_post_stopped_between_naming_the_stream_and_its_commit_is_retried(
    relay: Relay,
) -> None:
    alice, bob = people("alice", "bob")
    message = stream_message(alice, [bob], os.urandom(65536 + 1))
    with relay.client(alice) as client:
        open_upload(client, message)
        upload(client, message)
    digest = message.document.payload_digest.hex()
    # What a post leaves when the relay dies after the rename: the file under its stored
    # name, the upload's row still there, no message row.
    (relay.payloads / "partial" / message.id).rename(relay.payloads / digest)
    with relay.client(alice) as client:  # the sender asks where its upload stands
        assert open_upload(client, message, expect=200)["received"] == len(message.stream)
        assert refused(lambda: append(client, message, 0, message.stream)) == (
            409,
            "upload_offset",
        )
    assert post(relay, message.document).status_code == 201
    assert f"partial/{message.id}" not in relay.files()
    with relay.client(bob) as client:
        assert download(client, message) == message.stream
    assert not relay.rows(f"SELECT id FROM uploads WHERE id = '{message.id}'")


def test_deleting_a_message_or_abandoning_an_upload_removes_its_file(relay: Relay) -> None:
    alice, bob, carol = people("alice", "bob", "carol")
    unsent, shared, dropped = (
        stream_message(alice, [bob, carol], os.urandom(70000)) for _ in "abc"
    )
    with relay.client(alice) as client:
        for message in (unsent, shared, dropped):
            open_upload(client, message)
            upload(client, message)
        assert client.request("DELETE", dropped.upload).status_code == 204
        assert refused(lambda: client.request("GET", dropped.upload)) == (404, "no_upload")
        assert refused(lambda: client.request("DELETE", dropped.upload)) == (404, "no_upload")
    assert f"partial/{dropped.id}" not in relay.files()
    for message in (unsent, shared):
        assert post(relay, message.document).status_code == 201
    stored = {m.document.payload_digest.hex(): m for m in (unsent, shared)}
    assert set(stored) <= relay.files()
    # Unsent by its sender: gone for everyone, its stream with it.
    with relay.client(alice) as client:
        client.request("DELETE", f"/api/v1/messages/{unsent.id}")
    assert unsent.document.payload_digest.hex() not in relay.files()
    with relay.client(bob) as client:
        assert refused(lambda: client.request("GET", unsent.payload)) == (404, "not_found")
        # Removed by one recipient: the other still has it.
        client.request("DELETE", f"/api/v1/messages/{shared.id}")
    assert shared.document.payload_digest.hex() in relay.files()
    with relay.client(carol) as client:
        assert download(client, shared) == shared.stream
        client.request("DELETE", f"/api/v1/messages/{shared.id}")
    assert shared.document.payload_digest.hex() not in relay.files()


def test_the_sweep_drops_what_no_request_will_finish(relay: Relay) -> None:
    alice, bob = people("alice", "bob")
    stale, live, kept = (stream_message(alice, [bob], os.urandom(70000)) for _ in "abc")
    with relay.client(alice) as client:
        for message in (stale, live, kept):
            open_upload(client, message)
            append(client, message, 0, message.stream[:SEALED_CHUNK_BYTES])
        upload(client, kept, start=SEALED_CHUNK_BYTES)
    assert post(relay, kept.document).status_code == 201
    day_ago = int(time.time()) - 25 * 3600
    relay.rows(f"UPDATE uploads SET updated_at = {day_ago} WHERE id = '{stale.id}'")
    orphan = relay.payloads / "partial" / ("ab" * 16)  # an upload's file without its row
    orphan.write_bytes(b"left by a crash")
    old, fresh = relay.payloads / ("01" * 32), relay.payloads / ("02" * 32)
    for path in (old, fresh):
        path.write_bytes(b"a stream no message names")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    kept_file = relay.payloads / kept.document.payload_digest.hex()
    os.utime(kept_file, (hours_ago, hours_ago))
    relay.restart()  # a relay sweeps when it starts
    files = relay.files()
    assert f"partial/{stale.id}" not in files and not orphan.exists() and not old.exists()
    assert fresh.name in files  # a post that stopped after naming it may still come back
    assert {f"partial/{live.id}", kept_file.name} <= files
    with relay.client(alice) as client:
        assert refused(lambda: client.request("GET", stale.upload)) == (404, "no_upload")
        assert client.request("GET", live.upload).json()["received"] == SEALED_CHUNK_BYTES
        client.request("DELETE", live.upload)
    with relay.client(bob) as client:
        assert download(client, kept) == kept.stream
    fresh.unlink()


def test_a_relay_killed_during_an_upload_leaves_nothing_half_done(relay: Relay) -> None:
    alice, bob = people("alice", "bob")
    message = stream_message(alice, [bob], os.urandom(7 * MIB))
    step = 2 * SEALED_CHUNK_BYTES  # small pieces, so the kill comes in the middle
    acknowledged: list[int] = []
    with relay.client(alice) as client:
        open_upload(client, message)

    def uploading() -> None:
        with relay.client(alice) as client:
            offset = 0
            try:
                while offset < len(message.stream):
                    piece = message.stream[offset : offset + step]
                    offset = append(client, message, offset, piece)["received"]
                    acknowledged.append(offset)
                    time.sleep(0.005)
            except ServiceError:
                pass  # the relay is gone

    thread = threading.Thread(target=uploading)
    thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 5 and time.monotonic() < deadline:
        time.sleep(0.001)
    # And a piece whose body is half sent when the relay dies.
    half = _half_sent_piece(relay, alice, message, acknowledged[-1])
    relay.service.kill9()
    thread.join(timeout=30)
    half.close()
    relay.restart()
    # Nothing of it in the inbox; the upload stands at a piece that was acknowledged, or at
    # the one whose answer the kill cut off, and no file is there that no row names.
    assert inbox(relay, bob) == []
    with relay.client(alice) as client:
        received = client.request("GET", message.upload).json()["received"]
    assert received in (acknowledged[-1], acknowledged[-1] + step)
    assert received % step == 0 and received < len(message.stream)
    uploads = {row.id for row in relay.rows("SELECT id FROM uploads")}
    named = {row.payload_digest for row in relay.rows("SELECT payload_digest FROM messages")}
    for name in relay.files():
        if name.startswith("partial/"):
            assert name.removeprefix("partial/") in uploads, name
        else:
            assert name in named, name
    with relay.client(alice) as client:
        upload(client, message, start=received)
    assert post(relay, message.document).status_code == 201
    with relay.client(bob) as client:
        got = download(client, message)
    assert got == message.stream
    assert b"".join(message.document.decrypt(message.key, [got])) == message.plaintext


def test_a_link_that_fails_for_a_moment_loses_no_upload_or_download(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's upload and download (client.streamed) ride out a link that fails on the
    way: a piece whose answer was lost after the relay took it is not sent again (the
    upload's state is asked first), one that never left is; a range is asked again."""
    monkeypatch.setattr(streamed, "RETRY_WAITS", (0.01, 0.01, 0.01))
    alice, bob = people("alice", "bob")
    plaintext = os.urandom(6 * MIB + 7)
    source, draft = file_draft(tmp_path, alice, [bob], plaintext)
    second = str(MAX_PIECE_BYTES)
    warned: list[str] = []
    with (
        _Flaky({("POST", "0"): "answer", ("POST", second): "request"}) as link,
        source.open("rb") as handle,
    ):
        upload = streamed.Upload(
            link.client(relay, alice), draft, handle, _ignore, lambda: False, warned.append
        )
        assert upload.open() == 0
        digest = upload.send(0)
    assert link.seen == [
        ("PUT", ""),
        ("POST", "0"),  # taken; its answer lost
        ("GET", ""),  # the relay holds it: on to the next
        ("POST", second),  # never left
        ("GET", ""),
        ("POST", second),
    ]
    assert len(warned) == 2 and all("trying again in 0.01 s" in w for w in warned), warned
    document = draft.finish(alice, stand_in_receipts(draft), digest)
    assert post(relay, document).status_code == 201
    key = document.recover_key(dict(zip(NAMES, draft.shares, strict=True)))
    later = str(SEALED_CHUNK_BYTES)
    with _Flaky({("GET", later): "answer"}) as link:
        out, _ = streamed.download(
            link.client(relay, bob),
            document,
            key,
            lambda _name: tmp_path / "read.bin",
            progress=_ignore,
            cancelled=lambda: False,
            warn=warned.append,
        )
    assert out.read_bytes() == plaintext
    assert link.seen.count(("GET", later)) == 2
    assert len(warned) == 3


def test_a_piece_that_reached_the_relay_late_is_not_taken_twice(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece whose answer did not come in time, and which the relay took only after the
    sender asked where the upload stood: the piece made again is refused (upload_offset),
    and the sender, asking again, goes on."""
    monkeypatch.setattr(streamed, "RETRY_WAITS", (0.01, 0.01, 0.01))
    (alice,) = people("alice")
    source, draft = file_draft(tmp_path, alice, [alice], os.urandom(2 * MIB))
    with _Flaky({("POST", "0"): "late"}) as link, source.open("rb") as handle:
        upload = streamed.Upload(link.client(relay, alice), draft, handle, _ignore, lambda: False)
        upload.open()
        digest = upload.send(0)
        assert link.seen == [("PUT", ""), ("POST", "0"), ("GET", ""), ("POST", "0"), ("GET", "")]
        assert client_state(link.client(relay, alice), draft.header.id) == draft.stream_length
        upload.abandon()
    assert len(digest) == 32


def test_a_large_stream_leaves_the_page_cache_as_it_goes(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the relay's copy of a stream nor the reader's output stays in the page cache
    once on disk, and the output is put on disk as it grows, not only at its end."""
    needs_droppable_cache(tmp_path)
    monkeypatch.setattr(streamed, "SYNC_BYTES", MIB)
    # A range at a time. With two in flight, the kernel's read-ahead past one (8 MiB on the
    # disk of our machines) can bring back pages of the other after that one let go of
    # them: of a 1 GiB stream 4 to 8 MiB stayed cached, but of this one it can be half.
    monkeypatch.setattr(streamed, "RANGES_AT_ONCE", 1)
    synced: list[int] = []
    sync_behind = streamed._sync_behind

    def recording(handle: Any, since: int) -> int:
        synced.append(sync_behind(handle, since))
        return synced[-1]

    monkeypatch.setattr(streamed, "_sync_behind", recording)
    alice, bob = people("alice", "bob")
    plaintext = os.urandom(7 * MIB + 7)  # (this relay takes 8 MiB at most)
    source, draft = file_draft(tmp_path, alice, [bob], plaintext)
    with source.open("rb") as handle:
        upload = streamed.Upload(
            lambda _timeout: relay.client(alice), draft, handle, _ignore, lambda: False
        )
        upload.open()
        digest = upload.send(0)
    document = draft.finish(alice, stand_in_receipts(draft), digest)
    assert post(relay, document).status_code == 201
    stored = relay.payloads / document.payload_digest.hex()
    assert cached_bytes(stored) <= 2 * os.sysconf("SC_PAGE_SIZE")  # (pages pieces share)
    key = document.recover_key(dict(zip(NAMES, draft.shares, strict=True)))
    out, _ = streamed.download(
        lambda _timeout: relay.client(bob),
        document,
        key,
        lambda _name: tmp_path / "read.bin",
        progress=_ignore,
        cancelled=lambda: False,
    )
    assert cached_bytes(out) == 0
    # Each range lets go of its whole pages; the page two ranges share may stay: a few
    # pages, where a cached stream would be all of them.
    assert cached_bytes(stored) <= len(plaintext) // 4
    assert out.read_bytes() == plaintext
    assert len(synced) >= 7 and synced == sorted(synced) and synced[-1] == len(plaintext)


def file_draft(
    tmp_path: Path, sender: Identity, recipients: list[Identity], plaintext: bytes
) -> tuple[Path, StreamDraft]:
    """``plaintext`` in a file, and a draft to send it as a stream."""
    source = tmp_path / "source.bin"
    source.write_bytes(plaintext)
    return source, stream_draft(sender, recipients, len(plaintext))


def client_state(client: Callable[[float | None], ServiceClient], message_id: str) -> int:
    with client(None) as relay:
        received: int = relay.request("GET", f"/api/v1/uploads/{message_id}").json()["received"]
    return received


def test_a_link_that_stays_down_stops_the_upload_after_four_attempts(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streamed, "RETRY_WAITS", (0.01, 0.01, 0.01))
    (alice,) = people("alice")
    source, draft = file_draft(tmp_path, alice, [alice], os.urandom(2 * MIB))
    warned: list[str] = []
    with _Flaky({("POST", "0"): "request"}, always=True) as link, source.open("rb") as handle:
        upload = streamed.Upload(
            link.client(relay, alice), draft, handle, _ignore, lambda: False, warned.append
        )
        upload.open()
        with pytest.raises(ServiceError) as stopped:
            upload.send(0)
        upload.abandon()
    assert stopped.value.code == "unreachable"
    assert "0 of" in str(stopped.value) and "the same send again goes on" in (
        stopped.value.hint or ""
    )
    assert link.seen.count(("POST", "0")) == 4 and len(warned) == 3


# Helpers of the tests above.


class _Recording(httpx.HTTPTransport):
    """A transport that keeps the last answer, whose body a ServiceError does not carry."""

    last: httpx.Response | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.last = super().handle_request(request)
        return self.last

    def json(self) -> Any:
        assert self.last is not None
        return json.loads(self.last.content)


def _document_naming(sender: Identity, taken: Message, other: Message) -> StreamEnvelope:
    """A document of ``other``'s id signed by ``sender`` that names ``taken``'s stream: what a
    recipient of ``taken``, who can download its stream, could post to have it named twice."""
    body = other.document.to_json()
    header = {**body["header"], "length": taken.document.length}
    forged = StreamEnvelope.from_json(
        {
            **body,
            "header": header,
            "payload": {
                "digest": taken.document.to_json()["payload"]["digest"],
                "length": len(taken.stream),
            },
        }
    )
    signature = sender.sign("envelope", forged._signed_body())
    return StreamEnvelope(
        forged.header, forged.payload_digest, forged.payload_length, forged.receipts, signature
    )


def _half_sent_piece(relay: Relay, who: Identity, message: Message, offset: int) -> socket.socket:
    """An append whose headers and half its body are sent; the rest never is."""
    piece = message.stream[offset : offset + PIECE]
    query = f"offset={offset}"
    headers = httpsig.sign_request(
        who, method="POST", path=message.upload, query=query, body=piece, audience="relay"
    )
    lines = [
        f"POST {message.upload}?{query} HTTP/1.1",
        f"Host: 127.0.0.1:{relay.service.port}",
        f"Content-Type: {OCTETS}",
        f"Content-Length: {len(piece)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    sock = socket.create_connection(("127.0.0.1", relay.service.port), timeout=10)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + piece[: len(piece) // 2])
    return sock


def _ignore(*_: object) -> None:
    pass


class _Flaky(httpx.HTTPTransport):
    """A link to the relay that fails on the requests ``fails`` names, by method and
    ``offset`` query: once (every time if ``always``), ``"answer"`` lost after the relay
    took the request, the ``"request"`` lost before it left, or ``"late"``: no answer in
    time, and the request reaches the relay just before the same one made again. ``seen``
    lists every request, failed or not."""

    def __init__(self, fails: dict[tuple[str, str], str], always: bool = False) -> None:
        super().__init__()
        self.fails, self.always = fails, always
        self.seen: list[tuple[str, str]] = []
        self.late: dict[tuple[str, str], httpx.Request] = {}

    def client(self, relay: Relay, who: Identity) -> Callable[[float | None], ServiceClient]:
        """What client.streamed asks the relay through: a client of this link each time."""
        link = self

        class _Link(httpx.BaseTransport):  # the client closes its transport; the link stays
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                return link.handle_request(request)

        return lambda _timeout: ServiceClient(
            relay.service.url, "relay", who, answers=relay.key, transport=_Link(), timeout=30
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.params.get("offset", ""))
        self.seen.append(key)
        how = self.fails.get(key) if self.always else self.fails.pop(key, None)
        if how == "request":
            raise httpx.ConnectError("the link dropped", request=request)
        if how == "late":  # it reaches the relay only when the same request is made again
            self.late[key] = request
            raise httpx.ReadTimeout("no answer in time", request=request)
        if key in self.late:
            super().handle_request(self.late.pop(key)).close()
        answer = super().handle_request(request)
        if how == "answer":
            answer.read()
            answer.close()
            raise httpx.ReadError("the link dropped", request=request)
        return answer

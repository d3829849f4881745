"""The relay's payload streams (spec/format-v2.md section 5): a sender opens an upload,
appends it a piece at a time, and posts the envelope document once it is whole; a sender
or a recipient downloads the stored stream by ranges. Every request is signed and every
answer under /api/ is signed by ``views.sign_answer``.

The bytes are files (:mod:`.payloads`), the state rows (``uploads``, and each message's
``payload_digest``): a piece is on disk before the row counts it, and a stream under its
stored name before the message row that names it is committed, so a crash anywhere
leaves a state the same request, or one from the acknowledged offset, goes on from. What
a crash can leave behind (an upload's file without its row, a stored stream no message
names, an upload left for a day) the sweep drops, at start and once an hour per process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy.engine import Connection, Engine

from .._fields import HEX_MESSAGE_ID
from ..codes import Code
from ..config import MAX_PIECE_BYTES, Settings
from ..envelope import StreamEnvelope
from ..identity import PublicIdentity
from ..service.app import (
    ApiError,
    authenticate,
    log_swept,
    query_int,
    read_json,
    request_body,
    require_own_key,
    sweep_in_passing,
    transaction,
)
from ..service.storage import insert_new
from .payloads import (
    FileBusyError,
    Locked,
    PayloadStore,
    check_piece,
    check_range,
    check_stream_length,
    fits_quota,
)
from .tables import _SELECT_INBOX_ENTRY, messages, uploads

__all__ = [
    "SWEEP_SECONDS",
    "UPLOAD_IDLE_SECONDS",
    "Streams",
    "bp",
    "check_message_id",
    "claim",
    "drop_payload",
    "install",
    "stream_lock",
    "sweep",
]

bp = Blueprint("streams", __name__)

#: How often a process sweeps, in seconds (and once when it starts).
SWEEP_SECONDS = 3600
#: An upload not appended to for this long is dropped (spec section 5, step 4).
UPLOAD_IDLE_SECONDS = 24 * 3600
#: A stored stream no message names is dropped once its file is this old: a post that
#: stopped between naming the file and committing its row finds it when retried.
ORPHAN_SECONDS = 3600
#: The largest offset or length a query may say (a stream's length is below 2**53).
_MAX_OFFSET = 2**53 - 1
#: PostgreSQL advisory locks of one sender's quota, apart from any other lock's keys.
_QUOTA_LOCK_CLASS = int.from_bytes(b"scq", "big")


@dataclass
class Streams:
    """What the stream views need, made once per app (and so per process)."""

    store: PayloadStore
    engine: Engine
    max_payload_bytes: int
    max_sender_bytes: int
    next_sweep: float = field(default=0.0)


def install(app: Flask, settings: Settings, engine: Engine) -> None:
    """Give ``app`` the stream endpoints and the store under the relay's home, and sweep
    what a previous run may have left."""
    store = PayloadStore(settings.relay_dir() / "payloads")
    store.create_directories()
    streams = Streams(store, engine, settings.max_payload_bytes, settings.max_sender_bytes)
    app.extensions["streams"] = streams
    log_swept("relay", _sweep_now(streams))
    app.register_blueprint(bp)


def _streams() -> Streams:
    streams: Streams = current_app.extensions["streams"]
    return streams


@bp.before_app_request
def _sweep_when_due() -> None:
    streams = _streams()
    if time.time() >= streams.next_sweep:  # a failed sweep is tried again in an hour
        sweep_in_passing("relay", lambda: _sweep_now(streams))


def _sweep_now(streams: Streams) -> dict[str, int]:
    streams.next_sweep = time.time() + SWEEP_SECONDS
    return sweep(streams.engine, streams.store, int(time.time()))


def check_message_id(value: str) -> str:
    if not HEX_MESSAGE_ID.fullmatch(value):
        raise ApiError(400, Code.BAD_FIELD, "message id: expected 32 lowercase hex digits")
    return value


# The statements, built once.

_SELECT_UPLOAD = sa.select(
    uploads.c.sender_fp, uploads.c.length, uploads.c.received, uploads.c.updated_at
).where(uploads.c.id == sa.bindparam("id"))
_ADVANCE = (
    uploads.update()
    .where(uploads.c.id == sa.bindparam("key"), uploads.c.received == sa.bindparam("offset"))
    .values(received=sa.bindparam("new"), updated_at=sa.bindparam("now"))
)
_MESSAGE_EXISTS = sa.select(messages.c.id).where(messages.c.id == sa.bindparam("id"))
_STREAM_NAMED = sa.select(messages.c.id).where(messages.c.payload_digest == sa.bindparam("digest"))
_STORED_BY = sa.select(sa.func.coalesce(sa.func.sum(messages.c.size), 0)).where(
    messages.c.sender_fp == sa.bindparam("fp")
)
_UPLOADING_BY = sa.select(sa.func.coalesce(sa.func.sum(uploads.c.length), 0)).where(
    uploads.c.sender_fp == sa.bindparam("fp")
)
_SELECT_PAYLOAD = sa.select(
    messages.c.sender_fp, messages.c.payload_digest, messages.c.payload_length
).where(messages.c.id == sa.bindparam("id"))


def _state(message_id: str, length: int, received: int) -> dict[str, Any]:
    return {"id": message_id, "length": length, "received": received}


def _no_upload(message_id: str) -> ApiError:
    # The same answer whether there is no upload or it is another sender's.
    return ApiError(404, Code.NO_UPLOAD, f"no upload of message {message_id} of yours")


def _read_upload(message_id: str) -> Any:
    """The upload's committed row (None if there is none), read outside any transaction:
    the request's nonce goes with the transaction that changes something."""
    return _read_upload_of(_streams().engine, message_id)


def _read_upload_of(engine: Engine, message_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(_SELECT_UPLOAD, {"id": message_id}).first()


def _own_upload(message_id: str, caller: PublicIdentity) -> Any:
    upload = _read_upload(message_id)
    if upload is None or upload.sender_fp != caller.fingerprint_hex:
        raise _no_upload(message_id)
    return upload


# Open an upload (spec section 5, step 1).


def _upload_length(body: dict[str, Any]) -> int:
    length = body.get("length")
    if (
        set(body) != {"v", "length"}
        or body.get("v") != 2
        or isinstance(body.get("v"), bool)
        or not isinstance(length, int)
        or isinstance(length, bool)
        or not 0 <= length <= _MAX_OFFSET
    ):
        raise ApiError(
            400, Code.BAD_FIELD, 'expected {"v": 2, "length": L}, L the stream\'s length in bytes'
        )
    refused = check_stream_length(length)
    if refused is not None:
        raise ApiError(400, Code.BAD_FIELD, refused)
    return length


@bp.put("/api/v1/uploads/<message_id>")
def open_upload(message_id: str) -> tuple[Response, int]:
    caller = require_own_key()  # a device does not send (spec/sessions.md 3.2)
    check_message_id(message_id)
    length = _upload_length(read_json())
    streams = _streams()
    if length > streams.max_payload_bytes:
        raise ApiError(
            413,
            Code.TOO_LARGE,
            f"a stream of {length} bytes is longer than this relay takes"
            f" (max_payload_bytes: {streams.max_payload_bytes})",
        )
    store = streams.store
    # Locked before the transaction (as everywhere): the file and its row are made together.
    with store.locked(store.partial(message_id), create=True) as locked:
        assert locked is not None  # made if missing
        try:
            with transaction() as conn:
                received = _open(conn, message_id, caller, length, streams)
                if received is None:
                    store.start(locked)  # empty, and on disk before its row is
        except BaseException:
            if _read_upload(message_id) is None:
                store.remove(locked)  # made here for nothing
            raise
        if received is not None:
            if locked.size() < received:
                # Made here: a post took the stream already (and stopped before its commit).
                store.remove(locked)
            return jsonify(_state(message_id, length, received)), 200
    response = jsonify(_state(message_id, length, 0))
    response.headers["Location"] = f"/api/v1/uploads/{message_id}"
    return response, 201


def _open(
    conn: Connection, message_id: str, caller: PublicIdentity, length: int, streams: Streams
) -> int | None:
    """Open the upload; None if it is new, else how much of it the relay holds: it is
    open already, by the caller, with this length."""
    fingerprint = caller.fingerprint_hex
    if conn.dialect.name == "postgresql":
        # One sender's uploads open one at a time, so two cannot both fit the same room
        # (SQLite's write lock, taken when the transaction began, does it there).
        key = int.from_bytes(bytes.fromhex(fingerprint)[:4], "big", signed=True)
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:class, :key)"),
            {"class": _QUOTA_LOCK_CLASS, "key": key},
        )
    upload = conn.execute(_SELECT_UPLOAD, {"id": message_id}).first()
    if upload is not None:
        if upload.sender_fp == fingerprint and upload.length == length:
            received: int = upload.received  # the sender learns where to go on
            return received
        if upload.sender_fp == fingerprint:
            raise ApiError(
                409,
                Code.DUPLICATE_ID,
                f"your upload of message {message_id} is open with length {upload.length};"
                " abandon it (DELETE) to open it with another",
            )
        raise ApiError(409, Code.DUPLICATE_ID, f"message id {message_id} is taken")
    now = int(time.time())
    row = {
        "id": message_id,
        "sender_fp": fingerprint,
        "sender_name": caller.name,
        "length": length,
        "received": 0,
        "updated_at": now,
    }
    if conn.execute(insert_new(uploads, conn.dialect.name), row).first() is None:
        # Opened at this moment by another request (this insert waited for it).
        raise ApiError(409, Code.DUPLICATE_ID, f"message id {message_id} is taken")
    # After the insert, which waits for a post of this id in progress: a message it stored
    # is seen here.
    if conn.execute(_MESSAGE_EXISTS, {"id": message_id}).first() is not None:
        raise ApiError(409, Code.DUPLICATE_ID, f"message {message_id} is stored already")
    stored = int(conn.execute(_STORED_BY, {"fp": fingerprint}).scalar_one())
    uploading = int(conn.execute(_UPLOADING_BY, {"fp": fingerprint}).scalar_one())
    held = stored + uploading - length  # this upload's row is counted in uploading
    if not fits_quota(held, length, streams.max_sender_bytes):
        raise ApiError(
            413,
            Code.QUOTA_EXCEEDED,
            f"you hold {held} bytes at this relay (stored messages and open uploads);"
            f" {length} more would pass its max_sender_bytes ({streams.max_sender_bytes})",
        )
    return None


# Append a piece (spec section 5, step 2).


def _offset_refused(message_id: str, received: int, offset: int) -> ApiError:
    return ApiError(
        409,
        Code.UPLOAD_OFFSET,
        f"the upload of message {message_id} holds {received} bytes: the next piece starts"
        f" at offset {received}, not {offset}",
        received=received,
    )


@bp.post("/api/v1/uploads/<message_id>")
def append(message_id: str) -> Response:
    caller = require_own_key()  # a device does not send (spec/sessions.md 3.2)
    check_message_id(message_id)
    if "offset" not in request.args:
        raise ApiError(400, Code.BAD_FIELD, "offset: expected ?offset=N, where the piece starts")
    offset = query_int("offset", default=0, low=0, high=_MAX_OFFSET)
    piece = request_body()
    if piece and request.mimetype != "application/octet-stream":  # (empty: refused below)
        raise ApiError(
            415, Code.UNSUPPORTED_MEDIA_TYPE, "a piece's body must be application/octet-stream"
        )
    upload = _own_upload(message_id, caller)
    if offset != upload.received:  # first: it tells a sender going on where to
        raise _offset_refused(message_id, upload.received, offset)
    refused = check_piece(offset, len(piece), upload.length)
    if refused is not None:
        raise ApiError(refused.status, refused.code, refused.message)
    store = _streams().store
    with store.locked(store.partial(message_id)) as locked:
        upload = _own_upload(message_id, caller)  # as committed, now that no one changes it
        if offset != upload.received or locked is None:
            # (No file with an upload row: a post took the whole stream; nothing goes on.)
            raise _offset_refused(message_id, upload.received, offset)
        if locked.size() < upload.received:
            raise RuntimeError("an upload's file is shorter than its acknowledged bytes")
        store.write(locked, offset, piece)
        received = offset + len(piece)
        with transaction() as conn:
            moved = conn.execute(
                _ADVANCE,
                {"key": message_id, "offset": offset, "new": received, "now": int(time.time())},
            ).rowcount
        if moved != 1:
            raise _no_upload(message_id)  # dropped meanwhile (it holds no lock of its file)
    return jsonify(_state(message_id, upload.length, received))


@bp.get("/api/v1/uploads/<message_id>")
def upload_state(message_id: str) -> Response:
    caller = authenticate()
    check_message_id(message_id)
    with transaction() as conn:  # the request's nonce with it: one commit
        upload = conn.execute(_SELECT_UPLOAD, {"id": message_id}).first()
    if upload is None or upload.sender_fp != caller.fingerprint_hex:
        raise _no_upload(message_id)
    return jsonify(_state(message_id, upload.length, upload.received))


# Abandon (spec section 5, step 4).


@bp.delete("/api/v1/uploads/<message_id>")
def abandon(message_id: str) -> tuple[str, int]:
    caller = authenticate()
    check_message_id(message_id)
    with transaction() as conn:
        removed = conn.execute(
            uploads.delete().where(
                uploads.c.id == message_id, uploads.c.sender_fp == caller.fingerprint_hex
            )
        ).rowcount
    if not removed:
        raise _no_upload(message_id)
    store = _streams().store
    with store.locked(store.partial(message_id)) as locked:
        if locked is not None and _read_upload(message_id) is None:  # not opened again
            store.remove(locked)
    return "", 204


# Post the document (spec section 5, step 3): the parts views.store_envelope calls.


@contextlib.contextmanager
def stream_lock(message_id: str) -> Iterator[Locked | None]:
    """The upload's file of ``message_id`` locked, for a post to decide on (None if there is
    none); held until the message row is committed."""
    store = _streams().store
    with store.locked(store.partial(message_id)) as locked:
        yield locked


def claim(locked: Locked | None, document: StreamEnvelope) -> None:
    """Check that the sender's upload of ``document``'s id is whole and is the stream the
    document names, and give its file its stored name; an ApiError (409) if not. The caller
    then commits the message row, in a transaction that also drops the upload's row."""
    message_id = document.id
    digest_hex = document.payload_digest.hex()
    store = _streams().store
    with _streams().engine.connect() as conn:
        upload = conn.execute(_SELECT_UPLOAD, {"id": message_id}).first()
        named = conn.execute(_STREAM_NAMED, {"digest": digest_hex}).first()
    if upload is None or upload.sender_fp != document.header.sender.fingerprint_hex:
        raise ApiError(
            409,
            Code.NO_UPLOAD,
            f"no upload of message {message_id} by its sender: open one (PUT"
            f" /api/v1/uploads/{message_id}) and send the stream before the document",
        )
    mismatch = None
    if upload.length != document.payload_length:
        mismatch = (
            f"the upload is a stream of {upload.length} bytes, the document names one of"
            f" {document.payload_length}"
        )
    elif upload.received != upload.length:
        mismatch = f"the upload holds {upload.received} of its {upload.length} bytes"
    elif named is not None:
        mismatch = "the relay stores this stream for another message"
    elif locked is not None and locked.size() == upload.length:
        if store.digest(locked) != document.payload_digest:
            mismatch = "the SHA-256 of the uploaded stream is not the document's payload.digest"
    elif not _stored_whole(store, digest_hex, upload.length):
        mismatch = "the relay holds no stream of this upload"
    if mismatch is not None:
        raise ApiError(409, Code.PAYLOAD_MISMATCH, f"message {message_id}: {mismatch}")
    if locked is not None and locked.size() == upload.length:
        store.keep(locked, digest_hex)
    elif locked is not None:
        store.remove(locked)  # an empty file made since; the stream is under its name
    # Else a post of this document named the file and stopped before its commit: it is
    # there under its stored name, checked when it was given it.


def _stored_whole(store: PayloadStore, digest_hex: str, length: int) -> bool:
    try:
        return store.stored(digest_hex).stat().st_size == length
    except FileNotFoundError:
        return False


def drop_payload(digest_hex: str) -> None:
    """Remove a stored stream once no message names it (after the commit that deleted its
    message)."""
    store = _streams().store
    with store.locked(store.stored(digest_hex)) as locked:
        if locked is not None and not _named(_streams().engine, digest_hex):
            store.remove(locked)


def _named(engine: Engine, digest_hex: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(_STREAM_NAMED, {"digest": digest_hex}).first() is not None


# Download (spec section 5, step 5).


@bp.get("/api/v1/messages/<message_id>/payload")
def get_payload(message_id: str) -> Response:
    caller = authenticate()
    check_message_id(message_id)
    offset = query_int("offset", default=0, low=0, high=_MAX_OFFSET)
    size = query_int("length", default=MAX_PIECE_BYTES, low=1, high=MAX_PIECE_BYTES)
    not_found = ApiError(404, Code.NOT_FOUND, f"no message {message_id} for you")
    with transaction() as conn:  # the request's nonce with it: one commit
        row = conn.execute(_SELECT_PAYLOAD, {"id": message_id}).first()
        if row is None:
            raise not_found
        entry = {"message_id": message_id, "recipient_fp": caller.fingerprint_hex}
        if (
            row.sender_fp != caller.fingerprint_hex
            and conn.execute(_SELECT_INBOX_ENTRY, entry).first() is None
        ):
            raise not_found
    if row.payload_digest is None:
        raise ApiError(
            404, Code.NOT_FOUND, f"message {message_id} has no payload stream (version 1)"
        )
    refused = check_range(offset, row.payload_length)
    if refused is not None:
        raise ApiError(400, Code.BAD_FIELD, refused)
    data = _streams().store.read(row.payload_digest, offset, size)
    if data is None:
        raise not_found  # deleted since
    return Response(data, mimetype="application/octet-stream")


# The sweep.


def sweep(engine: Engine, store: PayloadStore, now: int) -> dict[str, int]:
    """Drop what no request will finish: uploads not appended to for a day (row and file),
    upload files without a row, and stored streams no message names whose file is over an
    hour old. A file another request holds is left for the next sweep. How many of each."""
    swept = {"uploads": 0, "partial": 0, "payloads": 0}
    with engine.connect() as conn:
        stale = (
            conn.execute(
                sa.select(uploads.c.id).where(uploads.c.updated_at < now - UPLOAD_IDLE_SECONDS)
            )
            .scalars()
            .all()
        )
    for message_id in stale:
        with (
            contextlib.suppress(FileBusyError),
            store.locked(store.partial(message_id), wait=False) as locked,
        ):
            with engine.begin() as conn:
                dropped = conn.execute(
                    uploads.delete().where(
                        uploads.c.id == message_id,
                        uploads.c.updated_at < now - UPLOAD_IDLE_SECONDS,
                    )
                ).rowcount
            if dropped:
                swept["uploads"] += 1
                if locked is not None:
                    store.remove(locked)
    for message_id in store.partial_ids():
        with (
            contextlib.suppress(FileBusyError),
            store.locked(store.partial(message_id), wait=False) as locked,
        ):
            if locked is not None and _read_upload_of(engine, message_id) is None:
                store.remove(locked)
                swept["partial"] += 1
    for digest_hex in store.stored_digests(older_than=now - ORPHAN_SECONDS):
        with (
            contextlib.suppress(FileBusyError),
            store.locked(store.stored(digest_hex), wait=False) as locked,
        ):
            if locked is not None and not _named(engine, digest_hex):
                store.remove(locked)
                swept["payloads"] += 1
    return swept

"""The relay's HTTP API: envelopes in and out (spec §7), inboxes, and the directory of
people's public keys. The relay holds no key and no share; what it stores is checked
(canonical, signed by its sender) before it is stored. Every answer under /api/, errors
included, is signed with the relay's key for the request it answers (spec §11.4)."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from .. import canonical, httpsig
from .._encoding import b64decode
from .._fields import HEX_MESSAGE_ID as _HEX_ID
from ..codes import Code
from ..envelope import Envelope, StreamEnvelope, document_from_bytes
from ..errors import FormatError, SignatureError
from ..identity import (
    NAME_LOOKALIKES,
    NAME_SEPARATORS,
    SIGNATURE_LENGTH_BYTES,
    Identity,
    PublicIdentity,
    check_name,
    name_skeleton,
    new_name_refusal,
)
from ..service.app import (
    ApiError,
    authenticate,
    query_int,
    read_json,
    request_body,
    request_target,
    transaction,
)
from ..service.storage import insert_new
from . import openapi, streams
from .streams import check_message_id
from .tables import (
    _DROP_UPLOAD,
    _INSERT_INBOX,
    _INSERT_POLICY,
    _SELECT_ENVELOPE,
    _SELECT_INBOX_ENTRY,
    _SELECT_REGISTERED,
    _SELECT_STORED,
    directory,
    inbox,
    messages,
    policies,
)

__all__ = ["bp", "endorsement_body", "sign_answer"]

bp = Blueprint("relay", __name__)

#: The answers the relay signs: its API's, whatever their status (spec §11.4).
SIGNED_PREFIX = "/api/"


def _db() -> Engine:
    engine: Engine = current_app.extensions["securecomm"]["engine"]
    return engine


INBOX_PAGE_MAX = 100


def _not_found(message_id: str) -> ApiError:
    # The same answer whether the message does not exist or is not the caller's.
    return ApiError(404, Code.NOT_FOUND, f"no message {message_id} for you")


_DECIMAL = re.compile(r"[0-9]{1,12}")


def store_envelope() -> tuple[Response, int]:
    if request.mimetype != "application/json":
        raise ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
    body = request_body()
    # The app reads bodies up to a stream's piece too, which may be the larger.
    limit = current_app.extensions["relay"]["max_envelope_bytes"]
    if len(body) > limit:
        raise ApiError(413, Code.TOO_LARGE, f"body larger than {limit} bytes")
    envelope = document_from_bytes(body)
    envelope.verify()
    if any(slot.fingerprint is None for slot in envelope.header.custodians):
        raise ApiError(
            400,
            Code.NO_CUSTODIANS,
            "the relay takes envelopes whose shares are with custodian services",
        )
    # Hashed before the transaction: its write lock is held by one writer at a time.
    digest = hashlib.sha256(body).hexdigest()
    if isinstance(envelope, StreamEnvelope):
        return _store_stream(envelope, body, digest)
    return _store(envelope, body, digest)


def _store_stream(document: StreamEnvelope, body: bytes, digest: str) -> tuple[Response, int]:
    """A version 2 document, stored with the stream its sender uploaded (spec/format-v2.md
    section 5, step 3), under the upload's lock until the message row is committed."""
    with streams.stream_lock(document.id) as locked:
        # Stored already: a retry whose answer was lost, or a request this one waited for.
        with _db().connect() as conn:
            existing = conn.execute(_SELECT_STORED, {"id": document.id}).first()
        if existing is not None:
            return _stored_before(document.id, digest, len(body), existing)
        streams.claim(locked, document)
        return _store(document, body, digest)


def _stored_before(message_id: str, digest: str, size: int, existing: Any) -> tuple[Response, int]:
    """The answer to a post of an envelope the relay already holds (``existing``)."""
    if existing.digest != digest:
        raise ApiError(409, Code.DUPLICATE_ID, f"message {message_id} exists with other content")
    return jsonify(_stored(message_id, digest, size, existing.stored_at)), 200


def _store(envelope: Envelope | StreamEnvelope, body: bytes, digest: str) -> tuple[Response, int]:
    sender = envelope.header.sender
    stream = envelope if isinstance(envelope, StreamEnvelope) else None
    with transaction() as conn:
        registered = conn.execute(_SELECT_REGISTERED, {"name": sender.name}).scalar()
        if registered is not None and registered != sender.fingerprint_hex:
            raise ApiError(
                403,
                Code.SENDER_KEY_MISMATCH,
                f"sender {sender.name!r} is registered with key {registered[:16]}, the"
                f" envelope is signed by {sender.fingerprint_hex[:16]}",
            )
        now = int(time.time())
        # A message stored before, or at this moment by another request (a client's retry;
        # on PostgreSQL this insert waits for it on the message id), is not stored again:
        # the post is answered as a repeated post is.
        stored = conn.execute(
            insert_new(messages, conn.dialect.name),
            {
                "id": envelope.id,
                "sender_name": sender.name,
                "sender_fp": sender.fingerprint_hex,
                "created": envelope.header.created,
                "stored_at": now,
                # What the message holds at the relay: its stream too.
                "size": len(body) + (stream.payload_length if stream else 0),
                "digest": digest,
                "envelope": body,
                "payload_digest": stream.payload_digest.hex() if stream else None,
                "payload_length": stream.payload_length if stream else None,
            },
        ).first()
        if stored is None:
            existing = conn.execute(_SELECT_STORED, {"id": envelope.id}).first()
            if existing is None:  # not the id, then the stream (unique) another message has
                raise ApiError(
                    409,
                    Code.PAYLOAD_MISMATCH,
                    f"message {envelope.id}: the relay stores this stream for another message",
                )
            return _stored_before(envelope.id, digest, len(body), existing)
        if stream is not None:
            conn.execute(_DROP_UPLOAD, {"id": envelope.id})
        conn.execute(
            _INSERT_POLICY,
            {
                "message_id": envelope.id,
                "policy": canonical.dumps(envelope.header.policy.to_json()).decode(),
            },
        )
        conn.execute(
            _INSERT_INBOX,
            [
                {
                    "message_id": envelope.id,
                    "recipient_fp": r.fingerprint.hex(),
                    "recipient_name": r.name,
                }
                for r in envelope.header.recipients
            ],
        )
    response = jsonify(_stored(envelope.id, digest, len(body), now))
    response.headers["Location"] = f"/api/v1/messages/{envelope.id}"
    return response, 201


bp.add_url_rule("/api/v1/messages", "post_message", store_envelope, methods=["POST"])
# The seed's endpoint, kept as an alias.
bp.add_url_rule("/api/relay", "post_relay", store_envelope, methods=["POST"])


@bp.get("/api/v1/messages/<message_id>")
def get_message(message_id: str) -> Response:
    caller = authenticate()
    check_message_id(message_id)
    with transaction() as conn:  # the request's nonce with it: one commit
        row = conn.execute(_SELECT_ENVELOPE, {"id": message_id}).first()
        if row is None:
            raise _not_found(message_id)
        if row.sender_fp != caller.fingerprint_hex and not _is_recipient(conn, message_id, caller):
            raise _not_found(message_id)
    return Response(row.envelope, mimetype="application/json")


@bp.delete("/api/v1/messages/<message_id>")
def delete_message(message_id: str) -> tuple[str, int]:
    caller = authenticate()
    check_message_id(message_id)
    with transaction() as conn:
        # Locked (PostgreSQL; SQLite's write lock does it there): two recipients deleting at
        # once would each still count the other's inbox entry, and neither drop the message.
        row = conn.execute(
            sa.select(messages.c.sender_fp, messages.c.payload_digest)
            .where(messages.c.id == message_id)
            .with_for_update()
        ).first()
        if row is None:
            raise _not_found(message_id)
        gone = True
        if row.sender_fp == caller.fingerprint_hex:
            _delete(conn, message_id)
        else:
            removed = conn.execute(
                inbox.delete().where(
                    inbox.c.message_id == message_id,
                    inbox.c.recipient_fp == caller.fingerprint_hex,
                )
            ).rowcount
            if not removed:
                raise _not_found(message_id)
            left = conn.execute(
                sa.select(sa.func.count())
                .select_from(inbox)
                .where(inbox.c.message_id == message_id)
            ).scalar()
            gone = not left
            if gone:
                _delete(conn, message_id)
    if gone and row.payload_digest is not None:
        streams.drop_payload(row.payload_digest)  # once no row names it: after the commit
    return "", 204


def _delete(conn: Connection, message_id: str) -> None:
    conn.execute(inbox.delete().where(inbox.c.message_id == message_id))
    conn.execute(policies.delete().where(policies.c.message_id == message_id))
    conn.execute(messages.delete().where(messages.c.id == message_id))


@bp.get("/api/v1/inbox")
def get_inbox() -> Response:
    caller = authenticate()
    limit = query_int("limit", default=50, low=1, high=INBOX_PAGE_MAX)
    after = request.args.get("after", "")
    query = (
        sa.select(
            messages.c.id,
            messages.c.sender_name,
            messages.c.sender_fp,
            messages.c.created,
            messages.c.stored_at,
            messages.c.size,
            messages.c.digest,
            policies.c.policy,
        )
        .join(inbox, inbox.c.message_id == messages.c.id)
        .outerjoin(policies, policies.c.message_id == messages.c.id)
        .where(inbox.c.recipient_fp == caller.fingerprint_hex)
        .order_by(messages.c.stored_at, messages.c.id)
        .limit(limit + 1)
    )
    if after:
        stored_at, _, last_id = after.partition(":")
        if not _DECIMAL.fullmatch(stored_at) or not _HEX_ID.fullmatch(last_id):
            raise ApiError(400, Code.BAD_FIELD, "after: expected a cursor from a previous page")
        # Bound as the columns are (stored_at is 64-bit: a cursor's time beyond 2**31 is an
        # empty page, not a 500 on PostgreSQL).
        query = query.where(
            sa.tuple_(messages.c.stored_at, messages.c.id) > (int(stored_at), last_id)
        )
    with transaction() as conn:  # the request's nonce with it: one commit
        rows = conn.execute(query).fetchall()
    page = rows[:limit]
    next_cursor = f"{page[-1].stored_at}:{page[-1].id}" if len(rows) > limit else None
    return jsonify(
        {
            "messages": [
                {
                    "id": r.id,
                    "sender": {"name": r.sender_name, "fingerprint": r.sender_fp},
                    "created": r.created,
                    "stored_at": r.stored_at,
                    "size": r.size,
                    "digest": r.digest,
                    "policy": canonical.loads(r.policy.encode()) if r.policy else None,
                }
                for r in page
            ],
            "next": next_cursor,
        }
    )


@bp.get("/api/v1/directory/<name>")
def get_directory(name: str) -> Response:
    check_name(name, field="name")
    with _db().connect() as conn:
        row = conn.execute(
            sa.select(directory.c.identity, directory.c.fingerprint, directory.c.updated_at).where(
                directory.c.name == name
            )
        ).first()
    if row is None:
        raise ApiError(404, Code.NOT_FOUND, f"no directory entry for {name!r}")
    return jsonify(
        {
            "identity": canonical.loads(row.identity.encode()),
            "fingerprint": row.fingerprint,
            "updated_at": row.updated_at,
        }
    )


def _refuse_reserved(name: str) -> None:
    if name in current_app.extensions["relay"]["reserved_names"]:
        raise ApiError(
            403,
            Code.RESERVED_NAME,
            f"{name!r} names a party of this network (the relay or a custodian): no person"
            " may register it",
        )


#: The PostgreSQL advisory lock that new directory entries take, one at a time.
_NEW_NAME_LOCK = int.from_bytes(b"scnames", "big")


def _refuse_lookalike(conn: Connection, name: str) -> None:
    """Refuse a new entry under a name a reader would take for one registered or reserved
    (spec §14.6): the skeleton is compared in the database, so no list of names is read."""
    skeleton: Any = directory.c.name
    for separator in NAME_SEPARATORS:
        skeleton = sa.func.replace(skeleton, separator, "")
    for seen, read in NAME_LOOKALIKES:  # SQL's replace() goes left to right, as Python's
        skeleton = sa.func.replace(skeleton, seen, read)
    alike = conn.execute(
        sa.select(directory.c.name).where(skeleton == name_skeleton(name)).limit(1)
    ).scalars()
    reason = new_name_refusal(name, {*alike, *current_app.extensions["relay"]["reserved_names"]})
    if reason is not None:
        raise ApiError(403, Code.LOOKALIKE_NAME, f"{reason}; choose another name")


@bp.get("/api/v1/names/<name>")
def get_name(name: str) -> Response:
    """Whether a person may register ``name`` now, by the rules of a new entry (spec
    §14.6): a client asks before it makes a key. A name listed already is free for the key
    that holds it only (``GET /api/v1/directory/{name}`` says which)."""
    check_name(name, field="name")
    _refuse_reserved(name)
    with _db().connect() as conn:
        listed = conn.execute(sa.select(directory.c.name).where(directory.c.name == name)).first()
        if listed is None:
            _refuse_lookalike(conn, name)
    return jsonify({"name": name, "listed": listed is not None})


@bp.put("/api/v1/directory/<name>")
def put_directory(name: str) -> tuple[Response, int]:
    caller = authenticate()
    check_name(name, field="name")
    _refuse_reserved(name)
    body = read_json()
    if (
        set(body) - {"v", "identity", "endorsement"}
        or body.get("v") != 1
        or isinstance(body.get("v"), bool)
    ):
        raise ApiError(
            400, Code.BAD_FIELD, 'expected {"v": 1, "identity": {...}, "endorsement"?: ...}'
        )
    new = PublicIdentity.from_json(body.get("identity"), field="identity")
    if new.name != name:
        raise ApiError(400, Code.BAD_FIELD, f"identity.name {new.name!r} is not {name!r}")
    if new.fingerprint != caller.fingerprint:
        raise ApiError(
            403, Code.NOT_YOUR_KEY, "a directory entry must be registered by the key it names"
        )
    try:
        return _register(name, new, body)
    except IntegrityError:
        # Registered at the same moment by another request (on PostgreSQL this insert
        # waited for it on the name): decided again, against the entry it made.
        return _register(name, new, body)


def _register(name: str, new: PublicIdentity, body: dict[str, Any]) -> tuple[Response, int]:
    with transaction() as conn:
        row = conn.execute(
            sa.select(directory.c.identity, directory.c.fingerprint).where(directory.c.name == name)
        ).first()
        now = int(time.time())
        values = {
            "fingerprint": new.fingerprint_hex,
            "identity": canonical.dumps(new.to_json()).decode(),
            "updated_at": now,
        }
        if row is None:
            if conn.dialect.name == "postgresql":
                # New entries one at a time, until committed, so that two look-alikes
                # registered at once do not each find the other missing (SQLite's write
                # lock, taken when the transaction began, does it there).
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _NEW_NAME_LOCK})
            _refuse_lookalike(conn, name)  # an entry made before stays its holder's
            conn.execute(directory.insert().values(name=name, **values))
            return jsonify({"name": name, "fingerprint": new.fingerprint_hex}), 201
        if row.fingerprint == new.fingerprint_hex:
            return jsonify({"name": name, "fingerprint": new.fingerprint_hex}), 200
        old = PublicIdentity.from_json(canonical.loads(row.identity.encode()))
        _check_endorsement(body.get("endorsement"), old, new)
        conn.execute(directory.update().where(directory.c.name == name).values(**values))
    return jsonify({"name": name, "fingerprint": new.fingerprint_hex}), 200


@bp.after_app_request
def sign_answer(response: Response) -> Response:
    """Sign an answer under /api/ for the request it answers: a "no message for you" or an
    empty inbox page must be as unforgeable as a message (spec §11.4)."""
    if not request.path.startswith(SIGNED_PREFIX):
        return response
    path, query = request_target()
    binding = httpsig.answer_binding(
        method=request.method, path=path, query=query, headers=dict(request.headers.items())
    )
    identity: Identity = current_app.extensions["securecomm"]["identity"]
    response.headers[httpsig.ANSWER_HEADER] = httpsig.sign_answer(
        identity, binding, status=response.status_code, body=response.get_data()
    )
    return response


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.DOCUMENT)


def _stored(message_id: str, digest: str, size: int, stored_at: int) -> dict[str, Any]:
    return {"id": message_id, "digest": digest, "size": size, "stored_at": stored_at}


def _is_recipient(conn: sa.Connection, message_id: str, caller: PublicIdentity) -> bool:
    entry = {"message_id": message_id, "recipient_fp": caller.fingerprint_hex}
    return conn.execute(_SELECT_INBOX_ENTRY, entry).first() is not None


def endorsement_body(name: str, new: PublicIdentity) -> dict[str, Any]:
    """What the old key signs to hand a directory name over to a new key."""
    return {"v": 1, "name": name, "new_fingerprint": new.fingerprint_hex}


def _check_endorsement(value: object, old: PublicIdentity, new: PublicIdentity) -> None:
    refused = ApiError(
        409,
        Code.KEY_CHANGED,
        f"{old.name!r} is registered with key {old.short_fingerprint()}; replacing it with"
        f" {new.short_fingerprint()} needs an endorsement signed by the registered key",
    )
    if not isinstance(value, str):
        raise refused
    try:
        signature = b64decode(value, field="endorsement", length=SIGNATURE_LENGTH_BYTES)
        old.verify(signature, "directory-rotation", endorsement_body(old.name, new))
    except (SignatureError, FormatError):
        raise refused from None

"""The relay: stores sealed envelopes and a directory of public keys. Never a key, never a share.

Every envelope it accepts has been decoded under spec/format-v1.md and its
sender's signature checked; what it stores is the exact canonical bytes it
received, and it answers with their SHA-256 so the sender can compare the
relay's copy with its own.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, jsonify, request
from sqlalchemy.engine import Connection, Engine

from .. import canonical
from .._encoding import b64decode
from ..codes import Code
from ..config import Settings, origin_of
from ..envelope import Envelope
from ..errors import FormatError, IdentityError, SignatureError
from ..identity import (
    SIGNATURE_LENGTH_BYTES,
    PublicIdentity,
    check_name,
    load_or_create,
    load_public,
)
from ..service.app import ApiError, authenticate, create_app, query_int, read_json
from ..service.storage import define_common, open_database
from . import openapi

__all__ = ["build_app", "create_relay_app"]

metadata = sa.MetaData()
_, nonces = define_common(metadata)


def _message_key() -> sa.Column[str]:
    """A primary-key column naming a stored message, gone with it."""
    return sa.Column(
        "message_id",
        sa.String(32),
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    )


messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sender_name", sa.String(64), nullable=False),
    sa.Column("sender_fp", sa.String(64), nullable=False, index=True),
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("stored_at", sa.Integer, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
)
inbox = sa.Table(
    "inbox",
    metadata,
    _message_key(),
    sa.Column("recipient_fp", sa.String(64), primary_key=True, index=True),
    sa.Column("recipient_name", sa.String(64), nullable=False),
)
# A table of its own, not a column of messages, so that a database made before it opens
# unchanged (create_all adds it); a message stored before has no row: policy unknown.
policies = sa.Table(
    "policies",
    metadata,
    _message_key(),
    sa.Column("policy", sa.Text, nullable=False),  # the header's policy, canonical JSON
)
directory = sa.Table(
    "directory",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("identity", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Integer, nullable=False),
)

# The statements of the store path, built once: building and cache-keying them for each
# request took 0.19 of the 0.44 ms of CPU its transaction cost (bench/services.py).
_SELECT_REGISTERED = sa.select(directory.c.fingerprint).where(
    directory.c.name == sa.bindparam("name")
)
_SELECT_STORED = sa.select(messages.c.digest, messages.c.stored_at).where(
    messages.c.id == sa.bindparam("id")
)
_INSERT_MESSAGE = messages.insert()
_INSERT_INBOX = inbox.insert()
_INSERT_POLICY = policies.insert()

INBOX_PAGE_MAX = 100
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_WEB_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def _not_found(message_id: str) -> ApiError:
    # The same answer whether the message does not exist or is not the caller's.
    return ApiError(404, Code.NOT_FOUND, f"no message {message_id} for you")


_DECIMAL = re.compile(r"[0-9]{1,12}")
_HEX_ID = re.compile(r"[0-9a-f]{32}")


def _message_id(value: str) -> str:
    if not _HEX_ID.fullmatch(value):
        raise ApiError(400, Code.BAD_FIELD, "message id: expected 32 lowercase hex digits")
    return value


def create_relay_app(settings: Settings, *, engine: Engine | None = None) -> Flask:
    identity = load_or_create(settings.relay_dir() / "identity.key", "relay")
    db = engine or open_database(settings.relay_database(), metadata)
    # Behind a proxy the page's origin is not the relay's own address: name it in web_origins
    # (or SERVER_URL, whose origin is the default).
    app = create_app(
        "relay",
        identity,
        db,
        nonces,
        max_body_bytes=settings.max_envelope_bytes,
        cors_origins=settings.allowed_origins(),
    )

    def store_envelope() -> tuple[Response, int]:
        if request.mimetype != "application/json":
            raise ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
        body = request.get_data(cache=True)
        envelope = Envelope.from_bytes(body)
        envelope.verify()
        if any(slot.fingerprint is None for slot in envelope.header.custodians):
            raise ApiError(
                400,
                Code.NO_CUSTODIANS,
                "the relay takes envelopes whose shares are with custodian services",
            )
        sender = envelope.header.sender
        # Hashed before the transaction: its write lock is held by one writer at a time.
        digest = hashlib.sha256(body).hexdigest()
        with db.begin() as conn:
            registered = conn.execute(_SELECT_REGISTERED, {"name": sender.name}).scalar()
            if registered is not None and registered != sender.fingerprint_hex:
                raise ApiError(
                    403,
                    Code.SENDER_KEY_MISMATCH,
                    f"sender {sender.name!r} is registered with key {registered[:16]}, the"
                    f" envelope is signed by {sender.fingerprint_hex[:16]}",
                )
            existing = conn.execute(_SELECT_STORED, {"id": envelope.id}).first()
            if existing is not None:
                if existing.digest != digest:
                    raise ApiError(
                        409, Code.DUPLICATE_ID, f"message {envelope.id} exists with other content"
                    )
                return jsonify(_stored(envelope.id, digest, len(body), existing.stored_at)), 200
            now = int(time.time())
            conn.execute(
                _INSERT_MESSAGE,
                {
                    "id": envelope.id,
                    "sender_name": sender.name,
                    "sender_fp": sender.fingerprint_hex,
                    "created": envelope.header.created,
                    "stored_at": now,
                    "size": len(body),
                    "digest": digest,
                    "envelope": body,
                },
            )
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

    app.add_url_rule("/api/v1/messages", "post_message", store_envelope, methods=["POST"])
    # The seed's endpoint, kept as an alias.
    app.add_url_rule("/api/relay", "post_relay", store_envelope, methods=["POST"])

    @app.get("/api/v1/messages/<message_id>")
    def get_message(message_id: str) -> Response:
        caller = authenticate()
        _message_id(message_id)
        with db.connect() as conn:
            row = conn.execute(
                sa.select(messages.c.envelope, messages.c.sender_fp).where(
                    messages.c.id == message_id
                )
            ).first()
            if row is None:
                raise _not_found(message_id)
            if row.sender_fp != caller.fingerprint_hex and not _is_recipient(
                conn, message_id, caller
            ):
                raise _not_found(message_id)
        return Response(row.envelope, mimetype="application/json")

    @app.delete("/api/v1/messages/<message_id>")
    def delete_message(message_id: str) -> tuple[str, int]:
        caller = authenticate()
        _message_id(message_id)
        with db.begin() as conn:
            sender_fp = conn.execute(
                sa.select(messages.c.sender_fp).where(messages.c.id == message_id)
            ).scalar()
            if sender_fp is None:
                raise _not_found(message_id)
            if sender_fp == caller.fingerprint_hex:
                _delete(conn, message_id)
                return "", 204
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
            if not left:
                _delete(conn, message_id)
        return "", 204

    def _delete(conn: Connection, message_id: str) -> None:
        conn.execute(inbox.delete().where(inbox.c.message_id == message_id))
        conn.execute(policies.delete().where(policies.c.message_id == message_id))
        conn.execute(messages.delete().where(messages.c.id == message_id))

    @app.get("/api/v1/inbox")
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
            query = query.where(
                sa.tuple_(messages.c.stored_at, messages.c.id) > (int(stored_at), last_id)
            )
        with db.connect() as conn:
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

    @app.get("/api/v1/directory/<name>")
    def get_directory(name: str) -> Response:
        check_name(name, field="name")
        with db.connect() as conn:
            row = conn.execute(
                sa.select(
                    directory.c.identity, directory.c.fingerprint, directory.c.updated_at
                ).where(directory.c.name == name)
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

    @app.put("/api/v1/directory/<name>")
    def put_directory(name: str) -> tuple[Response, int]:
        caller = authenticate()
        check_name(name, field="name")
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
        with db.begin() as conn:
            row = conn.execute(
                sa.select(directory.c.identity, directory.c.fingerprint).where(
                    directory.c.name == name
                )
            ).first()
            now = int(time.time())
            values = {
                "fingerprint": new.fingerprint_hex,
                "identity": canonical.dumps(new.to_json()).decode(),
                "updated_at": now,
            }
            if row is None:
                conn.execute(directory.insert().values(name=name, **values))
                return jsonify({"name": name, "fingerprint": new.fingerprint_hex}), 201
            if row.fingerprint == new.fingerprint_hex:
                return jsonify({"name": name, "fingerprint": new.fingerprint_hex}), 200
            old = PublicIdentity.from_json(canonical.loads(row.identity.encode()))
            _check_endorsement(body.get("endorsement"), old, new)
            conn.execute(directory.update().where(directory.c.name == name).values(**values))
        return jsonify({"name": name, "fingerprint": new.fingerprint_hex}), 200

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        return jsonify(openapi.DOCUMENT)

    web_config = _web_config(settings)
    # The page runs only code from here and talks only to the relay and the custodians.
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self' " + " ".join(origin_of(c.url) for c in settings.custodians),
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )

    # Read once: a handful of small files, and nothing on disk can be reached by a path.
    web_files = {
        path.relative_to(WEB_DIR).as_posix(): (path.read_bytes(), _WEB_TYPES[path.suffix])
        for path in WEB_DIR.rglob("*")
        if path.suffix in _WEB_TYPES
    }

    def web_file(filename: str) -> Response:
        if filename not in web_files:
            raise ApiError(404, Code.NOT_FOUND, "no such file")
        content, mimetype = web_files[filename]
        response = Response(content, mimetype=mimetype)
        response.headers["Content-Security-Policy"] = policy
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/")
    def index() -> Response:
        return web_file("index.html")

    @app.get("/web/<path:filename>")
    def web_asset(filename: str) -> Response:
        return web_file(filename)

    @app.get("/api/v1/web-config")
    def get_web_config() -> Response:
        return jsonify(web_config)

    return app


def _web_config(settings: Settings) -> dict[str, Any]:
    """What the web client needs to know: the custodians, where they are, and the threshold.

    A custodian's fingerprint is given where the relay's own home holds its public key
    (``RELAY/custodians/NAME.pub``, which ``securecomm init`` writes); the page pins what
    it sees on first use either way and compares the two. The relay reads no one else's
    files (a client's pinned keys least of all).
    """
    custodians = []
    for custodian in settings.custodians:
        pinned = custodian_key(settings, custodian.name)
        custodians.append(
            {
                "name": custodian.name,
                "url": custodian.url,
                "fingerprint": pinned.fingerprint_hex if pinned else None,
            }
        )
    return {
        "v": 1,
        "n": settings.n_shares,
        "threshold": settings.threshold,
        "custodians": custodians,
        "max_envelope_bytes": settings.max_envelope_bytes,
        "origins": list(settings.allowed_origins()),
    }


def custodian_key(settings: Settings, name: str) -> PublicIdentity | None:
    """The public key of custodian ``name`` as the relay's home was given it, if it was."""
    path = settings.relay_dir() / "custodians" / f"{name}.pub"
    if not path.exists():
        return None
    key = load_public(path)
    if key.name != name:
        raise IdentityError(f"{path} holds the key of {key.name!r}, not of {name!r}")
    return key


def _stored(message_id: str, digest: str, size: int, stored_at: int) -> dict[str, Any]:
    return {"id": message_id, "digest": digest, "size": size, "stored_at": stored_at}


def _is_recipient(conn: sa.Connection, message_id: str, caller: PublicIdentity) -> bool:
    return (
        conn.execute(
            sa.select(inbox.c.message_id).where(
                inbox.c.message_id == message_id,
                inbox.c.recipient_fp == caller.fingerprint_hex,
            )
        ).first()
        is not None
    )


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


def build_app(home: str | None = None) -> Flask:
    """Entry point for a WSGI server: the relay app for HOME's settings."""
    from ..config import load_settings

    return create_relay_app(load_settings(home))

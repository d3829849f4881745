"""The relay's tables: envelopes as they were posted, who each is for, each one's
policy, the directory, the open uploads of payload streams, and the nonces of signed
requests. A stream's bytes are files (``payloads.py``), never rows."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ..service.storage import Schema, define_common, define_revocations

metadata = sa.MetaData()
_, nonces = define_common(metadata)
revocations = define_revocations(metadata)


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
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("stored_at", sa.BigInteger, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
    # A version 2 message's stream (revision relay_0005): its file's name, the SHA-256 in
    # hex, and its length. Null for version 1. One message per stream: a second would lose
    # its stream when the first is deleted.
    sa.Column("payload_digest", sa.String(64), nullable=True, index=True, unique=True),
    sa.Column("payload_length", sa.BigInteger, nullable=True),
)
inbox = sa.Table(
    "inbox",
    metadata,
    _message_key(),
    sa.Column("recipient_fp", sa.String(64), primary_key=True, index=True),
    sa.Column("recipient_name", sa.String(64), nullable=False),
)
# A table of its own, not a column of messages (revision relay_0002); a message stored
# before it has no row: policy unknown.
policies = sa.Table(
    "policies",
    metadata,
    _message_key(),
    sa.Column("policy", sa.Text, nullable=False),  # the header's policy, canonical JSON
)
# An open upload of a payload stream (revision relay_0005): ``received`` is how many bytes
# of its file were acknowledged; a byte past it is from a piece that was not.
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sender_fp", sa.String(64), nullable=False, index=True),
    sa.Column("sender_name", sa.String(64), nullable=False),
    sa.Column("length", sa.BigInteger, nullable=False),
    sa.Column("received", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False, index=True),
)
# A person's devices (revision relay_0006): each one's delegation (canonical JSON) and the
# person's X25519 key HPKE-sealed to it (base64), kept for the device to fetch.
devices = sa.Table(
    "devices",
    metadata,
    sa.Column("person_fp", sa.String(64), primary_key=True),
    sa.Column("device_fp", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, index=True),
    sa.Column("delegation", sa.Text, nullable=False),
    sa.Column("sealed_key", sa.Text, nullable=False),
    sa.Column("expires", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
directory = sa.Table(
    "directory",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("identity", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# The statements of the store path, built once: building and cache-keying them for each
# request took 0.19 of the 0.44 ms of CPU its transaction cost (bench/services.py).
_SELECT_REGISTERED = sa.select(directory.c.fingerprint).where(
    directory.c.name == sa.bindparam("name")
)
_SELECT_STORED = sa.select(messages.c.digest, messages.c.stored_at).where(
    messages.c.id == sa.bindparam("id")
)
# And of the read path.
_SELECT_ENVELOPE = sa.select(messages.c.envelope, messages.c.sender_fp).where(
    messages.c.id == sa.bindparam("id")
)
_SELECT_INBOX_ENTRY = sa.select(inbox.c.message_id).where(
    inbox.c.message_id == sa.bindparam("message_id"),
    inbox.c.recipient_fp == sa.bindparam("recipient_fp"),
)
_INSERT_INBOX = inbox.insert()
_DROP_UPLOAD = uploads.delete().where(uploads.c.id == sa.bindparam("id"))
_INSERT_POLICY = policies.insert()

schema = Schema("relay", metadata, Path(__file__).with_name("migrations"))

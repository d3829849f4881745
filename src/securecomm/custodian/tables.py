"""A custodian's tables: deposits (each share sealed as it arrived), releases waiting
for or decided by the operator, the audit log, and the nonces of signed requests."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ..service.storage import Schema, define_common, define_revocations
from . import audit

metadata = sa.MetaData()
_, nonces = define_common(metadata)
revocations = define_revocations(metadata)
audit_log = audit.define(metadata)
deposits = sa.Table(
    "deposits",
    metadata,
    sa.Column("ref", sa.String(32), primary_key=True),
    sa.Column("message_id", sa.String(32), nullable=False, unique=True),
    sa.Column("share_index", sa.Integer, nullable=False),
    sa.Column("sender_fp", sa.String(64), nullable=False),
    sa.Column("share_digest", sa.String(44), nullable=False),
    # As it arrived: HPKE-sealed to this custodian. NULL once destroyed.
    sa.Column("sealed_share", sa.LargeBinary, nullable=True),
    sa.Column("policy", sa.Text, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("releases", sa.Integer, nullable=False, default=0),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("destroyed_at", sa.BigInteger, nullable=True),
    sa.Column("destroyed_why", sa.String(16), nullable=True),
)
releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ref", sa.String(32), sa.ForeignKey("deposits.ref"), nullable=False, index=True),
    sa.Column("recipient_fp", sa.String(64), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),  # public identity JSON, to seal on approval
    sa.Column("status", sa.String(16), nullable=False),  # pending, denied, approved, released
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("decided_at", sa.BigInteger, nullable=True),
)
# A release given once (its policy counts releases or needs approval), as it was answered,
# kept for its reader for KEEP_SECONDS: an answer lost on the way is served again to the
# same reader, instead of a share burnt for nobody (spec section 12.2). Sealed to the
# reader; deleted once the reader says it has it, the sender unsends, or the time is up.
kept_releases = sa.Table(
    "kept_releases",
    metadata,
    sa.Column("ref", sa.String(32), sa.ForeignKey("deposits.ref"), primary_key=True),
    sa.Column("recipient_fp", sa.String(64), primary_key=True),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False, index=True),
)


# The statements of the deposit and release paths, built once: building and cache-keying
# them for each request cost about as much CPU as running them.
_DEPOSIT_OF_MESSAGE = sa.select(deposits).where(deposits.c.message_id == sa.bindparam("message_id"))
_COUNT_RELEASE = (
    deposits.update()
    .where(deposits.c.ref == sa.bindparam("target"))
    .values(releases=sa.bindparam("count"))
)

schema = Schema("custodian", metadata, Path(__file__).with_name("migrations"))

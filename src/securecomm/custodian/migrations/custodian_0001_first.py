"""A custodian's tables as securecomm made them before migrations (``schema_version`` 1).

A database from before migrations is stamped at this revision and upgraded from here.
"""

import sqlalchemy as sa
from alembic import op

from securecomm.service.migrations.common import create_common_tables

revision = "custodian_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_common_tables()
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("time", sa.Integer, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(88), nullable=False),
    )
    op.create_table(
        "deposits",
        sa.Column("ref", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(32), nullable=False, unique=True),
        sa.Column("share_index", sa.Integer, nullable=False),
        sa.Column("sender_fp", sa.String(64), nullable=False),
        sa.Column("share_digest", sa.String(44), nullable=False),
        sa.Column("sealed_share", sa.LargeBinary, nullable=True),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("releases", sa.Integer, nullable=False),
        sa.Column("created", sa.Integer, nullable=False),
        sa.Column("destroyed_at", sa.Integer, nullable=True),
        sa.Column("destroyed_why", sa.String(16), nullable=True),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("ref", sa.String(32), sa.ForeignKey("deposits.ref"), nullable=False),
        sa.Column("recipient_fp", sa.String(64), nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.Integer, nullable=False),
        sa.Column("decided_at", sa.Integer, nullable=True),
    )
    op.create_index("ix_releases_ref", "releases", ["ref"])

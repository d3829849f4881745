"""Payload streams (spec/format-v2.md section 5): the open uploads, and on each message
the digest (its file's name) and length of its stream, null for a version 1 message. The
streams themselves are files under the relay's home, never rows."""

import sqlalchemy as sa
from alembic import op

revision = "relay_0005"
down_revision = "relay_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("payload_digest", sa.String(64), nullable=True))
    op.add_column("messages", sa.Column("payload_length", sa.BigInteger, nullable=True))
    op.create_index("ix_messages_payload_digest", "messages", ["payload_digest"], unique=True)
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sender_fp", sa.String(64), nullable=False),
        sa.Column("sender_name", sa.String(64), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_uploads_sender_fp", "uploads", ["sender_fp"])
    op.create_index("ix_uploads_updated_at", "uploads", ["updated_at"])

"""The relay's tables as securecomm made them before migrations (``schema_version`` 1),
without ``policies``, which such a database may lack.

A database from before migrations is stamped at this revision and upgraded from here.
"""

import sqlalchemy as sa
from alembic import op

from securecomm.service.migrations.common import create_common_tables

revision = "relay_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_common_tables()
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sender_name", sa.String(64), nullable=False),
        sa.Column("sender_fp", sa.String(64), nullable=False),
        sa.Column("created", sa.Integer, nullable=False),
        sa.Column("stored_at", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_messages_sender_fp", "messages", ["sender_fp"])
    op.create_table(
        "inbox",
        sa.Column(
            "message_id",
            sa.String(32),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("recipient_fp", sa.String(64), primary_key=True),
        sa.Column("recipient_name", sa.String(64), nullable=False),
    )
    op.create_index("ix_inbox_recipient_fp", "inbox", ["recipient_fp"])
    op.create_table(
        "directory",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
    )

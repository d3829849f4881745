"""Devices (spec/sessions.md section 3): each person's delegations with the key sealed to
each device, and the devices their persons revoked."""

import sqlalchemy as sa
from alembic import op

from securecomm.service.migrations.common import create_revocations_table

revision = "relay_0006"
down_revision = "relay_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_revocations_table()
    op.create_table(
        "devices",
        sa.Column("person_fp", sa.String(64), primary_key=True),
        sa.Column("device_fp", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, index=True),
        sa.Column("delegation", sa.Text, nullable=False),
        sa.Column("sealed_key", sa.Text, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )

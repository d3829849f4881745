"""The releases given once, kept a while for their reader (spec section 12.2): an answer
lost on the way is served again instead of burning a share for nobody."""

import sqlalchemy as sa
from alembic import op

revision = "custodian_0005"
down_revision = "custodian_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kept_releases",
        sa.Column("ref", sa.String(32), sa.ForeignKey("deposits.ref"), primary_key=True),
        sa.Column("recipient_fp", sa.String(64), primary_key=True),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_kept_releases_created", "kept_releases", ["created"])

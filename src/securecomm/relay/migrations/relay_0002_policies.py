"""Each message's policy, in a table of its own. A database from before migrations may
have it already (securecomm added it with ``create_all``): then it is kept."""

import sqlalchemy as sa
from alembic import op

revision = "relay_0002"
down_revision = "relay_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("policies"):
        return
    op.create_table(
        "policies",
        sa.Column(
            "message_id",
            sa.String(32),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("policy", sa.Text, nullable=False),
    )

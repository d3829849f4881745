"""Times and sizes as 64-bit integers on PostgreSQL (an envelope dated after 2038, or
with ``created`` up to 2**40 as the format allows, was refused with a 500 there)."""

from securecomm.service.migrations.common import widen

revision = "relay_0004"
down_revision = "relay_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    widen(
        {
            "messages": [("created", False), ("stored_at", False), ("size", False)],
            "directory": [("updated_at", False)],
            "request_nonces": [("created", False)],
        }
    )

"""Times and the audit log's sequence as 64-bit integers on PostgreSQL (every time
overflowed its 32-bit INTEGER in 2038)."""

from securecomm.service.migrations.common import widen

revision = "custodian_0003"
down_revision = "custodian_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    widen(
        {
            "deposits": [("created", False), ("destroyed_at", True)],
            "releases": [("created", False), ("decided_at", True)],
            "audit_log": [("seq", False), ("time", False)],
            "request_nonces": [("created", False)],
        }
    )

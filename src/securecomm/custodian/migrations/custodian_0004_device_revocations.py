"""The devices their persons revoked (spec/sessions.md section 3)."""

from securecomm.service.migrations.common import create_revocations_table

revision = "custodian_0004"
down_revision = "custodian_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_revocations_table()

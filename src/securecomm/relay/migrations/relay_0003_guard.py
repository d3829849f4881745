"""Migrations take over: ``schema_version`` says 2, which a securecomm from before
migrations refuses instead of using a schema it does not know."""

from securecomm.service.migrations.common import write_guard

revision = "relay_0003"
down_revision = "relay_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    write_guard()

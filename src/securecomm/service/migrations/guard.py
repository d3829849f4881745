"""What the last revision before migrations' own table of versions does in each service:
``schema_version`` says 2 (``storage.LEGACY_GUARD``), so that a securecomm from before
migrations, which checks that it says 1, refuses a migrated database. Frozen like a
revision: later revisions do not call it."""

import time

import sqlalchemy as sa
from alembic import op

_SCHEMA_VERSION = sa.table(
    "schema_version", sa.column("version", sa.Integer), sa.column("applied_at", sa.Integer)
)


def write_guard() -> None:
    op.execute(_SCHEMA_VERSION.delete())
    op.bulk_insert(_SCHEMA_VERSION, [{"version": 2, "applied_at": int(time.time())}])

"""What both services' revisions do alike, frozen like a revision (a later revision that
needs a change writes its own): the tables every service has, and the guard that keeps a
securecomm from before migrations off a migrated database."""

import time

import sqlalchemy as sa
from alembic import op

_SCHEMA_VERSION = sa.table(
    "schema_version", sa.column("version", sa.Integer), sa.column("applied_at", sa.Integer)
)


def create_common_tables() -> None:
    """``schema_version`` (what securecomm read before migrations) and ``request_nonces``,
    as securecomm made them before migrations."""
    op.create_table(
        "schema_version",
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("applied_at", sa.Integer, nullable=False),
    )
    op.create_table(
        "request_nonces",
        sa.Column("keyid", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(32), primary_key=True),
        sa.Column("created", sa.Integer, nullable=False),
    )
    op.create_index("ix_request_nonces_created", "request_nonces", ["created"])


def write_guard() -> None:
    """``schema_version`` says 2 (``storage.LEGACY_GUARD``): a securecomm from before
    migrations, which checks that it says 1, refuses the database."""
    op.execute(_SCHEMA_VERSION.delete())
    op.bulk_insert(_SCHEMA_VERSION, [{"version": 2, "applied_at": int(time.time())}])


def widen(columns: dict[str, list[tuple[str, bool]]]) -> None:
    """Make each (table: [(column, nullable)]) a 64-bit integer on PostgreSQL, whose
    INTEGER is 32 bits: an envelope's time may be up to 2**40, and every time overflows
    INTEGER in 2038. SQLite's INTEGER holds 64 bits whatever it is called: nothing to do."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, names in columns.items():
        for name, nullable in names:
            op.alter_column(
                table,
                name,
                type_=sa.BigInteger(),
                existing_type=sa.Integer(),
                existing_nullable=nullable,
            )


def create_revocations_table() -> None:
    """``device_revocations`` (spec/sessions.md section 3), as both services made it first."""
    op.create_table(
        "device_revocations",
        sa.Column("person_fp", sa.String(64), primary_key=True),
        sa.Column("device_fp", sa.String(64), primary_key=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
    )

"""The services' schemas as migrations make them, on SQLite and on a real PostgreSQL.

The fixture in tests/fixtures/schema1 holds databases that securecomm made before it had
migrations (``schema_version`` 1); they must be refused until upgraded, then keep every row.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from securecomm.custodian.tables import schema as custodian_schema
from securecomm.errors import SchemaError, StorageError
from securecomm.relay.tables import schema as relay_schema
from securecomm.service import storage
from securecomm.service.storage import (
    LEGACY_GUARD,
    Schema,
    database_revision,
    open_database,
    upgrade_database,
)
from tests.postgres import Cluster

FIXTURE = Path(__file__).parents[1] / "fixtures" / "schema1"
SCHEMAS = {"relay": relay_schema, "custodian": custodian_schema}
#: The rows the fixture's databases hold, by table (see make_fixture.py): two messages to
#: bob, two people; each custodian two deposits, and an audit entry for each deposit and
#: for the release bob had of alpha (not of echo).
FIXTURE_ROWS = {
    "relay": {"messages": 2, "inbox": 2, "policies": 2, "directory": 2},
    "alpha": {"deposits": 2, "audit_log": 3},
    "echo": {"deposits": 2, "audit_log": 2},
}


@dataclass
class Backend:
    name: str
    new: Callable[[str], str]  # an empty database's URL
    restore: Callable[[str, str], str]  # (service, dump) -> URL of a database holding it


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":

        def new_sqlite(name: str) -> str:
            return f"sqlite:///{tmp_path / name}.db"

        def restore_sqlite(name: str, dump: str) -> str:
            url = new_sqlite(name)
            with sqlite3.connect(tmp_path / f"{name}.db") as db:
                db.executescript(dump)
            db.close()
            return url

        return Backend("sqlite", new_sqlite, restore_sqlite)
    cluster: Cluster = request.getfixturevalue("postgres")

    def restore_postgresql(name: str, dump: str) -> str:
        url = cluster.database(name)
        cluster.restore(url, dump)
        return url

    return Backend("postgresql", cluster.database, restore_postgresql)


def _same_integer_on_sqlite(
    context: MigrationContext,
    inspected: object,
    metadata: object,
    inspected_type: sa.types.TypeEngine[object],
    metadata_type: sa.types.TypeEngine[object],
) -> bool | None:
    """SQLite's INTEGER holds 64 bits whatever a column calls it: INTEGER there is the
    code's BigInteger. Everything else is compared as Alembic does."""
    integers = (sa.Integer, sa.BigInteger)
    if (
        context.dialect.name == "sqlite"
        and isinstance(inspected_type, integers)
        and isinstance(metadata_type, integers)
    ):
        return False
    return None


def differences(url: str, schema: Schema) -> list[object]:
    """What separates the database's tables from the code's (Alembic's comparison)."""
    engine = storage.connect(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": _same_integer_on_sqlite}
            )
            return list(compare_metadata(context, schema.metadata))
    finally:
        engine.dispose()


def rows(url: str, table: str) -> int:
    engine = storage.connect(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def guard(url: str) -> list[int]:
    engine = storage.connect(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version FROM schema_version")).scalars())
    finally:
        engine.dispose()


def restore_fixture(backend: Backend, service: str) -> str:
    return backend.restore(service, (FIXTURE / backend.name / f"{service}.sql").read_text())


@pytest.mark.parametrize("kind", SCHEMAS)
def test_an_empty_database_gets_exactly_the_tables_the_code_uses(
    backend: Backend, kind: str
) -> None:
    schema = SCHEMAS[kind]
    url = backend.new(kind)
    assert database_revision(url, schema) is None
    open_database(url, schema).dispose()
    assert database_revision(url, schema) == schema.head
    assert differences(url, schema) == []
    # A securecomm from before migrations read schema_version and refused all but 1.
    assert guard(url) == [LEGACY_GUARD]
    open_database(url, schema).dispose()  # and again: nothing to do


@pytest.mark.parametrize("service", FIXTURE_ROWS)
def test_a_database_made_before_migrations_is_refused_then_upgraded_keeping_every_row(
    backend: Backend, service: str
) -> None:
    schema = relay_schema if service == "relay" else custodian_schema
    url = restore_fixture(backend, service)
    with pytest.raises(SchemaError, match="made before migrations") as refused:
        open_database(url, schema)
    assert refused.value.hint is not None and "securecomm db upgrade" in refused.value.hint
    assert database_revision(url, schema) == "schema_version 1"  # refusing changed nothing
    assert upgrade_database(url, schema) == ("schema_version 1", schema.head)
    assert differences(url, schema) == []
    assert guard(url) == [LEGACY_GUARD]
    for table, count in FIXTURE_ROWS[service].items():
        assert rows(url, table) == count, table
    open_database(url, schema).dispose()
    assert upgrade_database(url, schema) == (schema.head, schema.head)


def test_a_newer_schema_is_refused_and_left_as_it_is(backend: Backend) -> None:
    url = backend.new("relay")
    open_database(url, relay_schema).dispose()
    engine = storage.connect(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'relay_9999'"))
    engine.dispose()
    for attempt in (open_database, upgrade_database):
        with pytest.raises(SchemaError, match="relay_9999, newer than this securecomm"):
            attempt(url, relay_schema)
    assert database_revision(url, relay_schema) == "relay_9999"


def test_a_failed_upgrade_leaves_the_database_as_it_was(backend: Backend, tmp_path: Path) -> None:
    """Every revision runs in one transaction: one that fails takes the others back."""
    versions = tmp_path / "versions"
    shutil.copytree(relay_schema.migrations, versions, ignore=shutil.ignore_patterns("__*"))
    (versions / "relay_9999_fails.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "relay_9999"\ndown_revision = "{relay_schema.head}"\n\n\n'
        "def upgrade() -> None:\n"
        '    op.create_table("half_done", sa.Column("x", sa.Integer))\n'
        '    raise RuntimeError("this revision fails")\n'
    )
    failing = Schema("relay", relay_schema.metadata, versions)
    url = restore_fixture(backend, "relay")
    with pytest.raises(RuntimeError, match="this revision fails"):
        upgrade_database(url, failing)
    assert database_revision(url, relay_schema) == "schema_version 1"
    assert guard(url) == [1]
    engine = storage.connect(url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert "half_done" not in tables and "alembic_version" not in tables


def test_services_starting_together_on_an_empty_database_make_it_once(backend: Backend) -> None:
    url = backend.new("relay")
    start = threading.Barrier(6)
    failures: list[BaseException] = []

    def replica() -> None:
        start.wait()
        try:
            open_database(url, relay_schema).dispose()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=replica) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert database_revision(url, relay_schema) == relay_schema.head
    assert differences(url, relay_schema) == []
    assert guard(url) == [LEGACY_GUARD]


def test_a_database_with_our_tables_but_no_revision_is_refused(backend: Backend) -> None:
    url = backend.new("custodian")
    engine = storage.connect(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE deposits (ref VARCHAR(32) PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(SchemaError, match="no schema revision securecomm wrote"):
        open_database(url, custodian_schema)


def test_times_and_sizes_hold_64_bits_on_both_backends(backend: Backend) -> None:
    """The format allows an envelope's ``created`` up to 2**40; every time passes 2**31 in
    2038. PostgreSQL's INTEGER is 32 bits: a database made before, upgraded, takes them."""
    url = restore_fixture(backend, "relay")
    upgrade_database(url, relay_schema)
    assert differences(url, relay_schema) == []
    messages = relay_schema.metadata.tables["messages"]
    late = 2**40 - 1
    engine = storage.connect(url)
    with engine.begin() as conn:
        conn.execute(
            messages.insert().values(
                id="f" * 32, sender_name="alice", sender_fp="a" * 64, created=late,
                stored_at=2**33, size=2**33, digest="d" * 64, envelope=b"{}",
            )
        )  # fmt: skip
        found = conn.execute(sa.select(messages.c.created).where(messages.c.id == "f" * 32))
        assert found.scalar_one() == late
    engine.dispose()
    url = restore_fixture(backend, "alpha")
    upgrade_database(url, custodian_schema)
    assert differences(url, custodian_schema) == []


def test_a_database_server_that_cannot_be_reached_is_named_without_its_password() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"postgresql://relay:hunter2@127.0.0.1:{port}/relay"
    for attempt in (open_database, database_revision, upgrade_database):
        with pytest.raises(StorageError) as refused:
            attempt(url, relay_schema)
        said = f"{refused.value} {refused.value.hint}"
        assert (
            f"cannot connect to the relay's database at postgresql+psycopg://relay:***@127.0.0.1:{port}/relay"
            in said
        )
        assert "hunter2" not in said

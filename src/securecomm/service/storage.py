"""SQLAlchemy Core storage: a SQLite file by default, any SQLAlchemy URL otherwise.

SQLite runs in WAL mode with ``synchronous=FULL``: a transaction that
committed before the service answered is on disk, whatever happens to the
process (``kill -9``) or the machine afterwards.

Each service's tables are made by its migrations (Alembic: ``relay/migrations``,
``custodian/migrations``), never by ``create_all``. A service creates the schema of an
empty database when it starts and refuses one at another revision: an older one is
upgraded by ``securecomm db upgrade`` (after a backup), a newer one was upgraded by a newer
securecomm and stays as it is. Everything happens in one transaction under a lock, so
replicas starting together on one database create it once, and a failed upgrade leaves
the database as it was.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from ..errors import ParameterError, ReplayError, SchemaError, StorageError
from ..httpsig import SKEW_SECONDS

__all__ = [
    "LEGACY_REVISION",
    "NONCES",
    "Schema",
    "begin_immediate",
    "database_revision",
    "insert_new",
    "open_database",
    "remember_nonce",
    "scrub",
    "upgrade_database",
]

#: What securecomm wrote into ``schema_version`` before migrations: the first migration
#: adopts a database that says so. The table stays, saying :data:`LEGACY_GUARD`, so that a
#: securecomm from before migrations refuses a migrated database instead of using it.
LEGACY_VERSION = 1
LEGACY_GUARD = 2
#: The revision a database made before migrations is reported at.
LEGACY_REVISION = "schema_version 1"

_ENV = Path(__file__).with_name("migrations")
#: Held (PostgreSQL) while a schema is checked, made or upgraded; SQLite's write lock
#: (BEGIN IMMEDIATE) does the same there.
_SCHEMA_LOCK = int.from_bytes(b"scschema", "big") >> 1


def define_common(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    schema_version = sa.Table(
        "schema_version",
        metadata,
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("applied_at", sa.Integer, nullable=False),
    )
    nonces = sa.Table(
        "request_nonces",
        metadata,
        sa.Column("keyid", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(32), primary_key=True),
        sa.Column("created", sa.BigInteger, nullable=False, index=True),
    )
    return schema_version, nonces


NONCES = "request_nonces"


def define_revocations(metadata: sa.MetaData) -> sa.Table:
    """The devices their persons revoked (spec/sessions.md section 3), each with the
    person's signed statement; a request of a device named here is refused."""
    return sa.Table(
        "device_revocations",
        metadata,
        sa.Column("person_fp", sa.String(64), primary_key=True),
        sa.Column("device_fp", sa.String(64), primary_key=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
    )


@dataclass(frozen=True)
class Schema:
    """A service's tables (``metadata``, as the code uses them) and the migrations that
    make them in a database (the revisions in ``migrations``)."""

    service: str  # "relay" or "custodian", for messages
    metadata: sa.MetaData
    migrations: Path

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        # One location, split on os.pathsep only: an installation path may hold spaces.
        config.set_main_option("path_separator", "os")
        config.set_main_option("script_location", str(_ENV))
        config.set_main_option("version_locations", str(self.migrations))
        config.attributes["connection"] = connection
        config.attributes["metadata"] = self.metadata
        return config

    @functools.cached_property
    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.config())

    @property
    def head(self) -> str:
        head = self.script.get_current_head()
        assert head is not None
        return head

    @property
    def base(self) -> str:
        (base,) = self.script.get_bases()
        return base

    def knows(self, revision: str) -> bool:
        return revision in {script.revision for script in self.script.walk_revisions()}

    def is_newer(self, found: str) -> bool:
        """Whether ``found`` (a database's revision) is one this code does not know: a
        newer securecomm wrote it."""
        return found != LEGACY_REVISION and not self.knows(found)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (see _begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted content is overwritten with zeros, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


#: How long a statement waits for another connection's lock before it fails.
_BUSY_MS = 10_000
#: How long a transaction waits for SQLite's write lock by yielding to its worker's other
#: requests, before SQLite's busy handler waits for it (see :func:`begin_immediate`).
_YIELDING_S = 0.010
#: The first and the longest pause between two tries for a lock.
_FIRST_PAUSE_S, _LONGEST_PAUSE_S = 0.0002, 0.005


def _when_unlocked(execute: Callable[[str], object], statement: str, within: float) -> bool:
    """Run ``statement`` once SQLite lets it: while it answers "database is locked", try
    again after a pause (0.2 ms at first, doubling up to 5 ms) for up to ``within``
    seconds. True once it ran; False if it was still locked then. The pause is
    ``time.sleep``, which a gevent worker (``serve``) makes a yield to its other requests."""
    deadline = time.monotonic() + within
    pause = _FIRST_PAUSE_S
    while True:
        try:
            execute(statement)
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, _LONGEST_PAUSE_S)


def _enter_wal(cursor: Any) -> None:
    """Switch a new database file to WAL mode. SQLite answers "database is locked" at once,
    without waiting out the busy timeout, when another connection is switching the same
    new file (replicas starting together): wait for it here instead."""
    if not _when_unlocked(cursor.execute, "PRAGMA journal_mode=WAL", _BUSY_MS / 1000):
        cursor.execute("PRAGMA journal_mode=WAL")  # a last try, which says why it fails


def begin_immediate(
    execute: Callable[[str], object], last: Callable[[str], object] | None = None
) -> None:
    """``BEGIN IMMEDIATE`` on a SQLite connection (``execute`` runs a statement on it),
    waiting for the write lock another connection holds.

    For up to 10 ms it waits by yielding (:func:`_when_unlocked`); after that, in SQLite's
    busy handler, up to ``_BUSY_MS``, by ``last`` (default ``execute``). The busy handler
    sleeps inside the C call (1, 2, 5, 10 ms...), which in a gevent worker stops every
    other request of the worker too: a relay of two workers, loaded at concurrency 8,
    stored about 500 envelopes a second that way, the machine a quarter idle, and about
    610 waiting by yielding alone. That let a worker's newer requests take the lock
    before one that had waited long (the p99 went from about 31 to 51 ms); blocking after
    10 ms keeps the p99 about 35 ms, with about 590 a second (A/B runs, bench's load)."""
    execute("PRAGMA busy_timeout=0")
    try:
        began = _when_unlocked(execute, "BEGIN IMMEDIATE", _YIELDING_S)
    except sqlite3.Error:
        began = False  # ``last`` tries again, and raises it as the caller's driver does
    finally:
        execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    if not began:
        (last or execute)("BEGIN IMMEDIATE")


def _begin_immediate(conn: Connection) -> None:
    """Take SQLite's write lock when a transaction starts, not at its first write.

    pysqlite would otherwise run a transaction's first SELECTs outside any
    transaction, so two requests could both read "1 release left" and both
    release: every check-then-act here must see the state it acts on.

    Its tries go to the driver's connection: SQLAlchemy's wrapping of each "locked" cost
    more than the try. The last one goes through SQLAlchemy, whose error it raises.
    """
    driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    begin_immediate(driver.execute, conn.exec_driver_sql)


def database_url(url: str) -> str:
    """``url`` with PostgreSQL's driver spelled out (psycopg 3, which ``securecomm[postgres]``
    installs; SQLAlchemy would otherwise pick psycopg2), and refused in a sentence when
    that driver is missing."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg://"):
        try:
            importlib.import_module("psycopg")
        except ImportError:
            raise ParameterError(
                "a postgresql:// database needs the PostgreSQL driver, which is not installed:"
                " pip install 'securecomm[postgres]' (psycopg 3)"
            ) from None
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; ``None`` for any other database (or SQLite in memory)."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///"))


def shown(url: str | sa.URL) -> str:
    """A database URL fit to print or log: its password hidden."""
    return sa.make_url(url).render_as_string(hide_password=True)


def connect(url: str) -> Engine:
    """An engine for ``url`` with our SQLite settings; the schema is not looked at."""
    url = database_url(url)
    file = sqlite_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _begin_immediate)
    return engine


@contextlib.contextmanager
def _transaction(engine: Engine, schema: Schema) -> Iterator[Connection]:
    """``engine.begin()``, with a failure to connect said in a sentence: which database
    (its URL without the password) and the driver error's type, never its text."""
    try:
        conn = engine.connect()
    except sa.exc.OperationalError as exc:
        raise StorageError(
            f"cannot connect to the {schema.service}'s database at {shown(engine.url)}"
            f" ({type(exc.orig).__name__})",
            hint="is the database server running, and does it let this user in?",
        ) from None
    with conn, conn.begin():
        yield conn


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})


def _revision(conn: Connection, schema: Schema) -> str | None:
    """The database's revision; ``None`` if it is empty. A database from before
    migrations is at the first revision (which it matches); anything else is refused."""
    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:
        raise SchemaError(f"the {schema.service}'s database has several schema revisions")
    if heads:
        return heads[0]
    tables = set(sa.inspect(conn).get_table_names())
    if "schema_version" in tables:
        legacy = schema.metadata.tables["schema_version"]
        found = conn.execute(sa.select(sa.func.max(legacy.c.version))).scalar()
        if found == LEGACY_VERSION:
            return LEGACY_REVISION
    if tables & _own_tables(schema):
        raise SchemaError(
            f"the database given to the {schema.service} has tables of securecomm's names but"
            " no schema revision securecomm wrote; give the service a database of its own"
        )
    return None


def _own_tables(schema: Schema) -> set[str]:
    return set(schema.metadata.tables) - {"schema_version"}


def _upgrade(conn: Connection, schema: Schema, found: str | None) -> None:
    config = schema.config(conn)
    if found == LEGACY_REVISION:
        command.stamp(config, schema.base)
    command.upgrade(config, "head")


def open_database(url: str, schema: Schema) -> Engine:
    """Connect; make the schema if the database is empty; refuse any other revision than
    this code's, saying what to do."""
    engine = connect(url)
    try:
        with _transaction(engine, schema) as conn:
            _lock(conn)
            found = _revision(conn, schema)
            if found is None:
                _upgrade(conn, schema, found)
            elif found != schema.head:
                raise _mismatch(schema, found)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _mismatch(schema: Schema, found: str) -> SchemaError:
    who = f"the {schema.service}'s database"
    if schema.is_newer(found):
        return SchemaError(
            f"{who} is at schema revision {found}, newer than this securecomm knows"
            f" (its newest is {schema.head}): a newer securecomm upgraded it",
            hint="run that securecomm, or restore the backup made before the upgrade",
        )
    at = (
        "was made before migrations"
        if found == LEGACY_REVISION
        else f"is at schema revision {found}"
    )
    return SchemaError(
        f"{who} {at}; this securecomm needs {schema.head}",
        hint="stop every service on that database, back it up (docs/operations.md), then run"
        " `securecomm db upgrade` with the service's --home",
    )


def database_revision(url: str, schema: Schema) -> str | None:
    """The revision of the database at ``url`` (:data:`LEGACY_REVISION` for one made before
    migrations), ``None`` if it is empty or its file does not exist; nothing is changed."""
    file = sqlite_file(url)
    if file is not None and not file.exists():
        return None
    engine = connect(url)
    try:
        with _transaction(engine, schema) as conn:
            return _revision(conn, schema)
    finally:
        engine.dispose()


def upgrade_database(url: str, schema: Schema) -> tuple[str | None, str]:
    """Bring the database at ``url`` to this code's schema, in one transaction; the
    revisions before and after. A newer database is refused and left as it is, and so is
    a SQLite file that does not exist (a mistyped home, most likely)."""
    file = sqlite_file(url)
    if file is not None and not file.exists():
        raise SchemaError(
            f"no database at {file}: nothing to upgrade",
            hint="is --home the service's home? A service makes its database when it first starts",
        )
    engine = connect(url)
    try:
        with _transaction(engine, schema) as conn:
            _lock(conn)
            found = _revision(conn, schema)
            if found != schema.head:
                if found is not None and schema.is_newer(found):
                    raise _mismatch(schema, found)
                _upgrade(conn, schema, found)
            return found, schema.head
    finally:
        engine.dispose()


def scrub(engine: Engine) -> None:
    """After destroying a secret: move the WAL into the database and truncate it, so the
    old page (which secure_delete does not reach inside the WAL) is gone from disk too.
    Best effort: a reader holding an old snapshot can make the checkpoint partial."""
    if engine.dialect.name != "sqlite":
        return
    # Outside any transaction: SQLite refuses to checkpoint inside one.
    raw = engine.raw_connection()
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


#: How often, in seconds, a process drops the rows whose time is up (the nonces no request
#: can replay any more, a custodian's kept releases).
SWEEP_SECONDS = 60
_next_sweep: weakref.WeakKeyDictionary[Engine, dict[str, int]] = weakref.WeakKeyDictionary()


@functools.cache
def insert_new(table: sa.Table, dialect: str) -> sa.Insert:
    """An INSERT into ``table`` that adds nothing where a row with the same key (primary or
    unique) is there already, and says so: it returns the new row's primary key, or no row.
    Built once per table: building a statement for every request cost as much CPU as
    running it. No savepoint and no failed statement, which would end a PostgreSQL
    transaction; RETURNING, since psycopg's rowcount here is -1."""
    if dialect == "postgresql":
        insert: sa.Insert = postgresql_dialect.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        insert = sqlite_dialect.insert(table).on_conflict_do_nothing()
    else:
        raise ParameterError(f"securecomm runs on SQLite or PostgreSQL, not {dialect}")
    return insert.returning(*table.primary_key.columns)


@functools.cache
def _expired_nonces(nonces: sa.Table) -> sa.Delete:
    return nonces.delete().where(nonces.c.created < sa.bindparam("oldest"))


def sweep_due(engine: Engine, what: str, now: int) -> bool:
    """Whether this process should now drop the rows of ``what`` whose time is up: True
    once every :data:`SWEEP_SECONDS` per database (and the first time)."""
    sweeps = _next_sweep.setdefault(engine, {})
    if now < sweeps.get(what, 0):
        return False
    sweeps[what] = now + SWEEP_SECONDS
    return True


def remember_nonce(conn: Connection, nonces: sa.Table, keyid: str, nonce: str, now: int) -> None:
    """Record a request nonce, or raise :class:`ReplayError` if it was seen in the window.

    Nonces older than twice the clock-skew window can no longer be replayed (the timestamp
    check refuses them first), so they are dropped, once a minute per process: keeping
    them a little longer changes nothing but the table's size.
    """
    if sweep_due(conn.engine, nonces.name, now):
        conn.execute(_expired_nonces(nonces), {"oldest": now - 2 * SKEW_SECONDS})
    row = {"keyid": keyid, "nonce": nonce, "created": now}
    if conn.execute(insert_new(nonces, conn.dialect.name), row).first() is None:
        raise ReplayError()

"""SQLAlchemy Core storage: a SQLite file by default, any SQLAlchemy URL otherwise.

SQLite runs in WAL mode with ``synchronous=FULL``: a transaction that
committed before the service answered is on disk, whatever happens to the
process (``kill -9``) or the machine afterwards.
"""

from __future__ import annotations

import functools
import importlib
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..errors import ParameterError, ReplayError
from ..httpsig import SKEW_SECONDS

__all__ = ["NONCES", "SCHEMA_VERSION", "open_database", "remember_nonce", "scrub"]

SCHEMA_VERSION = 1


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
        sa.Column("created", sa.Integer, nullable=False, index=True),
    )
    return schema_version, nonces


NONCES = "request_nonces"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (see _begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted content is overwritten with zeros, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    """Take SQLite's write lock when a transaction starts, not at its first write.

    pysqlite would otherwise run a transaction's first SELECTs outside any
    transaction, so two requests could both read "1 release left" and both
    release: every check-then-act here must see the state it acts on.
    """
    conn.exec_driver_sql("BEGIN IMMEDIATE")


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


def open_database(url: str, metadata: sa.MetaData) -> Engine:
    """Connect, create the schema on first start, and check its version."""
    url = database_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _begin_immediate)
    schema_version = metadata.tables["schema_version"]
    with engine.begin() as conn:
        metadata.create_all(conn)
        found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
        if found is None:
            conn.execute(
                schema_version.insert().values(version=SCHEMA_VERSION, applied_at=int(time.time()))
            )
        elif found != SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {found}; this securecomm speaks {SCHEMA_VERSION}"
            )
    return engine


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


@functools.cache
def _nonce_statements(nonces: sa.Table) -> tuple[sa.Delete, sa.Insert]:
    # Built once per table: building a statement for every request cost as much CPU as
    # running it.
    expired = nonces.delete().where(nonces.c.created < sa.bindparam("oldest"))
    return expired, nonces.insert()


def remember_nonce(conn: Connection, nonces: sa.Table, keyid: str, nonce: str, now: int) -> None:
    """Record a request nonce, or raise :class:`ReplayError` if it was seen in the window.

    Nonces older than twice the clock-skew window can no longer be replayed
    (the timestamp check refuses them first), so they are dropped.
    """
    expired, insert = _nonce_statements(nonces)
    conn.execute(expired, {"oldest": now - 2 * SKEW_SECONDS})
    try:
        with conn.begin_nested():
            conn.execute(insert, {"keyid": keyid, "nonce": nonce, "created": now})
    except IntegrityError:
        raise ReplayError() from None

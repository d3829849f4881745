"""Waiting for SQLite's write lock (service/storage.py ``_begin_immediate``): a transaction
that finds another connection holding it waits, then goes on; one that waits past the
limit fails as locked; and in a gevent worker, as the services run, the wait lets the
worker's other requests run, the one holding the lock included."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from securecomm.service import storage


def _engine(path: Path) -> sa.Engine:
    engine = storage.connect(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    return engine


def _holder(path: Path) -> sqlite3.Connection:
    """Another connection, holding the write lock until it commits."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    return holder


def test_a_transaction_waits_for_the_lock_another_connection_holds(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = _engine(path)
    holder = _holder(path)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        except BaseException as exc:  # reported below
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(0.3)
    assert writer.is_alive(), "the transaction went on while another connection held the lock"
    holder.commit()
    writer.join(10)
    assert not writer.is_alive() and not failures
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT n FROM t").scalars()) == [1, 2]
    holder.close()
    engine.dispose()


def test_a_lock_held_past_the_limit_fails_the_transaction_as_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "_BUSY_MS", 200)
    path = tmp_path / "db.sqlite"
    engine = _engine(path)
    holder = _holder(path)
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    holder.commit()
    # The connection that gave up is usable, and waits again as it should.
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (3)")
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT n FROM t").scalars()) == [1, 3]
    holder.close()
    engine.dispose()


# Two requests of one gevent worker (serve's worker class): the first holds the write lock
# across a yield, the second then wants it. SQLite's own busy handler would sleep inside
# the C call, so the first could never run on to commit: the second would fail as locked
# after the limit (2 s here), and nothing else of the worker would run meanwhile.
_GEVENT_WORKER = """
from gevent import monkey

monkey.patch_all()

import json
import sys

import gevent

from securecomm.service import storage

storage._BUSY_MS = 2000
engine = storage.connect("sqlite:///" + sys.argv[1])
with engine.begin() as conn:
    conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
ticks, result = [], {}


def first():
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        gevent.sleep(0.3)


def second():
    before = len(ticks)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    except Exception as exc:
        result["error"] = type(exc).__name__ + ": " + str(exc)
    result["ticks while waiting"] = len(ticks) - before


def ticker():
    while "ticks while waiting" not in result:
        ticks.append(1)
        gevent.sleep(0.01)


gevent.joinall([gevent.spawn(first), gevent.spawn(second), gevent.spawn(ticker)])
with engine.connect() as conn:
    result["rows"] = sorted(conn.exec_driver_sql("SELECT n FROM t").scalars())
print(json.dumps(result))
"""


def test_waiting_for_the_lock_lets_a_gevent_worker_run_its_other_requests(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _GEVENT_WORKER, str(tmp_path / "db.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "error" not in result, result
    assert result["rows"] == [1, 2]
    assert result["ticks while waiting"] > 0, result

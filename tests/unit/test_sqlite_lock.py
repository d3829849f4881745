"""Waiting for SQLite's write lock (service/storage.py ``begin_immediate``): a transaction
that finds another connection holding it waits, then goes on; one that waits past the
limit fails as locked; and in a gevent worker, as the services run, the wait lets the
worker's other requests run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
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


# A gevent worker (serve's worker class) whose request wants the write lock that another
# process holds (the test, standing for another worker or replica), with another request
# of its own to serve. SQLite's busy handler sleeps inside the C call, so nothing else of
# the worker ran while it waited; now the worker serves the other request meanwhile (for
# the first 10 ms; then it waits as SQLite does, taking the lock in its turn).
_GEVENT_WORKER = """
from gevent import monkey

monkey.patch_all()

import json
import sys

import gevent

from securecomm.service import storage

engine = storage.connect("sqlite:///" + sys.argv[1])
ticks, result = [], {}


def request():
    before = len(ticks)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    except Exception as exc:
        result["error"] = type(exc).__name__ + ": " + str(exc)
    result["ticks while waiting"] = len(ticks) - before


def other_request():
    while "ticks while waiting" not in result:
        ticks.append(1)
        gevent.sleep(0.001)


gevent.joinall([gevent.spawn(request), gevent.spawn(other_request)])
with engine.connect() as conn:
    result["rows"] = sorted(conn.exec_driver_sql("SELECT n FROM t").scalars())
print(json.dumps(result))
"""


def test_waiting_for_the_lock_lets_a_gevent_worker_run_its_other_requests(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    _engine(path).dispose()
    holder = _holder(path)
    worker = subprocess.Popen(
        [sys.executable, "-c", _GEVENT_WORKER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # the worker starts and waits for the lock
        holder.commit()
        out, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
        holder.close()
    assert worker.returncode == 0, err
    result = json.loads(out)
    assert "error" not in result, result
    assert result["rows"] == [1, 2]
    assert result["ticks while waiting"] > 0, result

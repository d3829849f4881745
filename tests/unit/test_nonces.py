"""Request nonces (spec §11.3 step 8) as the storage keeps them, on each backend: a nonce
goes in once, a second time is a replay, and nonces no request can replay are dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from securecomm.custodian.tables import nonces, schema
from securecomm.errors import ReplayError
from securecomm.httpsig import SKEW_SECONDS
from securecomm.service import storage
from tests.backends import Backend

KEY, OTHER_KEY = "a" * 64, "b" * 64
NOW = 1_900_000_000


@pytest.fixture
def engine(backend: Backend, tmp_path: Path) -> Iterator[Engine]:
    url = backend.database_urls(["custodian"]).get("custodian", f"sqlite:///{tmp_path}/c.db")
    engine = storage.open_database(url, schema)
    try:
        yield engine
    finally:
        engine.dispose()


def _remember(engine: Engine, keyid: str, nonce: str, now: int = NOW) -> None:
    with engine.begin() as conn:
        storage.remember_nonce(conn, nonces, keyid, nonce, now)


def _stored(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(r.keyid, r.nonce) for r in conn.execute(sa.select(nonces))}


def test_a_nonce_is_accepted_once_per_key(engine: Engine) -> None:
    _remember(engine, KEY, "1" * 32)
    with pytest.raises(ReplayError):
        _remember(engine, KEY, "1" * 32)
    _remember(engine, OTHER_KEY, "1" * 32)  # another signer's nonce is its own
    assert _stored(engine) == {(KEY, "1" * 32), (OTHER_KEY, "1" * 32)}


def test_a_replay_leaves_the_transaction_usable_and_changes_nothing(engine: Engine) -> None:
    _remember(engine, KEY, "1" * 32)
    with engine.begin() as conn:
        with pytest.raises(ReplayError):
            storage.remember_nonce(conn, nonces, KEY, "1" * 32, NOW)
        # PostgreSQL ends a transaction at a failed statement; the refusal must not.
        storage.remember_nonce(conn, nonces, KEY, "2" * 32, NOW)
    assert _stored(engine) == {(KEY, "1" * 32), (KEY, "2" * 32)}


def test_nonces_past_the_window_are_dropped_at_the_next_sweep(engine: Engine) -> None:
    old = NOW - 2 * SKEW_SECONDS - 10
    _remember(engine, KEY, "1" * 32, now=old)
    _remember(engine, KEY, "2" * 32, now=old + 5)  # within a minute: no sweep yet
    assert len(_stored(engine)) == 2
    _remember(engine, KEY, "3" * 32)  # a sweep is due: both old ones go
    assert _stored(engine) == {(KEY, "3" * 32)}

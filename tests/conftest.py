"""Fixtures every test directory may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import Cluster, start_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the session, started on first use."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()

"""Fixtures every test directory may use."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.backends import BACKENDS, Backend
from tests.postgres import Cluster, start_cluster


def pytest_configure(config: pytest.Config) -> None:
    # Tests interrupt commands with SIGINT, as Ctrl-C does. Run in a shell's background
    # (`make test &`), this process ignores SIGINT, and so would every command it starts:
    # Python then raises no KeyboardInterrupt in them, and a test of Ctrl-C fails. Our
    # own handler is reset to the default when a command starts; an ignored one is not.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the session, started on first use."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each storage backend in turn: a test (or a module's services) using it runs on both.
    Module-scoped, so a module's shared services start once per backend; the PostgreSQL
    cluster starts only when a test runs on it."""
    if request.param == "postgresql":
        return Backend("postgresql", request.getfixturevalue("postgres"))
    return Backend("sqlite")


@pytest.fixture(scope="session")
def postgresql(postgres: Cluster) -> Backend:
    """PostgreSQL alone, for the tests of what only a database server can race."""
    return Backend("postgresql", postgres)

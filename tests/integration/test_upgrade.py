"""A network whose databases securecomm made before migrations (tests/fixtures/schema1),
run by today's code, on SQLite and on PostgreSQL: the services refuse to start until the
operator runs ``securecomm db upgrade``, after which the message sent before the upgrade
is read and every custodian's audit log still verifies."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from securecomm.identity import load_or_create
from securecomm.local.home import config_text

from ..postgres import Cluster
from .conftest import NAMES, Service, Stack, free_port
from .test_services import cli, read

FIXTURE = Path(__file__).parents[1] / "fixtures" / "schema1"


def restore(home: Path, backend: str, cluster: Cluster | None) -> dict[str, str]:
    """The fixture's databases, restored where the home's config will say; their URLs
    (none on SQLite: each service's default file)."""
    urls: dict[str, str] = {}
    for service in ("relay", *NAMES):
        dump = (FIXTURE / backend / f"{service}.sql").read_text()
        if cluster is None:
            where = home / ("relay/relay.db" if service == "relay" else f"custodians/{service}")
            file = where if service == "relay" else where / "custodian.db"
            with sqlite3.connect(file) as db:
                db.executescript(dump)
            db.close()
        else:
            urls[service] = cluster.database(service)
            cluster.restore(urls[service], dump)
    return urls


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_network_from_before_migrations_is_upgraded_and_its_message_read(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cluster: Cluster | None = request.getfixturevalue("postgres") if backend != "sqlite" else None
    home = tmp_path / "home"
    shutil.copytree(FIXTURE / "home", home)
    urls = restore(home, backend, cluster)
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    (home / "securecomm.toml").write_text(
        config_text(5, 3, relay_port=relay_port, ports=ports, database_urls=urls)
    )
    # Before the upgrade: refused, saying what to do; nothing started, nothing changed.
    refused = cli("relay", "serve", "--port", str(relay_port), home=home)
    assert refused.returncode == 1, refused.stderr
    assert "the relay's database was made before migrations" in refused.stderr
    assert "securecomm db upgrade" in refused.stderr
    status = cli("db", "status", "--name", "alpha", home=home)
    assert "made before migrations (schema_version 1)" in status.stdout, status.stderr
    for name in ("relay", *NAMES):
        upgraded = cli("db", "upgrade", "--name", name, home=home)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "upgraded from schema schema_version 1 to" in upgraded.stdout
    again = cli("db", "upgrade", "--name", "relay", home=home)
    assert "already: nothing to do" in again.stdout

    stack = Stack(
        home,
        Service("relay", "relay", relay_port, home),
        {name: Service("custodian", name, port, home) for name, port in ports.items()},
    )
    try:
        for service in stack.all():
            service.start()
        bob = load_or_create(home / "users" / "bob.key", "bob")
        message = json.loads((FIXTURE / "messages.json").read_text())[backend]
        assert read(stack, bob, message["message_id"], ["alpha", "charlie", "echo"]) == (
            message["text"].encode()
        )
    finally:
        for service in stack.all():
            service.stop()
    for name in NAMES:
        verified = cli("audit", "verify", "--name", name, home=home)
        assert verified.returncode == 0, verified.stderr
        assert "chain and signatures verify" in verified.stdout

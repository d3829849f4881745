"""Where each service's database is: the test config names it, and ``init`` carries the
plan's setting into each party's own home (where ``relay serve`` and ``custodian serve``
read it); without one, each keeps its SQLite file in its own home."""

from __future__ import annotations

from pathlib import Path

import pytest

from securecomm.config import CONFIG_FILE, load_settings
from securecomm.errors import ParameterError
from securecomm.local.home import config_text, init_home, party_home

PORTS = {"alpha": 6101, "bravo": 6102, "charlie": 6103}
URLS = {
    "relay": "postgresql://postgres@127.0.0.1:5999/relay",
    "alpha": "postgresql://postgres@127.0.0.1:5999/alpha",
    "charlie": 'postgresql://postgres@127.0.0.1:5999/char"lie',
}


def test_config_text_names_each_database(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(config_text(3, 2, ports=PORTS, database_urls=URLS))
    settings = load_settings(tmp_path, env={})
    assert settings.relay_database() == URLS["relay"]
    assert settings.custodian_database("alpha") == URLS["alpha"]
    assert settings.custodian_database("charlie") == URLS["charlie"]
    assert settings.custodian_database("bravo") == (
        f"sqlite:///{tmp_path / 'custodians' / 'bravo' / 'custodian.db'}"
    )


def test_config_text_refuses_a_database_for_no_service() -> None:
    with pytest.raises(ParameterError, match="no service named delta"):
        config_text(3, 2, ports=PORTS, database_urls={"delta": URLS["alpha"]})


def test_init_carries_each_database_to_the_party_s_own_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / CONFIG_FILE).write_text(config_text(3, 2, ports=PORTS, database_urls=URLS))
    init_home(home, users=())
    relay = load_settings(party_home(home, "relay"), env={})
    assert relay.relay_database() == URLS["relay"]
    for name in PORTS:
        own = load_settings(party_home(home, name), env={})
        expected = URLS.get(name, f"sqlite:///{own.custodian_dir(name) / 'custodian.db'}")
        assert own.custodian_database(name) == expected


def test_init_without_a_database_keeps_sqlite_in_each_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / CONFIG_FILE).write_text(config_text(3, 2, ports=PORTS))
    init_home(home, users=())
    relay = load_settings(party_home(home, "relay"), env={})
    assert relay.relay_database() == f"sqlite:///{party_home(home, 'relay') / 'relay' / 'relay.db'}"
    assert "database_url" not in (party_home(home, "alpha") / CONFIG_FILE).read_text()


def test_init_carries_the_relay_s_password_file_and_keeps_each_home_s_settings_private(
    tmp_path: Path,
) -> None:
    """A plan whose relay reads its database password from a file: the relay's own home
    says the same file (its serve would otherwise log in without one), and every party's
    settings file, which may hold a database URL with its password, is its owner's only."""
    home = tmp_path / "home"
    home.mkdir()
    password = tmp_path / "relay-db-password"
    password.write_text("s3cret\n")
    urls = {
        "relay": "postgresql://relay@127.0.0.1:5999/relay",
        "alpha": "postgresql://alpha:pw@127.0.0.1:5999/alpha",
    }
    text = config_text(3, 2, ports=PORTS, database_urls=urls)
    text = text.replace("[server]\n", f'[server]\ndatabase_password_file = "{password}"\n', 1)
    (home / CONFIG_FILE).write_text(text)
    init_home(home, users=())
    relay = load_settings(party_home(home, "relay"), env={})
    assert relay.relay_database() == "postgresql://relay:s3cret@127.0.0.1:5999/relay"
    for party in ("relay", *PORTS):
        mode = (party_home(home, party) / CONFIG_FILE).stat().st_mode & 0o777
        assert mode == 0o600, (party, oct(mode))

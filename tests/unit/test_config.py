"""Settings: embedded defaults, then HOME/securecomm.toml, then the environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from securecomm.cli._common import warn_if_browsers_refuse
from securecomm.config import CONFIG_FILE, DEFAULT_CUSTODIANS, browser_refuses_port, load_settings
from securecomm.errors import ParameterError, SecureCommError

FIVE_CUSTODIANS_TOML = "\n".join(
    f'[[custodians]]\nname = "{name}"\nhost = "10.0.0.{i}"\nport = {6000 + i}\n'
    for i, name in enumerate(["north", "south", "east", "west", "up"], start=1)
)


def write_config(home: Path, text: str) -> None:
    (home / CONFIG_FILE).write_text(text, "utf-8")


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={})
    assert settings.home == tmp_path
    assert settings.server_host == "127.0.0.1"
    assert settings.server_port == 5000
    assert settings.server_url == "http://127.0.0.1:5000"
    assert (settings.n_shares, settings.threshold) == (5, 3)
    assert DEFAULT_CUSTODIANS == ("alpha", "bravo", "charlie", "delta", "echo")
    assert [c.name for c in settings.custodians] == list(DEFAULT_CUSTODIANS)
    assert [c.port for c in settings.custodians] == [5101, 5102, 5103, 5104, 5105]
    assert [c.url for c in settings.custodians] == [
        f"http://127.0.0.1:{port}" for port in range(5101, 5106)
    ]
    assert all(c.host == "127.0.0.1" for c in settings.custodians)
    assert settings.relay_database() == f"sqlite:///{tmp_path / 'relay' / 'relay.db'}"
    assert settings.custodian_database("bravo") == (
        f"sqlite:///{tmp_path / 'custodians' / 'bravo' / 'custodian.db'}"
    )
    assert settings.max_envelope_bytes == 16 * 1024 * 1024
    assert settings.max_payload_bytes == 4 * 1024**3
    assert settings.max_sender_bytes == 16 * 1024**3


def test_env_is_not_read_when_given_explicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_PORT", "7777")
    monkeypatch.setenv("N_SHARES", "7")
    assert load_settings(tmp_path, env={}).server_port == 5000
    assert load_settings(tmp_path).server_port == 7777


def test_home_from_env(tmp_path: Path) -> None:
    settings = load_settings(None, env={"SECURECOMM_HOME": str(tmp_path / "h")})
    assert settings.home == tmp_path / "h"


def test_toml_overrides(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
[server]
host = "0.0.0.0"
port = 8080
url = "https://relay.example/"
max_envelope_bytes = 4096
max_payload_bytes = 1000000
max_sender_bytes = 3000000
database_url = "sqlite:////tmp/elsewhere.db"
workers = 4

[shares]
n = 5
threshold = 4

"""
        + FIVE_CUSTODIANS_TOML,
    )
    settings = load_settings(tmp_path, env={})
    assert settings.server_host == "0.0.0.0"
    assert settings.server_port == 8080
    assert settings.server_url == "https://relay.example"
    assert settings.max_envelope_bytes == 4096
    assert (settings.max_payload_bytes, settings.max_sender_bytes) == (1000000, 3000000)
    assert settings.relay_database() == "sqlite:////tmp/elsewhere.db"
    assert settings.workers == 4
    assert (settings.n_shares, settings.threshold) == (5, 4)
    assert [c.name for c in settings.custodians] == ["north", "south", "east", "west", "up"]
    assert settings.custodian("east").url == "http://10.0.0.3:6003"
    assert settings.custodian("east").port == 6003
    with pytest.raises(ParameterError, match="alpha"):
        settings.custodian("alpha")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("max_payload_bytes = 0", "max_payload_bytes must be from 1 to 2**53 - 1 bytes, got 0"),
        ("max_sender_bytes = -5", "max_sender_bytes must be from 1 to 2**53 - 1 bytes, got -5"),
        ('max_sender_bytes = "lots"', "max_sender_bytes must be an integer, got 'lots'"),
        ("max_payload_bytes = 9007199254740992", "got 9007199254740992"),
        ("port = 70000", "SERVER_PORT must be a port, 1 to 65535, got 70000"),
        ("port = 0", "SERVER_PORT must be a port, 1 to 65535, got 0"),
        ("workers = 0", "workers must be 1 or more, got 0"),
    ],
)
def test_server_numbers_are_in_range(tmp_path: Path, line: str, said: str) -> None:
    write_config(tmp_path, f"[server]\n{line}\n")
    with pytest.raises(ParameterError) as refused:
        load_settings(tmp_path, env={})
    assert said in str(refused.value)


def test_toml_url_defaults_to_host_and_port(tmp_path: Path) -> None:
    write_config(tmp_path, '[server]\nhost = "192.0.2.1"\nport = 9000\n')
    assert load_settings(tmp_path, env={}).server_url == "http://192.0.2.1:9000"


def test_toml_with_fewer_shares_makes_fewer_default_custodians(tmp_path: Path) -> None:
    write_config(tmp_path, "[shares]\nn = 3\nthreshold = 2\n")
    settings = load_settings(tmp_path, env={})
    assert [c.name for c in settings.custodians] == ["alpha", "bravo", "charlie"]


def test_env_overrides(tmp_path: Path) -> None:
    write_config(tmp_path, '[server]\nhost = "0.0.0.0"\nport = 8080\n[shares]\nthreshold = 2\n')
    env = {
        "SERVER_HOST": "192.0.2.7",
        "SERVER_PORT": "5999",
        "N_SHARES": "7",
        "THRESHOLD": "4",
        "SECURECOMM_CUSTODIAN_ALPHA_URL": "http://proxy.local:9101/",
    }
    settings = load_settings(tmp_path, env=env)
    assert settings.server_host == "192.0.2.7"
    assert settings.server_port == 5999
    assert settings.server_url == "http://192.0.2.7:5999"
    assert (settings.n_shares, settings.threshold) == (7, 4)
    assert [c.name for c in settings.custodians][5:] == ["custodian6", "custodian7"]
    assert settings.custodian("alpha").url == "http://proxy.local:9101/"
    assert settings.custodian("alpha").port == 5101
    assert settings.custodian("bravo").url == "http://127.0.0.1:5102"


def test_env_server_url(tmp_path: Path) -> None:
    write_config(tmp_path, '[server]\nurl = "http://from-toml:1"\n')
    assert load_settings(tmp_path, env={}).server_url == "http://from-toml:1"
    env = {"SERVER_URL": "http://from-env:2/"}
    assert load_settings(tmp_path, env=env).server_url == "http://from-env:2"
    env["SECURECOMM_SERVER_URL"] = "http://preferred:3"
    assert load_settings(tmp_path, env=env).server_url == "http://preferred:3"
    # The URL does not move the bind address.
    assert load_settings(tmp_path, env=env).server_port == 5000


def test_env_custodian_url_for_a_toml_custodian(tmp_path: Path) -> None:
    write_config(tmp_path, FIVE_CUSTODIANS_TOML)
    env = {"SECURECOMM_CUSTODIAN_WEST_URL": "http://mitm:1234"}
    settings = load_settings(tmp_path, env=env)
    assert settings.custodian("west").url == "http://mitm:1234"
    assert settings.custodian("north").url == "http://10.0.0.1:6001"


def test_n_shares_not_matching_custodian_list(tmp_path: Path) -> None:
    write_config(tmp_path, FIVE_CUSTODIANS_TOML)
    with pytest.raises(ParameterError, match="N_SHARES"):
        load_settings(tmp_path, env={"N_SHARES": "4"})
    write_config(tmp_path, "[shares]\nn = 6\n" + FIVE_CUSTODIANS_TOML)
    with pytest.raises(ParameterError, match="N_SHARES"):
        load_settings(tmp_path, env={})


@pytest.mark.parametrize(
    "text",
    ["[server\nport = 1", "port = ", 'a = "unterminated', "[server]\nport = 1\nport = 2"],
)
def test_bad_toml(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ParameterError, match="TOML"):
        load_settings(tmp_path, env={})


def test_toml_not_utf8(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ParameterError):
        load_settings(tmp_path, env={})


TWO_CUSTODIANS = '[shares]\nn = 2\nthreshold = 2\n[[custodians]]\nname = "a"\nport = 1\n'


@pytest.mark.parametrize(
    "text, match",
    [
        ("server = 5", "server"),
        ('shares = "five"', "shares"),
        ("custodians = [1, 2, 3, 4, 5]", "custodians"),
        ('[server]\nport = "eighty"', "SERVER_PORT"),
        ("[server]\nhost = 5", "SERVER_HOST"),
        ('[[custodians]]\nname = "x"', "port"),
        (TWO_CUSTODIANS + '[[custodians]]\nname = "b"\nport = 2\ndatabase_url = 5', "database"),
        (TWO_CUSTODIANS + '[[custodians]]\nname = "a"\nport = 2', "twice|a"),
    ],
    ids=[
        "server-not-table",
        "shares-not-table",
        "custodians-not-tables",
        "port-not-int",
        "host-not-str",
        "custodian-without-port",
        "database-url-not-str",
        "custodian-named-twice",
    ],
)
def test_ill_typed_toml(tmp_path: Path, text: str, match: str) -> None:
    """A file that is TOML but not the expected shape: a ParameterError, never a crash."""
    write_config(tmp_path, text)
    with pytest.raises(ParameterError, match=match):
        load_settings(tmp_path, env={})


def test_a_custodian_port_out_of_range_is_refused(tmp_path: Path) -> None:
    """A port past 65535 is not taken modulo 65536 by the socket layer: it is refused."""
    write_config(tmp_path, TWO_CUSTODIANS + '[[custodians]]\nname = "b"\nport = 70000\n')
    with pytest.raises(ParameterError, match=r"custodians\.b\.port must be a port"):
        load_settings(tmp_path, env={})


def test_two_custodian_toml_control(tmp_path: Path) -> None:
    write_config(tmp_path, TWO_CUSTODIANS + '[[custodians]]\nname = "b"\nport = 2\n')
    settings = load_settings(tmp_path, env={})
    assert [(c.name, c.url) for c in settings.custodians] == [
        ("a", "http://127.0.0.1:1"),
        ("b", "http://127.0.0.1:2"),
    ]


def test_bad_custodian_name_in_toml(tmp_path: Path) -> None:
    write_config(tmp_path, '[[custodians]]\nname = "Bad Name"\nport = 1')
    with pytest.raises(SecureCommError, match="Bad Name"):
        load_settings(tmp_path, env={})


@pytest.mark.parametrize(
    "env",
    [
        {"THRESHOLD": "6"},
        {"N_SHARES": "3", "THRESHOLD": "4"},
        {"THRESHOLD": "1"},
        {"N_SHARES": "abc"},
        {"SERVER_PORT": "http"},
        {"N_SHARES": "256", "THRESHOLD": "3"},
    ],
)
def test_impossible_parameters(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ParameterError):
        load_settings(tmp_path, env=env)


def test_threshold_above_n_from_toml(tmp_path: Path) -> None:
    write_config(tmp_path, "[shares]\nn = 5\nthreshold = 6\n")
    with pytest.raises(ParameterError, match="threshold"):
        load_settings(tmp_path, env={})


CORE_MODULES = [
    "securecomm",
    "securecomm.envelope",
    "securecomm.shares",
    "securecomm.shamir",
    "securecomm.aead",
    "securecomm.hpke",
    "securecomm.identity",
    "securecomm.canonical",
    "securecomm.httpsig",
    "securecomm.protocol",
    "securecomm.config",
]
WEB_STACK = ["flask", "werkzeug", "sqlalchemy", "gunicorn"]


def test_core_library_does_not_import_the_web_stack() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"roots = set({WEB_STACK!r})\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print(json.dumps({'loaded': loaded, 'core': sorted(m for m in sys.modules"
        " if m.startswith('securecomm'))}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(CORE_MODULES) <= set(report["core"])
    assert report["loaded"] == []


def test_init_carries_the_relay_s_limits_to_its_own_home(tmp_path: Path) -> None:
    from securecomm.local.home import config_text, init_home, party_home

    ports = {"alpha": 6101, "bravo": 6102, "charlie": 6103}
    limits = (65536, 10**6, 10**7)
    defaults = (16 * 1024**2, 4 * 1024**3, 16 * 1024**3)
    for home, given in ((tmp_path / "set", limits), (tmp_path / "default", None)):
        home.mkdir()
        envelope, payload, sender = given or (None, None, None)
        text = config_text(
            3,
            2,
            ports=ports,
            max_envelope_bytes=envelope,
            max_payload_bytes=payload,
            max_sender_bytes=sender,
        )
        write_config(home, text)
        init_home(home, users=())
        relay_home = party_home(home, "relay")
        relay = load_settings(relay_home, env={})
        said = (relay.max_envelope_bytes, relay.max_payload_bytes, relay.max_sender_bytes)
        assert said == (given or defaults)
        written = (relay_home / CONFIG_FILE).read_text()
        assert ("max_payload_bytes" in written) == bool(given)  # defaults are not written


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:6000", 6000),  # X11: Chromium says ERR_UNSAFE_PORT
        ("https://relay.example:10080/", 10080),
        ("http://127.0.0.1:25", 25),
        ("http://127.0.0.1:5000", None),
        ("http://127.0.0.1", None),  # 80
        ("https://relay.example", None),  # 443
        ("http://127.0.0.1:6001", None),
    ],
)
def test_the_ports_browsers_refuse_are_known(url: str, refused: int | None) -> None:
    assert browser_refuses_port(url) == refused


def test_a_page_on_a_port_browsers_refuse_is_warned_of(capsys: pytest.CaptureFixture[str]) -> None:
    warn_if_browsers_refuse("http://127.0.0.1:5000")
    assert capsys.readouterr().err == ""
    warn_if_browsers_refuse("http://127.0.0.1:6000")
    said = capsys.readouterr().err
    assert said.startswith("warning: browsers refuse to open port 6000"), said
    assert "the CLI is not affected" in said and "another port" in said, said

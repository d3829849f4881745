"""Relay replicas, what needs no running service: ``[server] replicas`` and
``up --relay-replicas`` (and what they refuse), the relay's database password kept in a
file, the processes ``up`` would run, and the front's nginx configuration, which Debian's
nginx itself checks (``nginx -t``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from securecomm.cli import build_parser, main
from securecomm.config import CONFIG_FILE, MAX_RELAY_REPLICAS, load_settings
from securecomm.errors import ParameterError
from securecomm.local.front import NGINX_PACKAGE, Front, find_nginx
from securecomm.local.stack import Stack
from securecomm.tls import make_ca


def settings_with(home: Path, server: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / CONFIG_FILE).write_text(f"[server]\n{server}\n", "utf-8")


# --- the number of replicas ---


def test_one_relay_unless_the_settings_say_more(tmp_path: Path) -> None:
    assert load_settings(tmp_path, env={}).relay_replicas == 1
    settings_with(tmp_path, "replicas = 3")
    assert load_settings(tmp_path, env={}).relay_replicas == 3


@pytest.mark.parametrize("value", ["0", "-1", str(MAX_RELAY_REPLICAS + 1), '"two"', "true"])
def test_a_number_of_replicas_out_of_range_is_refused(tmp_path: Path, value: str) -> None:
    settings_with(tmp_path, f"replicas = {value}")
    with pytest.raises(ParameterError, match=r"server\.replicas"):
        load_settings(tmp_path, env={})


@pytest.mark.parametrize("value", ["0", str(MAX_RELAY_REPLICAS + 1), "two", "1.5"])
def test_up_refuses_a_bad_relay_replicas(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["up", "--relay-replicas", value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--relay-replicas" in error and repr(value) in error, error


def test_up_takes_one_to_the_most_replicas() -> None:
    for count in (1, 2, MAX_RELAY_REPLICAS):
        args = build_parser().parse_args(["up", "--relay-replicas", str(count)])
        assert args.relay_replicas == count
    assert build_parser().parse_args(["up"]).relay_replicas is None  # the settings decide


def test_up_help_explains_replicas(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--relay-replicas N" in text
    for words in ("nginx", "[server] replicas", "one database", "loopback", "PostgreSQL"):
        assert words in text, words


# --- the relay's database password in a file of its own (a Docker secret) ---


def test_the_password_file_goes_into_the_database_url(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("p@ss word/1\n")
    settings_with(
        tmp_path,
        'database_url = "postgresql://relay@db.example:5432/relay"\n'
        'database_password_file = "secret"',
    )
    url = make_url(load_settings(tmp_path, env={}).relay_database())  # as storage reads it
    assert (url.drivername, url.username, url.password) == ("postgresql", "relay", "p@ss word/1")
    assert (url.host, url.port, url.database) == ("db.example", 5432, "relay")
    # The environment names both instead (compose does so).
    env = {
        "SECURECOMM_RELAY_DATABASE_URL": "postgresql://other@postgres/securecomm",
        "SECURECOMM_RELAY_DATABASE_PASSWORD_FILE": str(tmp_path / "secret"),
    }
    url = make_url(load_settings(tmp_path / "empty", env=env).relay_database())
    assert (url.username, url.password, url.host) == ("other", "p@ss word/1", "postgres")


@pytest.mark.parametrize(
    ("server", "refusal"),
    [
        ('database_password_file = "secret"', "not SQLite"),
        (
            'database_url = "postgresql://relay:old@db/relay"\ndatabase_password_file = "secret"',
            "has a password already",
        ),
        (
            'database_url = "postgresql://relay@db/relay"\ndatabase_password_file = "missing"',
            "cannot read",
        ),
        (
            'database_url = "postgresql://relay@db/relay"\ndatabase_password_file = "empty"',
            "is empty",
        ),
    ],
)
def test_a_password_file_that_cannot_be_used_is_refused(
    tmp_path: Path, server: str, refusal: str
) -> None:
    (tmp_path / "secret").write_text("pw\n")
    (tmp_path / "empty").write_text("")
    settings_with(tmp_path, server)
    settings = load_settings(tmp_path, env={})
    with pytest.raises(ParameterError, match=refusal):
        settings.relay_database()


# --- what `up` runs ---


def test_one_replica_is_the_relay_alone_without_a_front(tmp_path: Path) -> None:
    stack = Stack(load_settings(tmp_path, env={}))
    assert stack.front is None
    assert stack.processes[0].name == "relay"
    assert stack.processes[0].url == "http://127.0.0.1:5000"
    assert not any(p.name.startswith("relay-") for p in stack.processes)


def test_replicas_run_behind_a_front_on_the_relay_s_address(tmp_path: Path) -> None:
    settings_with(tmp_path, "replicas = 2")  # the settings' number, unless told another
    assert len(Stack(load_settings(tmp_path, env={})).processes) == 1 + 2 + 5
    stack = Stack(load_settings(tmp_path, env={}), replicas=3)
    names = [p.name for p in stack.processes]
    assert names[:4] == ["relay-front", "relay-1", "relay-2", "relay-3"]
    front, *replicas = stack.processes[:4]
    assert front.url == "http://127.0.0.1:5000" and front.identity_name == "relay"
    ports = {int(p.url.rsplit(":", 1)[1]) for p in replicas}
    assert len(ports) == 3 and 5000 not in ports
    relay_home = str(tmp_path / "relay")
    for process in replicas:
        assert process.url.startswith("http://127.0.0.1:"), process.url
        assert process.identity_name == "relay"
        command = process.command
        assert command[command.index("--home") + 1] == relay_home
        assert command[command.index("--port") + 1] == process.url.rsplit(":", 1)[1]
        assert command[command.index("--host") + 1] == "127.0.0.1"
    # The first replica makes or upgrades the schema alone; the others, and the front,
    # start once it answers.
    assert [p.after for p in stack.processes[:4]] == ["relay-1", None, "relay-1", "relay-1"]
    assert stack.front is not None
    assert stack.front.replicas == tuple(int(p.url.rsplit(":", 1)[1]) for p in replicas)
    assert (stack.front.host, stack.front.port) == ("127.0.0.1", 5000)


def test_without_nginx_up_names_the_package_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ParameterError) as refused:
        find_nginx({"PATH": str(tmp_path)}, system_dirs=())
    assert NGINX_PACKAGE in str(refused.value.hint)
    assert "--relay-replicas 1" in str(refused.value.hint)
    found = find_nginx({"PATH": str(tmp_path)})  # Debian's, in /usr/sbin (make test installs it)
    assert Path(found).name == "nginx"

    home = tmp_path / "home"
    settings_with(home, "port = 1")  # never reached: refused before anything listens
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SECURECOMM_NGINX", str(tmp_path / "no-nginx"))
        with pytest.raises(SystemExit) as exited:
            main(["up", "--home", str(home), "--relay-replicas", "2"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"SECURECOMM_NGINX={tmp_path / 'no-nginx'}: no such program" in error, error
    assert not (home / "logs").exists() and not (home / "relay-front").exists()


# --- the front's configuration, checked by nginx ---


def front(tmp_path: Path, *, tls: bool = False) -> Front:
    home = tmp_path / "home"
    home.mkdir()
    chain = None
    ca = None
    if tls:
        authority = make_ca("test CA")
        chain = authority.issue("relay", ["127.0.0.1", "localhost"]).write(home / "relay" / "tls")
        ca = authority.pem.decode()
    return Front(
        directory=home / "relay-front",
        logs=home / "logs",
        host="127.0.0.1",
        port=5000,
        replicas=(41001, 41002),
        max_body_bytes=16 * 1024 * 1024,
        tls=chain,
        ca=ca,
    )


def nginx_check(config: Path) -> subprocess.CompletedProcess[str]:
    command = [find_nginx(), "-t", "-p", str(config.parent), "-c", str(config), "-e", "stderr"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_nginx_accepts_the_front_s_configuration(tmp_path: Path, tls: bool) -> None:
    made = front(tmp_path, tls=tls)
    config = made.write()
    checked = nginx_check(config)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr
    # Nothing of the system's nginx is read or written: every path is the data directory's.
    text = config.read_text()
    assert "/etc/" not in text and "/var/" not in text and "/run/" not in text
    paths = re.findall(r'"(/[^"]+)"', text)
    assert paths and all(p.startswith(str(tmp_path / "home")) for p in paths), paths
    for directive in ("pid", "lock_file", "client_body_temp_path", "proxy_temp_path"):
        assert re.search(rf"^\s*{directive} \"{re.escape(str(made.directory))}/", text, re.M)
    assert "daemon off;" in text and "error_log stderr" in text
    assert f'access_log "{tmp_path / "home" / "logs"}/relay-front.access.log"' in text


def test_the_front_passes_requests_on_as_they_came(tmp_path: Path) -> None:
    text = front(tmp_path).text()
    # No URI after the group: the target goes on exactly as the client sent it.
    assert re.search(r"^\s*proxy_pass http://securecomm_relay;$", text, re.M)
    assert "proxy_set_header Host $http_host;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    # Another replica only when one cannot be reached; a POST only if it was not sent.
    assert re.findall(r"^\s*(proxy_next_upstream\b.*)$", text, re.M) == [
        "proxy_next_upstream error timeout;"
    ]
    assert "least_conn;" in text
    servers = re.findall(r"^\s*server (\S+) max_fails=0;$", text, re.M)
    assert servers == ["127.0.0.1:41001", "127.0.0.1:41002"]
    assert re.search(r"^\s*listen 127\.0\.0\.1:5000;$", text, re.M)
    # Slow clients: whole requests read and whole answers taken, under time limits.
    for directive in (
        "client_max_body_size 16777216;",
        "proxy_request_buffering on;",
        "proxy_buffering on;",
        "client_header_timeout 5s;",
        "client_body_timeout 10s;",
    ):
        assert directive in text, directive


def test_over_tls_the_front_checks_the_replicas_certificate(tmp_path: Path) -> None:
    made = front(tmp_path, tls=True)
    text = made.text()
    assert made.tls is not None
    assert re.search(r"^\s*listen 127\.0\.0\.1:5000 ssl;$", text, re.M)
    assert f'ssl_certificate "{made.tls[0]}";' in text
    assert f'ssl_certificate_key "{made.tls[1]}";' in text
    assert re.search(r"^\s*proxy_pass https://securecomm_relay;$", text, re.M)
    assert "proxy_ssl_verify on;" in text
    assert f'proxy_ssl_trusted_certificate "{made.directory}/replicas-ca.pem";' in text
    made.write()
    assert made.ca is not None
    assert (made.directory / "replicas-ca.pem").read_text() == made.ca

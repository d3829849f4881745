"""`securecomm mitm` as a person would run it, between the CLI and the relay."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.shared_home import add_people

from .conftest import Stack, free_port, start_stack, stop_stack

SECRET_TEXT = "attack at dawn, gate 7"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("mitm") / "home")
    add_people(stack.home)
    try:
        yield stack
    finally:
        stop_stack(stack)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURECOMM_", "SERVER_")) and k not in {"N_SHARES", "THRESHOLD"}
    }
    return env | extra


def _cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securecomm.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _start_mitm(upstream: str, port: int, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "securecomm.cli",
            "mitm",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            upstream,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("mitm did not start")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=20)
    return out


def test_passive_mitm_reports_like_the_seed_and_raises_no_alarm(
    system: Stack, tmp_path: Path
) -> None:
    port = free_port()
    report = tmp_path / "report.json"
    mitm = _start_mitm(system.relay.url, port, "--watch", SECRET_TEXT, "--report", str(report))
    env = _env(SECURECOMM_SERVER_URL=f"http://127.0.0.1:{port}")
    try:
        sent = _cli(system.home, "send", "--from", "alice", "--to", "bob", SECRET_TEXT, env=env)
        assert sent.returncode == 0, sent.stderr
        message_id = sent.stdout.split("message id:")[1].split()[0]
        read = _cli(system.home, "read", message_id, "--as", "bob", env=env)
        assert read.returncode == 0, read.stderr
        assert read.stdout == SECRET_TEXT
    finally:
        out = _stop(mitm)
    for line in (
        "Ciphertext: ",
        "Nonce: ",
        "Tag: ",
        "5 shares, threshold 3",
        "POST /api/v1/messages -> 201",
        f"GET /api/v1/messages/{message_id} -> 200",
    ):
        assert line in out, line
    assert "0 alarm(s): nothing watched was seen" in out
    assert "ALARM" not in out
    saved = json.loads(report.read_text())
    assert saved["alarms"] == [] and len(saved["exchanges"]) >= 3


def test_a_report_it_would_replace_or_cannot_write_is_refused_before_it_listens(
    tmp_path: Path,
) -> None:
    """A second run with the same --report replaced the first run's report at its end, and
    a report into a directory not there was found out only then, with the traffic gone.
    Both are refused at the start, port untouched; --force replaces."""
    earlier = tmp_path / "report.json"
    earlier.write_text('{"exchanges": ["the first run"]}\n')
    port = free_port()
    for report in (earlier, tmp_path / "not-there" / "report.json"):
        refused = subprocess.run(
            [
                *(sys.executable, "-m", "securecomm.cli", "mitm", "--listen", f"127.0.0.1:{port}"),
                *("--upstream", "http://127.0.0.1:9", "--report", str(report)),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=_env(),
        )
        assert refused.returncode == 1, refused.stderr
        assert "listening" not in refused.stdout
        assert "hint: " in refused.stderr and "--report" in refused.stderr
    assert earlier.read_text() == '{"exchanges": ["the first run"]}\n'
    assert not (tmp_path / "not-there").exists()
    mitm = _start_mitm("http://127.0.0.1:9", port, "--report", str(earlier), "--force")
    assert "report saved to" in _stop(mitm)
    assert json.loads(earlier.read_text())["exchanges"] != ["the first run"]


def test_the_detector_fires_when_the_watched_text_does_cross(system: Stack) -> None:
    port = free_port()
    mitm = _start_mitm(system.relay.url, port, "--watch", SECRET_TEXT)
    try:
        httpx.post(
            f"http://127.0.0.1:{port}/api/relay",
            content=json.dumps({"note": SECRET_TEXT.encode().hex()}),
            headers={"Content-Type": "application/json"},
        )
    finally:
        out = _stop(mitm)
    assert "ALARM: watched secret #1 in the request body" in out


def test_flip_mode_makes_the_read_fail_clearly_without_plaintext(system: Stack) -> None:
    env_direct = _env()
    sent = _cli(system.home, "send", "--from", "alice", "--to", "bob", SECRET_TEXT, env=env_direct)
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.split("message id:")[1].split()[0]
    for direction in ("response", "request"):
        port = free_port()
        mitm = _start_mitm(
            system.relay.url,
            port,
            "--mode",
            "flip",
            "--direction",
            direction,
            "--match",
            "/api/v1/messages/",
        )
        try:
            read = _cli(
                system.home,
                "read",
                message_id,
                "--as",
                "bob",
                env=_env(SECURECOMM_SERVER_URL=f"http://127.0.0.1:{port}"),
            )
        finally:
            out = _stop(mitm)
        assert read.returncode != 0
        assert read.stdout == ""
        assert SECRET_TEXT not in read.stderr
        assert "1 alteration(s)" in out
        if direction == "response":
            assert "altered on the way" in read.stderr or "signature" in read.stderr
        else:
            # The relay refused the altered request, and said so for the path it received:
            # its signed answer is not one to the request bob sent.
            assert "its path differs" in read.stderr, read.stderr
            assert "-> refused" in out


def test_a_listen_address_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                *(sys.executable, "-m", "securecomm.cli", "mitm"),
                *("--listen", f"127.0.0.1:{port}", "--upstream", "http://127.0.0.1:9"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

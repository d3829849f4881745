"""Slowloris against a real relay and a real custodian (issue 13): with 64 connections
trickling their headers and 64 trickling their bodies against each, an ordinary request
is still answered in under 1 s, and each service answers as before once they go.

Both services run as ``securecomm relay serve`` / ``securecomm custodian serve`` with
their default workers, as ``securecomm up`` and docker-compose run them, on free
127.0.0.1 ports. The attack is bench/_slowloris.py's, the one `make bench` measures
(bench/slow_clients.py). Bounded: 256 connections, a few seconds of probes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench._slowloris import ProbeResult, SlowClients, probe

from securecomm.config import load_settings
from securecomm.local.home import config_text
from tests.integration.conftest import free_port, stop_group, wait_healthy
from tests.operators import provide_operator

HOST = "127.0.0.1"
HEADERS = BODIES = 64
PROBES = 8  # for each service, one every 0.25 s, alternating between the two
LIMIT = 1.0  # seconds, as the client sees it: connect, request and answer
CLI = [sys.executable, "-m", "securecomm.cli"]


def _start(home: Path, kind: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    log = home / f"{kind}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*CLI, kind, "serve", "--home", str(home), "--port", str(port), *extra],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_healthy(process, f"http://{HOST}:{port}", log, kind)
    except BaseException:
        stop_group(process)
        raise
    return process


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """A relay and custodian alpha, each with the default number of workers."""
    home = tmp_path_factory.mktemp("slow-clients") / "home"
    home.mkdir()
    ports = {"relay": free_port(), "alpha": free_port()}
    (home / "securecomm.toml").write_text(
        config_text(
            3,
            3,
            relay_port=ports["relay"],
            ports={"alpha": ports["alpha"], "bravo": free_port(), "charlie": free_port()},
        )
    )
    provide_operator(load_settings(home, env={}), "alpha")
    running = []
    try:
        running.append(_start(home, "relay", ports["relay"]))
        running.append(_start(home, "custodian", ports["alpha"], "--name", "alpha"))
        yield ports
    finally:
        for process in running:
            stop_group(process)


def _failures(results: dict[str, list[ProbeResult]]) -> list[str]:
    return [
        f"{name}: {'no answer' if r.status is None else f'HTTP {r.status}'}"
        f" after {r.seconds * 1000:.0f} ms{f' ({r.error})' if r.error else ''}"
        for name, series in results.items()
        for r in series
        if not r.answered_within(LIMIT)
    ]


def _attackers(services: dict[str, int]) -> dict[str, SlowClients]:
    """For each service, its slow clients; the body tricklers POST to its upload route."""
    return {
        "relay": SlowClients(HOST, services["relay"], headers=HEADERS, bodies=BODIES),
        "alpha": SlowClients(
            HOST, services["alpha"], headers=HEADERS, bodies=BODIES, body_path="/v1/deposits"
        ),
    }


def test_an_ordinary_request_is_answered_while_slow_clients_hold_connections(
    services: dict[str, int],
) -> None:
    attackers = _attackers(services)
    under_attack: dict[str, list[ProbeResult]] = {name: [] for name in services}
    started = time.monotonic()
    try:
        for clients in attackers.values():
            clients.start()
        time.sleep(1.0)  # every slow connection is open and has sent its first bytes
        for _ in range(PROBES):
            for name, port in services.items():
                begun = time.monotonic()
                under_attack[name].append(probe(HOST, port, timeout=LIMIT))
                time.sleep(max(0.0, 0.125 - (time.monotonic() - begun)))
        held = {name: clients.held() for name, clients in attackers.items()}
    finally:
        for clients in attackers.values():
            clients.stop()
    attack_seconds = time.monotonic() - started
    # The attack was real: every slow connection was up when the probes ended.
    assert held == {name: HEADERS + BODIES for name in services}, held
    failures = _failures(under_attack)
    assert not failures, (
        f"{len(failures)} of {PROBES * len(services)} probes not answered in under {LIMIT:g} s"
        f" while {HEADERS} header and {BODIES} body tricklers held each service"
        f" ({attack_seconds:.1f} s): " + "; ".join(failures)
    )


def test_the_services_recover_when_the_slow_clients_go(services: dict[str, int]) -> None:
    attackers = _attackers(services)
    try:
        for clients in attackers.values():
            clients.start()
        time.sleep(1.5)
    finally:
        for clients in attackers.values():
            clients.stop()
    time.sleep(0.5)
    after = {
        name: [probe(HOST, port, timeout=LIMIT) for _ in range(3)]
        for name, port in services.items()
    }
    failures = _failures(after)
    assert not failures, "not answering after the slow clients left: " + "; ".join(failures)

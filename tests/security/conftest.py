"""One world for the whole attack suite on each storage backend: real services, users, and
a recorded message.

The services are the integration tests' (``tests/integration/conftest.py``):
the relay and five custodians as gunicorn processes on free loopback ports,
storing on SQLite or on PostgreSQL (``tests/backends.py``). Each backend's world is made
the first time a test asks for it and stopped at the end of the session, so the suite's
modules share it. ``securecomm up`` would register the users in the relay's directory;
here the fixture does it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securecomm.client.transport import ServiceClient
from securecomm.config import load_settings
from securecomm.identity import Identity
from tests.backends import Backend
from tests.integration.conftest import Stack, start_stack, stop_stack
from tests.shared_home import add_people

from ._cases import PASSIVE
from ._harness import RELAY, Run, World, run_case, stop_proxies

USERS = ("alice", "bob", "carol")


def make_world(home: Path, backend: Backend, started: list[Stack]) -> tuple[World, Run]:
    """Start the services under ``home`` (added to ``started`` at once, for the caller to
    stop), register the people, and record one message sent and read."""
    started.append(start_stack(home, backend))
    people = add_people(home, USERS)  # the services made their keys; pin them
    settings = load_settings(home, env={})
    for person in people.values():
        with ServiceClient(settings.server_url, RELAY, person) as relay:
            relay.request(
                "PUT",
                f"/api/v1/directory/{person.name}",
                body={"v": 1, "identity": person.public.to_json()},
            )
    # dave registers with the relay but no one here has pinned him yet.
    dave = Identity.generate("dave")
    with ServiceClient(settings.server_url, RELAY, dave) as relay:
        relay.request(
            "PUT",
            "/api/v1/directory/dave",
            body={"v": 1, "identity": dave.public.to_json()},
        )
    world = World(
        home,
        settings,
        people["alice"],
        people["bob"],
        people["carol"],
        dave,
        backend=backend.name,
    )
    # The attacker's recording: one message to bob and carol, sent and read by bob.
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorded = run_case(world, PASSIVE, monkeypatch)
    for phase in ("send", "read"):
        for name, proxy in recorded.phase(phase).items():
            world.recording.setdefault(name, []).extend(proxy.exchanges)
    world.recorded_id = recorded.message_id
    return world, recorded


@pytest.fixture(scope="session")
def worlds(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[Backend], tuple[World, Run]]]:
    """The world on a backend, made on first use; every one stopped after the session."""
    made: dict[str, tuple[World, Run]] = {}
    started: list[Stack] = []

    def world_on(backend: Backend) -> tuple[World, Run]:
        if backend.name not in made:
            home = tmp_path_factory.mktemp(f"security-{backend}") / "home"
            made[backend.name] = make_world(home, backend, started)
        return made[backend.name]

    try:
        yield world_on
    finally:
        try:
            stop_proxies()
        finally:
            for stack in started:
                stop_stack(stack)


@pytest.fixture(scope="module")
def world_and_recording(
    worlds: Callable[[Backend], tuple[World, Run]], backend: Backend
) -> tuple[World, Run]:
    return worlds(backend)


@pytest.fixture(scope="module")
def world(world_and_recording: tuple[World, Run]) -> World:
    return world_and_recording[0]

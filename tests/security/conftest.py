"""One world for the whole attack suite: real services, users, and a recorded message.

The services are the integration tests' (``tests/integration/conftest.py``):
the relay and five custodians as gunicorn processes on free loopback ports,
stopped at the end of the session. ``securecomm up`` would register the
users in the relay's directory; here the fixture does it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from securecomm.client.transport import ServiceClient
from securecomm.config import load_settings
from securecomm.identity import Identity
from tests.integration.conftest import start_stack, stop_stack
from tests.shared_home import add_people

from ._cases import PASSIVE
from ._harness import RELAY, Run, World, run_case, stop_proxies

USERS = ("alice", "bob", "carol")


@pytest.fixture(scope="session")
def world_and_recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Run]]:
    home = tmp_path_factory.mktemp("security") / "home"
    stack = start_stack(home)
    try:
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
        world = World(home, settings, people["alice"], people["bob"], people["carol"], dave)
        # The attacker's recording: one message to bob and carol, sent and read by bob.
        with pytest.MonkeyPatch.context() as monkeypatch:
            recorded = run_case(world, PASSIVE, monkeypatch)
        for phase in ("send", "read"):
            for name, proxy in recorded.phase(phase).items():
                world.recording.setdefault(name, []).extend(proxy.exchanges)
        world.recorded_id = recorded.message_id
        yield world, recorded
    finally:
        try:
            stop_proxies()
        finally:
            stop_stack(stack)


@pytest.fixture(scope="session")
def world(world_and_recording: tuple[World, Run]) -> World:
    return world_and_recording[0]

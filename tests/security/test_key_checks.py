"""A send checks each custodian's presented key and each recipient's directory entry
against the pinned keys at most once a minute per process (issue 16), through the real
services: a second send right after the first asks neither again; once the minute is over
(here: the window set to 0) both are asked again, so a changed key is still found.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from securecomm.client import flows
from securecomm.client.transport import ServiceClient

from ._harness import World


def test_keys_are_checked_once_a_minute_not_per_message(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: Counter[str] = Counter()
    request = ServiceClient.request

    def counting(self: ServiceClient, method: str, path: str, **kwargs: Any) -> Any:
        if path == "/v1/identity" or path.startswith("/api/v1/directory/"):
            asked[f"{self.audience} {path}"] += 1
        return request(self, method, path, **kwargs)

    monkeypatch.setattr(ServiceClient, "request", counting)
    monkeypatch.setattr(flows, "_checked", {})  # this process's earlier sends do not count

    def send() -> Counter[str]:
        asked.clear()
        flows.send(world.settings, world.known(), world.alice, ["bob"], b"checked once")
        return Counter(asked)

    first = send()
    assert first["relay /api/v1/directory/bob"] == 1, first
    assert sum(n for k, n in first.items() if k.endswith("/v1/identity")) == 5, first
    assert send() == Counter(), "the second send asked for keys checked a moment ago"
    monkeypatch.setattr(flows, "KEY_CHECK_SECONDS", 0.0)
    assert send() == first, "after the window every key is checked again"

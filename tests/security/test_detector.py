"""The leak detector can fire: a check that never could would prove nothing.

The attack cases pass when no proxy raises an alarm and no secret is found
in what the proxies captured. Here secrets are sent on purpose, a share in
a request body (base64), a key in a query (hex), and a value the service
answers with (hex, in the response body), through a passive proxy watching
them: each must be found, where it was.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from securecomm.envelope import prepare
from securecomm.shares import combine
from securecomm.testing.mitm import Proxy

from ._harness import ALL_LINKS, Case, World, leaks, record

DETECTOR = Case(
    "detector",
    ALL_LINKS,
    "passive",
    "self-test",
    None,
    "nothing: secrets sent on purpose through a passive proxy watching them: a real share"
    " (base64, request body), a message key (hex, query), a value the relay answers with"
    " (hex, response body)",
    "one alarm for each, naming where; the capture search finds each too",
)


# The detector is the harness's, not the services': one backend is enough.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_leak_detector_fires(world: World) -> None:
    draft = prepare(
        b"a message whose share and key are sent in clear on purpose",
        sender=world.alice.public,
        recipients=[world.bob.public],
        custodians=[(c.name, None) for c in world.settings.custodians],
        threshold=3,
    )
    share = draft.shares[0].to_bytes()
    key = combine(list(draft.shares[:3]))
    relay_fingerprint = httpx.get(f"{world.settings.server_url}/healthz").json()["fingerprint"]
    answered = bytes.fromhex(relay_fingerprint)
    secrets = [share, key, answered]
    failure = None
    alarms: list[str] = []
    found: list[str] = []
    try:
        with Proxy(world.settings.server_url, watch=secrets) as proxy:
            posted = httpx.post(
                f"{proxy.url}/api/relay",
                json={"note": base64.b64encode(share).decode()},
            )
            fetched = httpx.get(f"{proxy.url}/api/v1/inbox", params={"q": key.hex()})
            health = httpx.get(f"{proxy.url}/healthz")
        assert (posted.status_code, fetched.status_code, health.status_code) == (400, 401, 200)
        alarms = proxy.alarms
        assert alarms == [
            "ALARM: watched secret #1 in the request body",
            "ALARM: watched secret #2 in the path",
            "ALARM: watched secret #3 in the response body",
        ], alarms
        found = leaks([proxy], secrets)
        assert len(found) == 3, found
    except AssertionError as exc:
        failure = str(exc)
        raise
    finally:
        record(
            DETECTOR,
            0,
            None,
            failure,
            service="—",
            client="Alarms: "
            + "; ".join(a.removeprefix("ALARM: ") for a in alarms)
            + f"; the capture search found {len(found)} of 3",
        )

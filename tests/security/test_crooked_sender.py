"""A sender who makes one share off the polynomial (spec 7.7 step 7), through the real
services: every custodian holds the share the sender signed, so only combining the shares
can tell. `read` combines every good share it collected, so the lie is named whichever
custodians answered first, and no plaintext comes out.
"""

from __future__ import annotations

import pytest

from securecomm import shares
from securecomm.client import flows
from securecomm.errors import InconsistentSharesError

from ._harness import READ_DEADLINE, World

SECRET = b"the ledger is in the blue folder"


HONEST_SPLIT = shares.split


def crooked_split(secret: bytes, n: int, t: int, *, split_id: bytes) -> list[shares.Share]:
    """An honest split with share 4's first byte changed: off the polynomial."""
    made = HONEST_SPLIT(secret, n, t, split_id=split_id)
    wrong = bytes([made[3].value[0] ^ 0x5A]) + made[3].value[1:]
    return [*made[:3], shares.Share(split_id, t, 4, wrong), *made[4:]]


def test_a_share_made_off_the_polynomial_is_named_not_opened(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as crooked:
        crooked.setattr(shares, "split", crooked_split)
        sent = flows.send(world.settings, world.known(), world.alice, ["bob"], SECRET)
    with pytest.raises(InconsistentSharesError) as caught:
        flows.read(
            world.settings, world.known(), world.bob, sent.message_id, deadline=READ_DEADLINE
        )
    assert "the sender made them wrongly" in str(caught.value)
    assert "delta" in str(caught.value)
    assert SECRET.decode() not in str(caught.value)
    # Control: the same people, an honest split, the same read.
    honest = flows.send(world.settings, world.known(), world.alice, ["bob"], SECRET)
    result = flows.read(
        world.settings, world.known(), world.bob, honest.message_id, deadline=READ_DEADLINE
    )
    assert result.plaintext == SECRET
    assert len(result.used) == 5, result.used

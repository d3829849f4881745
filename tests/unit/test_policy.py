"""The release rule (custodian/policy.py), every branch and boundary, with no HTTP and no SQL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securecomm.custodian.policy import Decision, Deposit, Outcome, Verdict, decide, uses_up
from securecomm.envelope import Policy

BOB = ("bob", "b0" * 32)
CAROL = ("carol", "c0" * 32)
NOW = 1_800_000_000


def deposit(
    policy: Policy | None = None, *, releases: int = 0, destroyed: str | None = None
) -> Deposit:
    return Deposit(policy or Policy(), frozenset({BOB, CAROL}), releases, destroyed)


def refused(decision: Decision) -> tuple[int, str | None]:
    assert decision.outcome is Outcome.REFUSE, decision
    assert decision.reason
    return decision.status, decision.code


def test_a_recipient_gets_the_share() -> None:
    assert decide(deposit(), BOB, NOW) == Decision(Outcome.RELEASE)


def test_no_deposit() -> None:
    assert refused(decide(None, BOB, NOW)) == (404, "no_deposit")


@pytest.mark.parametrize("why", ["unsent", "burned"])
def test_a_destroyed_share_is_gone_for_everyone(why: str) -> None:
    decision = decide(deposit(destroyed=why), ("eve", "e0" * 32), NOW)
    assert refused(decision) == (410, "destroyed")  # before who asks: nothing is left
    assert why in (decision.reason or "")


@pytest.mark.parametrize(
    "caller",
    [("eve", "e0" * 32), ("bob", "e0" * 32), ("eve", BOB[1]), ("carol", BOB[1])],
    ids=["stranger", "bob's name, another key", "bob's key, another name", "names crossed"],
)
def test_only_a_recipient_by_name_and_key(caller: tuple[str, str]) -> None:
    assert refused(decide(deposit(), caller, NOW)) == (403, "not_recipient")


def test_not_before_is_inclusive() -> None:
    held = deposit(Policy(not_before=NOW))
    assert refused(decide(held, BOB, NOW - 1)) == (403, "too_early")
    assert decide(held, BOB, NOW).outcome is Outcome.RELEASE


def test_expires_is_exclusive() -> None:
    held = deposit(Policy(expires=NOW))
    assert decide(held, BOB, NOW - 1).outcome is Outcome.RELEASE
    assert refused(decide(held, BOB, NOW)) == (403, "expired")
    assert refused(decide(held, BOB, NOW + 1)) == (403, "expired")


def test_a_window_is_said_in_utc_as_people_read_it() -> None:
    # 1_800_000_000 seconds after the epoch is 2027-01-15 08:00:00 UTC.
    late = decide(deposit(Policy(expires=NOW)), BOB, NOW)
    assert late.reason == "the message expired at 2027-01-15 08:00:00 UTC"
    early = decide(deposit(Policy(not_before=NOW)), BOB, NOW - 1)
    assert early.reason == "no release before 2027-01-15 08:00:00 UTC (its policy)"


def test_a_window_refuses_on_both_sides() -> None:
    held = deposit(Policy(not_before=NOW, expires=NOW + 10))
    assert refused(decide(held, BOB, NOW - 1)) == (403, "too_early")
    assert decide(held, BOB, NOW + 9).outcome is Outcome.RELEASE
    assert refused(decide(held, BOB, NOW + 10)) == (403, "expired")


def test_the_last_allowed_release_then_used_up() -> None:
    rule = Policy(max_releases=3)
    assert decide(deposit(rule, releases=2), BOB, NOW).outcome is Outcome.RELEASE
    assert refused(decide(deposit(rule, releases=3), BOB, NOW)) == (403, "used_up")


def test_uses_up_at_the_last_release() -> None:
    assert not uses_up(Policy(), 10**6)
    assert not uses_up(Policy(max_releases=3), 2)
    assert uses_up(Policy(max_releases=3), 3)
    assert uses_up(Policy(max_releases=1), 1)


def test_the_order_of_refusals() -> None:
    # Spec 12.2: destroyed, not a recipient, too early, expired, used up.
    everything_wrong = Policy(not_before=NOW + 5, max_releases=1)
    stranger = ("eve", "e0" * 32)
    spent = deposit(everything_wrong, releases=1)
    assert refused(decide(spent, stranger, NOW))[1] == "not_recipient"
    assert refused(decide(spent, BOB, NOW))[1] == "too_early"
    late_and_spent = deposit(Policy(expires=NOW, max_releases=1), releases=1)
    assert refused(decide(late_and_spent, BOB, NOW))[1] == "expired"


APPROVAL = Policy(require_approval=True)


def test_approval_first_asks_the_operator() -> None:
    assert decide(deposit(APPROVAL), BOB, NOW) == Decision(Outcome.ASK_OPERATOR, 202)


def test_approval_states() -> None:
    held = deposit(APPROVAL)
    assert decide(held, BOB, NOW, Verdict.PENDING) == Decision(Outcome.WAIT, 202)
    assert decide(held, BOB, NOW, Verdict.APPROVED) == Decision(Outcome.RELEASE)
    assert refused(decide(held, BOB, NOW, Verdict.DENIED)) == (403, "denied")
    assert refused(decide(held, BOB, NOW, Verdict.RELEASED)) == (410, "already_released")
    assert refused(decide(held, BOB, NOW, Verdict.WITHDRAWN)) == (410, "withdrawn")


def test_an_approval_does_not_outrank_the_policy() -> None:
    late = deposit(Policy(expires=NOW, require_approval=True))
    assert refused(decide(late, BOB, NOW, Verdict.APPROVED)) == (403, "expired")
    spent = deposit(Policy(max_releases=1, require_approval=True), releases=1)
    assert refused(decide(spent, BOB, NOW, Verdict.APPROVED)) == (403, "used_up")
    gone = deposit(APPROVAL, destroyed="unsent")
    assert refused(decide(gone, BOB, NOW, Verdict.APPROVED)) == (410, "destroyed")


@pytest.mark.parametrize("why", ["unsent", "burned"])
def test_a_request_still_waiting_for_a_share_since_destroyed_waits_no_more(why: str) -> None:
    """Unsent by its sender, or burnt by another reader's release: a pending request was
    answered "waiting for the operator's approval" for ever."""
    gone = deposit(APPROVAL, destroyed=why)
    assert refused(decide(gone, BOB, NOW, Verdict.PENDING)) == (410, "destroyed")


def test_a_kept_release_is_answered_again_to_its_reader_only() -> None:
    """An answer lost on the way is not a share burnt for nobody (spec section 12.2): its
    reader asking again gets it again, whatever the share became since, unless unsent."""
    burnt = deposit(Policy(max_releases=1, expires=NOW), releases=1, destroyed="burned")
    assert decide(burnt, BOB, NOW + 60, kept=True) == Decision(Outcome.REPEAT)
    approved = deposit(APPROVAL, releases=1)
    assert decide(approved, BOB, NOW, Verdict.RELEASED, kept=True) == Decision(Outcome.REPEAT)
    # Kept for bob says nothing for anyone else, nor once its sender unsent it.
    assert refused(decide(burnt, ("eve", "e0" * 32), NOW, kept=True)) == (410, "destroyed")
    unsent = deposit(Policy(max_releases=1), releases=1, destroyed="unsent")
    assert refused(decide(unsent, BOB, NOW, kept=True)) == (410, "destroyed")
    # Nor for a request still waiting, denied or withdrawn.
    for verdict, answer in (
        (Verdict.PENDING, (202, None)),
        (Verdict.DENIED, (403, "denied")),
        (Verdict.WITHDRAWN, (410, "withdrawn")),
    ):
        decision = decide(approved, BOB, NOW, verdict, kept=True)
        assert decision.outcome is not Outcome.REPEAT
        assert (decision.status, decision.code) == answer


times = st.one_of(st.none(), st.integers(0, 2**40 - 1))  # room for expires = not_before + 1


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    not_before, expires = draw(times), draw(times)
    if not_before is not None and expires is not None and expires <= not_before:
        expires = not_before + 1
    return Policy(
        not_before=not_before,
        expires=expires,
        max_releases=draw(st.one_of(st.none(), st.integers(1, 5))),
        require_approval=draw(st.booleans()),
    )


@given(
    policies(),
    st.integers(0, 6),
    st.sampled_from([BOB, CAROL, ("eve", "e0" * 32)]),
    st.integers(0, 2**40),
    st.one_of(st.none(), st.sampled_from(list(Verdict))),
    st.one_of(st.none(), st.sampled_from(["unsent", "burned"])),
)
def test_a_release_only_ever_within_the_policy(
    rule: Policy,
    releases: int,
    caller: tuple[str, str],
    now: int,
    verdict: Verdict | None,
    destroyed: str | None,
) -> None:
    decision = decide(deposit(rule, releases=releases, destroyed=destroyed), caller, now, verdict)
    if decision.outcome is Outcome.RELEASE:
        assert destroyed is None
        assert caller in {BOB, CAROL}
        assert rule.allows_release_at(now)
        assert rule.max_releases is None or releases < rule.max_releases
        if rule.require_approval:
            assert verdict is Verdict.APPROVED  # never without the operator's yes

"""The release rule: may this custodian hand its share of a message to this caller, now?

The whole rule is :func:`decide`, a pure function of the deposit's state, who asks,
the time, and (for a release that waited for the operator) the operator's verdict. No
Flask, no SQL: the views read the state, call it, and do what it says, and the tests
try every branch and boundary without either (spec §12.2 gives the order).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..codes import Code
from ..envelope import Policy, utc_text

__all__ = ["Decision", "Deposit", "Outcome", "Verdict", "decide", "uses_up"]


class Outcome(enum.Enum):
    RELEASE = "release"  # seal the share to the caller now
    ASK_OPERATOR = "ask_operator"  # record a pending release for the operator to decide
    WAIT = "wait"  # the operator has not decided yet
    REFUSE = "refuse"  # see Decision.status, code and reason
    REPEAT = "repeat"  # answer again the release kept for the caller (its answer was lost)


class Verdict(enum.Enum):
    """Where a release that needs the operator stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    RELEASED = "released"  # approved and already collected
    WITHDRAWN = "withdrawn"  # its reader no longer needs it (pending or approved before)


@dataclass(frozen=True)
class Deposit:
    """What the rule needs to know of a deposit."""

    policy: Policy
    recipients: frozenset[tuple[str, str]]  # (name, fingerprint hex) of each recipient
    releases: int  # releases made so far
    destroyed: str | None = None  # why the share is gone ("unsent", "burned"), or None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    status: int = 200
    code: str | None = None
    reason: str | None = None


def _refuse(status: int, code: str, reason: str) -> Decision:
    return Decision(Outcome.REFUSE, status, code, reason)


def decide(
    deposit: Deposit | None,
    caller: tuple[str, str],
    now: int,
    verdict: Verdict | None = None,
    kept: bool = False,
) -> Decision:
    """The decision on ``caller`` (name, fingerprint hex) asking for the share at ``now``.

    ``verdict`` is None for a new request, else the state of the release being asked
    about again (``GET /v1/releases/{id}``), or DENIED for a new request from a caller the
    operator denied this share before: a denial is final. ``kept`` is whether a release of
    this share to this caller is kept (a release given once, within its time; spec section
    12.2): asked again, it is answered again as it was, whatever the deposit became since
    (burnt by that very release, or past its expiry), unless its sender unsent it.
    """
    if kept and deposit is not None and caller in deposit.recipients:
        if deposit.destroyed != "unsent" and verdict in (None, Verdict.RELEASED):
            return Decision(Outcome.REPEAT)
    if verdict is Verdict.PENDING:
        if deposit is not None and deposit.destroyed is not None:  # nothing left to wait for
            return _refuse(410, Code.DESTROYED, f"the share was destroyed ({deposit.destroyed})")
        return Decision(Outcome.WAIT, 202)
    if verdict is Verdict.DENIED:
        return _refuse(403, Code.DENIED, "the operator denied this release; a denial is final")
    if verdict is Verdict.RELEASED:
        return _refuse(410, Code.ALREADY_RELEASED, "this release was already collected")
    if verdict is Verdict.WITHDRAWN:
        return _refuse(410, Code.WITHDRAWN, "you withdrew this release; ask for the share anew")
    if deposit is None:
        return _refuse(404, Code.NO_DEPOSIT, "no share of that message is held here")
    if deposit.destroyed is not None:
        return _refuse(410, Code.DESTROYED, f"the share was destroyed ({deposit.destroyed})")
    if caller not in deposit.recipients:
        return _refuse(403, Code.NOT_RECIPIENT, "you are not a recipient of this message")
    policy = deposit.policy
    if not policy.allows_release_at(now):
        if policy.not_before is not None and now < policy.not_before:
            return _refuse(
                403, Code.TOO_EARLY, f"no release before {utc_text(policy.not_before)} (its policy)"
            )
        assert policy.expires is not None
        return _refuse(403, Code.EXPIRED, f"the message expired at {utc_text(policy.expires)}")
    if policy.max_releases is not None and deposit.releases >= policy.max_releases:
        return _refuse(403, Code.USED_UP, f"all {policy.max_releases} release(s) were made")
    if policy.require_approval and verdict is None:
        return Decision(Outcome.ASK_OPERATOR, 202)
    return Decision(Outcome.RELEASE)


def uses_up(policy: Policy, releases: int) -> bool:
    """Whether the share must be destroyed once ``releases`` releases have been made."""
    return policy.max_releases is not None and releases >= policy.max_releases

"""Every link, every active mode: a full send and read through the proxies; no attack may succeed.

On each storage backend: the world's services store on SQLite, then on PostgreSQL.

What each case alters and expects is in ``_cases.py``; what every case
must show whatever the attack (no secret on the wire, no alarm, no wrong
plaintext, the attack really made) in ``_harness.common_checks``. A case
that fails because an attack succeeded says ``ATTACK SUCCEEDED``.
"""

from __future__ import annotations

import pytest

from ._cases import CASES, PASSIVE
from ._harness import Case, Run, World, common_checks, record, run_case


def _play(world: World, case: Case, order: int, run: Run) -> None:
    notes: list[str] = []
    try:
        common_checks(run)
        for check in case.checks:
            note = check(world, run)
            if note:
                notes.append(note)
    except AssertionError as exc:
        run.notes = notes
        record(case, order, run, str(exc), backend=world.backend)
        raise
    run.notes = notes
    record(case, order, run, None, backend=world.backend)


def test_passive_capture_holds_no_secret(world_and_recording: tuple[World, Run]) -> None:
    """The recorded message (sent and read through passive proxies) leaked nothing."""
    world, recorded = world_and_recording
    _play(world, PASSIVE, 0, recorded)


@pytest.mark.parametrize(
    ("order", "case"), list(enumerate(CASES, start=1)), ids=[case.id for case in CASES]
)
def test_attack(world: World, order: int, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        run = run_case(world, case, monkeypatch)
    except BaseException as exc:
        record(
            case,
            order,
            None,
            f"the case crashed: {type(exc).__name__}: {exc}",
            backend=world.backend,
        )
        raise
    _play(world, case, order, run)

"""Last: docs/security.md is what tools/security_doc.py renders from this run's results.

Named to run after the attack cases (pytest runs files in name order).
Run alone, or with some cases deselected, it has not the results to
render and skips. ``SECURECOMM_UPDATE_SECURITY_DOC=1`` writes the page
instead of comparing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tools import security_doc

from ._cases import CASES, PASSIVE
from ._harness import RESULTS, RESULTS_ON
from .test_detector import DETECTOR

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_security_doc_is_current(tmp_path: Path) -> None:
    expected = {case.id for case in (PASSIVE, DETECTOR, *CASES)}
    played = {result["id"] for result in RESULTS}
    if played != expected:
        pytest.skip(f"{len(expected - played)} case(s) not played in this run: run tests/security")
    results = list(RESULTS)
    # On another backend, every case played there ended as it did on SQLite.
    by_id = {result["id"]: result for result in results}
    for backend, others in RESULTS_ON.items():
        for other in others:
            assert other == by_id[other["id"]], f"{other['id']} on {backend}: {other}"
    rendered = security_doc.render(results)
    # The script's own way in gives the same page.
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(results, ensure_ascii=False, indent=1), "utf-8")
    assert security_doc.main([str(results_file), "-o", str(tmp_path / "security.md")]) == 0
    assert (tmp_path / "security.md").read_text("utf-8") == rendered
    if os.environ.get("SECURECOMM_UPDATE_SECURITY_DOC") == "1":
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(rendered, "utf-8")
        return
    assert DOC.exists(), f"{DOC} is missing: run with SECURECOMM_UPDATE_SECURITY_DOC=1"
    assert DOC.read_text("utf-8") == rendered, (
        f"{DOC} is out of date: run"
        " SECURECOMM_UPDATE_SECURITY_DOC=1 .venv/bin/pytest tests/security"
    )

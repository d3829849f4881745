"""`make bench` at tiny sizes: each benchmark runs and writes its results (no figure is judged)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import run


def test_every_benchmark_runs_and_writes_the_table_and_chart(tmp_path: Path) -> None:
    assert run.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    groups = {row["group"] for row in rows}
    assert {"AES-GCM", "Shamir", "Relay", "End to end", "Memory", "Storage"} <= groups
    assert all(row["ours"] > 0 for row in rows)
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| ") >= len(rows)
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""What every benchmark shares: the result row, and timing ours beside a peer fairly.

The machine is shared and noisy, so a figure is never one run: ours and the
peer alternate, round after round, in one process, and each side's median is
kept. Ratios, not absolute times, are what the results table compares.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One line of bench/results.md."""

    group: str  # "AES-GCM", "Shamir", "Relay", "End to end", "Memory"
    figure: str  # what is measured, e.g. "seal 1 KiB"
    unit: str  # "MB/s", "ops/s", "ms", "MiB"
    ours: float
    peer: float | None  # None where there is no peer (a goal on ours alone)
    peer_name: str
    goal: str  # in words, e.g. ">= 95 % of the peer"
    met: bool | None  # None: no goal for this row
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.peer is None or self.peer == 0:
            return None
        return self.ours / self.peer if self.higher_is_better else self.peer / self.ours

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def alternate(
    ours: Callable[[], object],
    peer: Callable[[], object],
    *,
    rounds: int = 7,
    repeat: int = 1,
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``peer``, timed in alternation.

    Each round times ``repeat`` calls of one, then of the other (the order
    flips every round, so neither always runs on a warm or a cold cache).
    """
    mine: list[float] = []
    theirs: list[float] = []
    for round_number in range(rounds):
        pair = [(ours, mine), (peer, theirs)]
        if round_number % 2:
            pair.reverse()
        for function, sink in pair:
            started = time.perf_counter()
            for _ in range(repeat):
                function()
            sink.append((time.perf_counter() - started) / repeat)
    return statistics.median(mine), statistics.median(theirs)


def repeat_for(function: Callable[[], object], seconds: float = 0.05) -> int:
    """How many calls of ``function`` take about ``seconds`` (at least 1)."""
    started = time.perf_counter()
    function()
    once = max(time.perf_counter() - started, 1e-7)
    return max(1, int(seconds / once))


def group_cpu_seconds(leader: int) -> float:
    """User + system seconds of every process in ``leader``'s process group so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): pgrp is field 5, utime..cstime fields 14..17.
        if int(fields[2]) == leader:
            total += sum(int(value) for value in fields[11:15])
    return total / ticks

"""Run every benchmark and write bench/results.md, bench/results.json and bench/chart.png.

python -m bench.run            # what `make bench` runs (a few minutes)
python -m bench.run --quick    # tiny sizes, one round: checks that each benchmark runs
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._common import Row

HERE = Path(__file__).resolve().parent


def _suites() -> dict[str, Callable[[bool], list[Row]]]:
    from bench import crypto, services, slow_clients, storage

    return {
        "crypto": crypto.run,
        "services": services.run,
        "slow_clients": slow_clients.run,
        "storage": storage.run,
    }


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render_markdown(rows: Sequence[Row], *, elapsed: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.run`). Ours and each peer alternate in"
        " one run, several rounds, medians kept; the ratio is ours over the peer's (for"
        " times, the peer's over ours), so above 1 means we are faster.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}; the run took {elapsed:.0f} s.",
        "",
        "| group | figure | ours | peer | peer's figure | ratio | goal | met? |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}x"
        lines.append(
            f"| {row.group} | {row.figure} | {_number(row.ours)} {row.unit} | {row.peer_name} |"
            f" {_number(row.peer)}{' ' + row.unit if row.peer is not None else ''} | {ratio} |"
            f" {row.goal} | {met} |"
        )
    missed = [row for row in rows if row.met is False]
    lines += ["", f"{sum(r.met is True for r in rows)} goal(s) met, {len(missed)} missed."]
    return "\n".join(lines) + "\n"


def render_chart(rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compared = [row for row in rows if row.ratio is not None]
    if not compared:
        return
    labels = [f"{row.group}: {row.figure}\nvs {row.peer_name}" for row in compared]
    ratios = [row.ratio or 0.0 for row in compared]
    colours = [
        "#2e7d32" if row.met else "#c62828" if row.met is False else "#607d8b" for row in compared
    ]
    height = max(4.0, 0.42 * len(compared) + 1.5)
    figure, axes = plt.subplots(figsize=(11, height))
    axes.barh(range(len(compared)), ratios, color=colours)
    axes.set_yticks(range(len(compared)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("ours / peer (log scale; > 1: securecomm is faster)")
    axes.set_title("securecomm beside its peers (green: goal met, red: missed, grey: no goal)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument(
        "--only",
        choices=sorted(_suites()),
        action="append",
        help="run only this suite (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[Row] = []
    for name, run in _suites().items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        suite_rows = run(args.quick)
        for row in suite_rows:
            print(
                f"   {row.group}: {row.figure}: {_number(row.ours)} {row.unit}"
                + (f" vs {row.peer_name} {_number(row.peer)}" if row.peer is not None else "")
                + ("" if row.met is None else f" [{'met' if row.met else 'MISSED'}]"),
                file=sys.stderr,
                flush=True,
            )
        rows.extend(suite_rows)
    elapsed = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps([row.to_json() for row in rows], indent=2) + "\n"
    )
    (args.out / "results.md").write_text(render_markdown(rows, elapsed=elapsed))
    render_chart(rows, args.out / "chart.png")
    print(f"wrote {args.out / 'results.md'} and chart.png in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

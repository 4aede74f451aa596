"""The row every benchmark script writes with ``--json PATH`` and ``run_all.py`` collects into one table.

A row is one figure: our absolute number, the baseline's measured in the same run (if any) and their ratio.
Ratios are always costs, ours relative to the baseline, so below 1 means ours is cheaper: ours/baseline for
times, tokens and memory, baseline/ours for throughputs (the figure names say which).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from mlalign_tasks.files.atomic import write_json_atomic


@dataclass
class Row:
    """One figure; `ours` is None only in run_all.py's row for a benchmark that failed or was skipped."""

    benchmark: str
    figure: str
    ours: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    ratio: float | None = None
    note: str = ""


def cost(
    benchmark: str, figure: str, ours: float, baseline: float, baseline_name: str, unit: str, note: str = ""
) -> Row:
    """A cost figure (time, tokens, memory): ratio = ours / baseline."""
    return Row(benchmark, figure, ours, unit, baseline, baseline_name, ours / baseline, note)


def throughput(
    benchmark: str, figure: str, ours: float, baseline: float, baseline_name: str, unit: str, note: str = ""
) -> Row:
    """A throughput figure (items/s, steps/s): ratio = baseline / ours, i.e. the time ratio ours / baseline."""
    return Row(benchmark, figure, ours, unit, baseline, baseline_name, baseline / ours, note)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as bench/_rows.py rows")


def write_rows(path: Path | None, rows: list[Row]) -> None:
    """Write `rows` as a JSON list to `path` atomically (nothing when `path` is None)."""
    if path is None:
        return
    write_json_atomic(path, [asdict(r) for r in rows])

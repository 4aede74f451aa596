"""Benchmark: does the forked overlap of a board build pay? The same board built with the bootstrap and the plots in
forked processes (`mlalign_tasks.parallel.Background`) and with both run in this process, in the same run.

The inputs are bench_leaderboard.py's (every suite's task-language cells, half the models aligned adapters, per-sample
logs). Builds alternate between the two versions so that the machine's other load falls on both alike:

- cold: no parse cache (every input file parsed);
- warm: every input in the parse cache (the 100-model rebuild whose target is 5 s).

    .venv/bin/python bench/bench_leaderboard_overlap.py --models 100 --json bench/results/overlap.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _rows import Row, add_json_option, cost, write_rows
from bench_leaderboard import make_inputs, task_pairs

from mlalign_tasks.leaderboard import BoardOptions, build, make_leaderboard, render
from mlalign_tasks.parallel import Background


class _Here(Background):
    """`Background` that runs its function here at once: the plain sequential build."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.name, self.process, self.outcome = function.__name__, None, (True, function(*args))


def _build(inputs: list[Path], out: Path, manifest: Path, cache: Path | None, forked: bool) -> tuple[float, float]:
    """Wall and CPU time (this process and its children) of one `make_leaderboard`."""
    runner = Background if forked else _Here
    build.Background = render.Background = runner  # type: ignore[misc]
    try:
        start, start_cpu = time.perf_counter(), _cpu()
        make_leaderboard(inputs, out, manifest, BoardOptions(embed=False, cache=cache))
        wall, cpu = time.perf_counter() - start, _cpu() - start_cpu
    finally:
        build.Background = render.Background = Background  # type: ignore[misc]
    shutil.rmtree(out)
    return wall, cpu


def bench(n_models: int, n_items: int, repeats: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="mlalign-bench-") as tmp:
        root = Path(tmp)
        dirs, manifest = make_inputs(root / "inputs", n_models, n_items)
        size = sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
        cache = root / "cache"
        _build(dirs, root / "board", manifest, cache, forked=True)  # fills the cache
        times: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        for _ in range(repeats):
            for build_name, folder in (("cold", None), ("warm", cache)):
                for forked in (True, False):
                    times.setdefault((build_name, forked), []).append(
                        _build(dirs, root / "board", manifest, folder, forked)
                    )
        rows = []
        for build_name in ("cold", "warm"):
            forked, plain = min(times[(build_name, True)]), min(times[(build_name, False)])
            print(
                f"{n_models} models x {len(task_pairs())} pairs x {n_items} items ({size / 2**20:.0f} MiB), {build_name} "
                f"cache, best of {repeats} (load average {os.getloadavg()[0]:.1f}): forked overlap {forked[0]:.2f} s "
                f"wall ({forked[1]:.2f} s CPU), sequential {plain[0]:.2f} s wall ({plain[1]:.2f} s CPU): "
                f"ratio {forked[0] / plain[0]:.2f}",
                flush=True,
            )
            rows.append(
                cost(
                    "leaderboard",
                    f"board build, {build_name} cache, {n_models} models: forked overlap/sequential",
                    forked[0],
                    plain[0],
                    "the same build with the bootstrap and plots in this process",
                    "s",
                    f"{n_items} items/pair, {size / 2**20:.0f} MiB; CPU {forked[1]:.2f} s forked, {plain[1]:.2f} s "
                    f"sequential; best of {repeats}; {os.cpu_count()} cores",
                )
            )
        return rows


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--items", type=int, default=50, help="items per task-language pair")
    parser.add_argument("--repeats", type=int, default=2)
    add_json_option(parser)
    args = parser.parse_args()
    write_rows(args.json, bench(args.models, args.items, args.repeats))


if __name__ == "__main__":
    main()

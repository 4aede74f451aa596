"""Benchmark: build a leaderboard from N models x every suite's task-language cells, with per-sample logs.

Every cell of every suite on the board (ours and lm-eval's multilingual built-ins, `mlalign_tasks.tasks.suites`: 423
task-language pairs). Half the models are bases, half are aligned adapters of them (peft=...), trained on
de/fr/zh/sw.
Files are written in lm-eval 0.4.13's exact layout (mlalign_tasks.leaderboard.synthetic); only the
`make_leaderboard` call is timed (read + statistics + plots + HTML + atomic write), without copying the
inputs into the board (`--no-embed-inputs`; embedding adds a plain file copy of the inputs). Four builds:

- cold: no parse cache (`--no-cache`): every input file parsed;
- first: an empty parse cache, filled as the inputs are parsed (a first `mlalign leaderboard`);
- rebuild: the same board again, every input in the cache;
- one new: the board with one more model, whose run alone is parsed (the common edit of a board).

Wall time and CPU time (this process and its workers) are reported: on a shared machine the wall time also
measures the other load. The baseline, measured in the same run, is the floor of any board built without a
cache: parsing every input file (results JSON and samples JSONL) once, in this process.

    .venv/bin/python bench/bench_leaderboard.py                 # 10, 25, 50, 100 models, 50 items each
    .venv/bin/python bench/bench_leaderboard.py --models 100 --items 250
    .venv/bin/python bench/bench_leaderboard.py --models 10 50 --repeats 1 --json rows.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from _rows import Row, add_json_option, cost, write_rows

from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
from mlalign_tasks.leaderboard.synthetic import MC_CHOICES, Item, write_run
from mlalign_tasks.tasks import suites

SEEN = ["de", "fr", "zh", "sw"]


def task_pairs() -> list[tuple[suites.Suite, str]]:
    """Every (suite, language) cell of every suite."""
    return [(suite, lang) for suite in suites.SUITES.values() for lang in suite.languages]


def make_inputs(root: Path, n_models: int, n_items: int, listed: int | None = None) -> tuple[list[Path], Path]:
    """Write n_models runs (bases and their aligned adapters) and a manifest naming the training languages of the
    aligned ones among the first `listed` (default: all); return (result dirs, manifest)."""
    rng = random.Random(0)
    pairs = task_pairs()
    entries, dirs = [], []
    for m in range(n_models):
        base = f"org/base-{m // 2:03d}"
        aligned = m % 2 == 1
        args = f"pretrained={base},peft=adapters/aligned-{m // 2:03d}" if aligned else f"pretrained={base}"
        p_right = 0.55 if aligned else 0.45
        tasks, generative = {}, set()
        for suite, lang in pairs:
            name = suite.task(lang)
            gen = suite.choices is None
            k = min(suite.choices or 1, len(MC_CHOICES))  # the synthetic records log three choices
            if gen:
                generative.add(name)
            items = []
            for i in range(n_items):
                gold: int | str = str(i % 97) if gen else i % k
                right = rng.random() < p_right
                wrong: int | str = str(i % 97 + 1) if gen else (i + 1) % k
                items.append(Item(gold if right else wrong, gold))
            tasks[name] = items
        out = root / f"run-{m:03d}"
        write_run(out, args, tasks, generative=generative)
        dirs.append(out)
        if aligned and m < (n_models if listed is None else listed):
            entries.append({"match": f"adapters/aligned-{m // 2:03d}", "languages": SEEN})
    manifest = root / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"title": "benchmark board", "models": entries}), encoding="utf-8")
    return dirs, manifest


def read_inputs(dirs: list[Path]) -> int:
    """The baseline: parse every results JSON and samples JSONL in `dirs`; returns the records read."""
    records = 0
    for f in (f for d in dirs for f in d.rglob("*.json*")):
        with f.open(encoding="utf-8") as fh:
            if f.suffix == ".jsonl":
                records += sum(1 for line in fh if json.loads(line))
            else:
                records += bool(json.load(fh))
    return records


BUILDS = ("cold", "first", "rebuild", "one new")


def bench(n_models: int, n_items: int, repeats: int) -> list[Row]:
    """Best-of-`repeats` wall time of each of `BUILDS`, against the best time to parse the inputs."""
    with tempfile.TemporaryDirectory(prefix="mlalign-bench-") as tmp:
        root = Path(tmp)
        dirs, manifest = make_inputs(root / "inputs", n_models + 1, n_items, listed=n_models)
        dirs, new = dirs[:-1], dirs[-1]  # one more model, for the fourth build
        size = sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
        times: dict[str, list[float]] = {b: [] for b in BUILDS}
        cpu: dict[str, list[float]] = {b: [] for b in BUILDS}
        reads = []
        for _ in range(repeats):
            start = time.perf_counter()
            read_inputs(dirs)
            reads.append(time.perf_counter() - start)
            cache = root / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            for build, inputs, folder in (
                ("cold", dirs, None), ("first", dirs, cache), ("rebuild", dirs, cache), ("one new", [*dirs, new], cache)
            ):  # fmt: skip
                start, start_cpu = time.perf_counter(), _cpu()
                board = make_leaderboard(inputs, root / "board", manifest, BoardOptions(embed=False, cache=folder))
                times[build].append(time.perf_counter() - start)
                cpu[build].append(_cpu() - start_cpu)
                shutil.rmtree(root / "board")
        best = {b: min(t) for b, t in times.items()}
        print(
            f"{n_models:4d} models x {len(task_pairs())} task-language pairs x {n_items} items "
            f"({size / 2**20:.0f} MiB of results+samples, {len(board.comparisons)} paired tests; best of {repeats}, "
            f"load average {os.getloadavg()[0]:.1f}): parsing the inputs alone {min(reads):.2f} s; "
            + "; ".join(f"{b} {best[b]:.2f} s wall ({min(cpu[b]):.2f} s CPU)" for b in BUILDS),
            flush=True,
        )
        return [
            cost(
                "leaderboard",
                f"board build, {build}, {n_models} models x {len(task_pairs())} pairs (ours/parse inputs)",
                best[build],
                min(reads),
                "parse every input file",
                "s",
                f"{n_items} items/pair, {size / 2**20:.0f} MiB; {min(cpu[build]):.2f} s CPU; target < 5 s at 100 models",
            )
            for build in BUILDS
        ]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--items", type=int, default=50, help="items per task-language pair")
    parser.add_argument("--repeats", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args()
    by_models = {n: bench(n, args.items, args.repeats) for n in args.models}
    rows = [row for built in by_models.values() for row in built]
    if len(by_models) > 1:
        lo, hi = min(args.models), max(args.models)
        growth = by_models[hi][0].ours / by_models[lo][0].ours  # cold builds
        print(f"{lo} -> {hi} models: cold build time x{growth:.2f} (linear: x{hi / lo:.1f})")
        rows.append(cost("leaderboard", f"cold build time growth {lo} -> {hi} models (ours/linear)", growth, hi / lo,
                         "linear in models", "x"))  # fmt: skip
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()

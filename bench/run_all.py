"""Run every benchmark in bench/ and print one table: each figure next to its baseline measured in the same run.

Each script runs as a subprocess with ``--json`` (rows of bench/_rows.py) and, unless ``--full``, quick
settings (a few minutes in all on a 2-core CPU machine). A script that fails becomes a failed row with its
last error line, the others still run, and the exit status is 1. ``bench_qlora_gpu.py`` runs only when a
CUDA GPU is visible. The table is headed by the machine (CPU, cores, RAM, torch, GPU).

    .venv/bin/python bench/run_all.py                       # all, quick settings  (make bench)
    .venv/bin/python bench/run_all.py --only eval train     # some of them
    .venv/bin/python bench/run_all.py --full --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from _rows import Row
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlalign_tasks.files.atomic import write_json_atomic

BENCH_DIR = Path(__file__).resolve().parent
SHARED_DATA = BENCH_DIR.parents[1] / "shared" / "data"


def qlora_rows(results: list[dict]) -> list[Row]:
    """bench_qlora_gpu.py's results as rows (absolute figures: it measures no baseline)."""
    rows = []
    for r in results:
        what = f"{r['shape']} seq {r['seq']} batch {r['batch']}"
        note = f"attn {r['attn']}, liger {r['liger']}, MFU {r['mfu']}, {r['device']}"
        rows.append(Row("qlora_gpu", f"{what} tokens/s", r["tokens_per_s"], "tokens/s", note=note))
        rows.append(Row("qlora_gpu", f"{what} peak memory", r["peak_mem_gib"], "GiB", note=note))
    return rows


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    quick: tuple[str, ...]  # arguments for the quick run; --full passes none (the script's defaults)
    needs_cuda: bool = False
    to_rows: Callable[[list[dict]], list[Row]] | None = None  # for a script whose --json is not rows


BENCHMARKS = (
    Benchmark("leaderboard", "bench_leaderboard.py", ("--models", "10", "50", "--items", "20", "--repeats", "2")),
    Benchmark("analysis", "bench_analysis.py", ("--items", "4")),
    Benchmark("paper_cost", "bench_paper_cost.py", ("--limit", "5", "--repeats", "2")),
    Benchmark("eval", "bench_eval.py", ("--langs", "de,en", "--limit", "2", "--max-gen-toks", "16", "--repeats", "3")),
    Benchmark("train", "bench_train.py", ("--steps", "5", "--batch", "4", "--repeats", "2")),
    Benchmark("batching", "bench_batching.py", ("--steps", "2", "--repeats", "1", "--hidden", "64", "256")),
    Benchmark(
        "qlora_gpu",
        "bench_qlora_gpu.py",
        ("--shapes", "qwen2.5-1.5b", "--seq", "512", "--steps", "5", "--warmup", "2"),
        needs_cuda=True,
        to_rows=qlora_rows,
    ),
)


def machine() -> dict[str, str | int | None]:
    """What the absolute figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    ram = None
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        kib = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
        ram = round(int(kib) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": ram,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def label(m: dict) -> str:
    ram = f"{m['ram_gib']} GiB RAM" if m["ram_gib"] is not None else "RAM unknown"
    return (
        f"{m['cpu']}, {m['cores']} cores, {ram}, torch {m['torch']}, GPU {m['gpu'] or 'none'}, "
        f"Python {m['python']}, {m['date']}"
    )


def run(bench: Benchmark, full: bool, out: Path, env: dict[str, str]) -> tuple[bool, list[Row]]:
    """Run one script: (True, its rows), or (False, one failed row with the last line it wrote to stderr)."""
    cmd = [sys.executable, str(BENCH_DIR / bench.script), *(() if full else bench.quick), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=BENCH_DIR.parent, env=env, capture_output=True, text=True)
    if proc.returncode == 0 and out.exists():
        data = json.loads(out.read_text(encoding="utf-8"))
        return True, bench.to_rows(data) if bench.to_rows else [Row(**row) for row in data]
    lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else "no output"
    if proc.returncode == 0:
        reason = f"wrote no {out.name}"
    return False, [Row(bench.name, f"failed (exit {proc.returncode})", None, "", note=reason)]


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def table(rows: list[Row], title: str) -> Table:
    t = Table(
        "benchmark",
        "figure",
        "ours",
        "baseline",
        "ratio",
        "unit",
        "baseline is / note",
        title=title,
        title_justify="left",
    )
    for r in rows:
        t.add_row(
            r.benchmark,
            f"[red]{escape(r.figure)}[/red]" if r.figure.startswith("failed") else escape(r.figure),
            fmt(r.ours),
            fmt(r.baseline),
            fmt(r.ratio, 3),
            r.unit,
            escape("; ".join(filter(None, (r.baseline_name, r.note)))),
        )
    return t


def main() -> int:
    names = [b.name for b in BENCHMARKS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"run only these: {', '.join(names)}")
    parser.add_argument("--full", action="store_true", help="the scripts' default (full) sizes instead of quick ones")
    parser.add_argument("--json", type=Path, default=None, help="also write the machine and all rows to this file")
    args = parser.parse_args()

    console = Console(width=None if sys.stdout.isatty() else 220)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")  # every benchmark uses a local model
    if SHARED_DATA.is_dir():
        env.setdefault("MLALIGN_DATA_DIR", str(SHARED_DATA))
    m = machine()
    rows: list[Row] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="mlalign-bench-") as tmp:
        for bench in BENCHMARKS:
            if args.only and bench.name not in args.only:
                continue
            if bench.needs_cuda and m["gpu"] is None:
                rows.append(Row(bench.name, "skipped: no CUDA GPU", None, ""))
                continue
            start = time.perf_counter()
            with console.status(f"running {bench.script} ({'full' if args.full else 'quick'})"):
                ok, got = run(bench, args.full, Path(tmp) / f"{bench.name}.json", env)
            if not ok:
                failed.append(bench.name)
            console.print(f"{bench.name}: {'done' if ok else 'FAILED'} in {time.perf_counter() - start:.0f} s")
            rows += got

    console.print(f"[bold]machine:[/bold] {label(m)}")
    console.print(table(rows, f"{'full' if args.full else 'quick'} settings"))
    console.print("ratio: ours / baseline as a cost (time, tokens, or baseline/ours for a throughput): < 1 is better")
    if args.json:
        write_json_atomic(
            args.json, {"machine": m, "full": args.full, "failed": failed, "rows": [asdict(r) for r in rows]}
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

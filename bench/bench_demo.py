"""The demo's running time (`make demo`'s `mlalign run`: the toy world's whole study) with the machine's load.

One run into a temporary folder (the committed board is not touched), timed per stage; the load average before and
after and the cores are recorded with it, because on a shared machine the time grows with the load (README: Quick
start quotes these files).

Usage: python bench/bench_demo.py [--json PATH]  (default: bench/results/demo-DATE-cpuN.json)
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLALIGN_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLALIGN_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

from mlalign_tasks import __version__  # noqa: E402
from mlalign_tasks.files.atomic import write_json_atomic  # noqa: E402
from mlalign_tasks.pipeline.study import run_study  # noqa: E402
from mlalign_tasks.pipeline.study_options import configure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args()
    load_before, start = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlalign-bench-demo-") as tmp:
        results, _ = run_study(configure(out=Path(tmp) / "run", board=Path(tmp) / "board"))
    seconds, load_after = time.perf_counter() - start, os.getloadavg()
    record = {
        "command": "mlalign run (the demo's settings; out and board in a temporary folder)",
        "mlalign": __version__,
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "load_average_1_5_15_before": [round(v, 2) for v in load_before],
        "load_average_1_5_15_after": [round(v, 2) for v in load_after],
        "seconds": round(seconds, 1),
        "stages": {r.name: round(r.seconds, 1) for r in results},
    }
    path = args.json or Path(__file__).parent / "results" / f"demo-{record['date']}-cpu{record['cores']}.json"
    write_json_atomic(path, record)
    print(f"demo: {seconds:.0f} s on {record['cores']} cores at load {load_before[0]:.1f}-{load_after[0]:.1f}: {path}")


if __name__ == "__main__":
    main()

"""`mlalign eval` against plain `lm_eval --model hf --include_path` on the same tasks, items and batch size.

Both run as subprocesses (start-up, task indexing, model load and evaluation: what a user waits for), alternating
A/B for `--repeats` rounds; the fastest run of each is the figure. The paper tasks are scored the same way on both
sides (`--label-scoring label`: lm-eval's whole-label log-likelihood, what plain lm-eval runs); the paper's one
forward scoring is bench_paper_cost.py's comparison.

    python bench/bench_cli_eval.py --model gemma-3-270m --tasks sentiment_aligned:en,mgsm_aligned:en --limit 10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import add_json_option, cost, throughput, write_rows

from mlalign_tasks.models.gguf_models import resolve_model
from mlalign_tasks.pipeline.evaluate import parse_tasks, tasks_dir

BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode:
        sys.exit(f"{' '.join(cmd[:2])} failed: {run.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model id, folder, .gguf file or gemma-3-270m")
    parser.add_argument("--tasks", default="sentiment_aligned:en,mgsm_aligned:en", help="mlalign eval --tasks")
    parser.add_argument("--limit", type=int, default=10, help="items per task")
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--max-gen-toks", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    add_json_option(parser)
    args = parser.parse_args()
    model = resolve_model(args.model)  # converted once, outside the timed runs
    selection = parse_tasks(args.tasks)
    names = selection.lm_eval_tasks()
    items = args.limit * sum(len(langs) for langs in selection.langs.values())
    size_flags = ("--limit", str(args.limit), "--batch-size", args.batch_size, "--device", "cpu")
    gen = f"max_gen_toks={args.max_gen_toks}"
    times: dict[str, list[float]] = {"mlalign eval": [], "lm_eval": []}
    with tempfile.TemporaryDirectory() as tmp:
        ours = [str(BIN / "mlalign"), "eval", "-m", model, "-t", args.tasks, "--label-scoring", "label"]
        ours += [*size_flags, "--gen-kwargs", gen, "--output-path", f"{tmp}/ours"]
        theirs = [str(BIN / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model}", "--tasks"]
        theirs += [
            ",".join(names),
            "--include_path",
            str(tasks_dir()),
            *(f"--{f[2:].replace('-', '_')}" if f.startswith("--") else f for f in size_flags),
        ]
        theirs += ["--gen_kwargs", gen]
        theirs += ["--output_path", f"{tmp}/theirs"]
        for _ in range(args.repeats):
            times["mlalign eval"].append(timed(ours))
            times["lm_eval"].append(timed(theirs))
    best = {name: min(runs) for name, runs in times.items()}
    size = f"{', '.join(names)}: {args.limit} items each, batch {args.batch_size}, {gen}, best of {args.repeats}"
    print(f"{size}; all runs (s): { {k: [round(t, 1) for t in v] for k, v in times.items()} }")
    for name, seconds in best.items():
        print(f"  {name:13s} wall {seconds:7.1f} s   {items / seconds:6.3f} items/s")
    plain = "lm_eval --model hf --include_path"
    write_rows(
        args.json,
        [
            cost("cli_eval", "wall time (mlalign eval/lm_eval)", best["mlalign eval"], best["lm_eval"], plain, "s",
                 size),
            throughput("cli_eval", "items/s (ratio = time ours/plain)", items / best["mlalign eval"],
                       items / best["lm_eval"], plain, "items/s", size),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

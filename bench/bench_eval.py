"""Benchmark: our `mgsm_aligned` vs lm-eval's built-in `mgsm_direct`, and `mlalign eval` vs `lm_eval` start-up.

1. Same model object, same languages, same --limit, same generation budget (max_gen_toks, and a stop
   string that never occurs, so both generate the same number of tokens), measured in one process,
   alternating A/B runs (on a shared machine the fastest run is the robust figure). Task indexing is
   timed separately and excluded from the ratio. The built-in
   ``mgsm_direct_<lang>`` config downloads ``juletxara/mgsm`` from the HF hub, which is impossible
   offline: its YAML is loaded as is and only its dataset is replaced by the local MGSM TSVs
   (resolved through ``mlalign_tasks.files.data``).
2. Start-up: the same one-item run through ``mlalign eval`` and through ``lm_eval`` (subprocesses);
   the difference is what ``lm_eval`` spends indexing its built-in tasks.

Usage: python bench/bench_eval.py [--model DIR] [--langs de,en,...] [--limit 5] [--max-gen-toks 32] [--repeats 5]
       [--json PATH]
Needs MLALIGN_DATA_DIR (or the data in the cache) and runs offline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import add_json_option, cost, write_rows
from rich.console import Console
from rich.table import Table

from mlalign_tasks.pipeline.evaluate import tasks_dir
from mlalign_tasks.tasks.answer_extraction import parse_gold
from mlalign_tasks.tasks.languages import MGSM_LANGS, parse_langs
from mlalign_tasks.tasks.math_tasks import load_mgsm

NEVER = "<|mlalign-bench-never|>"
BIN = Path(sys.executable).parent


def local_mgsm_direct(lang: str, **_: object):
    """mgsm_direct's dataset schema, filled from the local MGSM TSV of `lang`."""
    import datasets

    rows = [
        {
            "question": r["question"],
            "answer": None,
            "answer_number": int(parse_gold(r["answer"])),
            "equation_solution": None,
        }
        for r in load_mgsm(lang)
    ]
    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(rows), "train": datasets.Dataset.from_list(rows[:8])}
    )


def builtin_configs(langs: list[str]) -> tuple[list[dict], float]:
    """The built-in mgsm_direct_<lang> configs with a local dataset; and the time to index the built-ins."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    start = time.perf_counter()
    manager = TaskManager()
    indexing = time.perf_counter() - start
    configs = []
    for lang in langs:
        cfg = load_yaml(manager.task_index[f"mgsm_direct_{lang}"].yaml_path, resolve_func=True)
        for key in ("dataset_path", "dataset_name", "tag"):
            cfg.pop(key, None)
        cfg |= {"custom_dataset": local_mgsm_direct, "dataset_kwargs": {"lang": lang}}
        configs.append(cfg)
    return configs, indexing


def timed_eval(lm, tasks: list, manager, limit: int, gen_kwargs: dict) -> float:
    from lm_eval import simple_evaluate

    start = time.perf_counter()
    simple_evaluate(
        model=lm, tasks=tasks, task_manager=manager, limit=limit, gen_kwargs=dict(gen_kwargs), bootstrap_iters=0
    )
    return time.perf_counter() - start


def startup(model: str, lang: str) -> tuple[float, float]:
    """Wall time of the same one-item run via `mlalign eval` and via `lm_eval`."""
    common_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    ours = [str(BIN / "mlalign"), "eval", "-m", model, "-t", f"mgsm_aligned:{lang}", "--limit", "1"]
    ours += ["--gen-kwargs", "max_gen_toks=1", "--device", "cpu"]
    theirs = [str(BIN / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={model}", "--tasks"]
    theirs += [f"mgsm_aligned_{lang}", "--include_path", str(tasks_dir()), "--limit", "1"]
    theirs += ["--gen_kwargs", "max_gen_toks=1", "--device", "cpu"]
    times = []
    for cmd in (ours, theirs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=common_env)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: build the tiny model)")
    parser.add_argument("--langs", default=",".join(MGSM_LANGS))
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--max-gen-toks", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    add_json_option(parser)
    args = parser.parse_args()
    langs = parse_langs(args.langs, MGSM_LANGS)
    console = Console()

    import logging

    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from mlalign_tasks.models.tiny_model import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny"))
        lm = HFLM(pretrained=model, device=args.device, batch_size=1)
        start = time.perf_counter()
        ours_manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
        ours_indexing = time.perf_counter() - start
        builtin, builtin_indexing = builtin_configs(langs)
        builtin_manager = TaskManager(include_defaults=False)
        gen = {"max_gen_toks": args.max_gen_toks, "until": [NEVER]}
        ours_tasks = [f"mgsm_aligned_{lang}" for lang in langs]
        timed_eval(lm, ours_tasks[:1], ours_manager, 1, gen)  # warm-up (imports, kernels)
        ours_t, builtin_t = [], []
        for _ in range(args.repeats):
            ours_t.append(timed_eval(lm, ours_tasks, ours_manager, args.limit, gen))
            builtin_t.append(timed_eval(lm, [dict(c) for c in builtin], builtin_manager, args.limit, gen))
        ours_start, lm_eval_start = startup(model, langs[0])

    table = Table("measure", "mgsm_aligned / mlalign", "mgsm_direct / lm_eval", "result", "target")
    for label, stat in (("fastest", min), ("median", statistics.median)):
        table.add_row(
            f"eval wall time, {label} of {args.repeats} (s)",
            f"{stat(ours_t):.2f}",
            f"{stat(builtin_t):.2f}",
            f"ratio {stat(ours_t) / stat(builtin_t):.3f}",
            "<= 1.05",
        )
    table.add_row("task indexing (s, excluded above)", f"{ours_indexing:.2f}", f"{builtin_indexing:.2f}", "", "")
    table.add_row(
        "one-item CLI run incl. start-up (s)",
        f"{ours_start:.2f}",
        f"{lm_eval_start:.2f}",
        f"{lm_eval_start - ours_start:.1f} s faster",
        ">= 4 s faster",
    )
    console.print(
        f"{len(langs)} languages x {args.limit} items, {args.max_gen_toks} generated tokens each, "
        f"device {args.device}; all runs: ours {[round(t, 2) for t in ours_t]}, built-in {[round(t, 2) for t in builtin_t]}"
    )
    console.print(table)
    size = f"{len(langs)} langs x {args.limit} items x {args.max_gen_toks} tokens"
    write_rows(
        args.json,
        [
            cost("eval", f"mgsm wall time, fastest of {args.repeats} (ours/built-in, <=1.05 target)", min(ours_t),
                 min(builtin_t), "lm-eval mgsm_direct", "s",
                 f"{size}; median ratio {statistics.median(ours_t) / statistics.median(builtin_t):.3f}"),
            cost("eval", "task indexing (ours/built-in)", ours_indexing, builtin_indexing, "lm-eval TaskManager()",
                 "s", "excluded from the wall time"),
            cost("eval", "one-item CLI run incl. start-up (mlalign eval/lm_eval)", ours_start, lm_eval_start,
                 "lm_eval CLI", "s", f"{lm_eval_start - ours_start:.1f} s faster (target >= 4 s)"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

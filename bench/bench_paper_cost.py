"""Cost per item of each label scoring of the paper tasks, against the papers' one forward per item.

Three real lm-eval runs per task, one per ``mlalign eval --label-scoring`` (mlalign_tasks/tasks/label_scoring.py):

- ``label``: lm-eval scores a multiple-choice item with one log-likelihood request per label word (prompt +
  label), so it runs the prompt once per label unless its logits cache applies;
- ``first-token``: one-token choices, which lm-eval's logits cache serves from one forward;
- ``paper``: the token-set sums of ``TokenSetLM``, one forward of each prompt for all its labels;

and, as the baseline, the papers' scripts' loop: one forward of each prompt, batch size 1. A forward hook on the
model counts the forward calls, the sequences (batch rows) and the tokens that go through it (padding included).

    python bench/bench_paper_cost.py                      # tiny model, 20 items of each task in German
    python bench/bench_paper_cost.py --model Qwen/Qwen1.5-1.8B --device cuda --limit 100 --lang sw
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _rows import Row, add_json_option, cost, write_rows

from mlalign_tasks.models.gguf_models import resolve_model
from mlalign_tasks.pipeline.evaluate import tasks_dir
from mlalign_tasks.tasks import paper_prompts
from mlalign_tasks.tasks.label_scoring import Scoring, apply_scoring
from mlalign_tasks.tasks.languages import PAPER_LANGS, check_lang, task_name

SCORINGS = (Scoring.label, Scoring.first_token, Scoring.paper)


class ForwardCounter:
    """Counts forward calls, sequences (batch rows) and input tokens (padding included) of a model."""

    def __init__(self, model) -> None:
        self.calls = self.sequences = self.tokens = 0
        self._handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        ids = args[0] if args else kwargs["input_ids"]
        self.calls += 1
        self.sequences += ids.shape[0]
        self.tokens += ids.numel()

    def reset(self) -> None:
        self.calls = self.sequences = self.tokens = 0

    def remove(self) -> None:
        self._handle.remove()


def _timed(fn, counter: ForwardCounter, repeats: int) -> dict[str, float]:
    """Best wall time of `repeats` runs of `fn`, and the forward calls, sequences and tokens of one run."""
    best = float("inf")
    for _ in range(repeats):
        counter.reset()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "calls": counter.calls, "sequences": counter.sequences, "tokens": counter.tokens}


def measure(model_path: str, lang: str, limit: int, device: str, batch_size: int, repeats: int) -> list[dict]:
    """Per task and scoring: forwards, sequences, tokens and milliseconds per item; the baseline's too."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mlalign_tasks.models.token_set_lm import TokenSetLM

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).to(device).eval()
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    counter = ForwardCounter(model)
    rows = []
    for task, family in paper_prompts.PAPER_TASKS.items():
        name = task_name(family, lang)
        items = paper_prompts.load_items(task, lang, limit=limit)
        encoded = [tokenizer(item["prompt"], return_tensors="pt").input_ids.to(device) for item in items]

        def run_paper_script(encoded=encoded) -> None:
            with torch.no_grad():
                for ids in encoded:  # the papers' scripts: one forward of the prompt per item, batch size 1
                    model(ids)

        run_paper_script()  # warm-up
        row = {"task": name, "items": len(items), "baseline": _timed(run_paper_script, counter, repeats)}
        for scoring in SCORINGS:
            loaded = manager.load([name])["tasks"]  # dataset built outside the timed region
            token_sets = apply_scoring(loaded, tokenizer, scoring, seed=0)
            kwargs = {"pretrained": model, "tokenizer": tokenizer, "batch_size": batch_size, "device": device}
            lm = TokenSetLM(**kwargs, token_sets=token_sets) if token_sets else HFLM(**kwargs)

            def run(lm=lm, task=loaded[name]) -> None:
                simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=limit, log_samples=False)

            row[scoring.value] = _timed(run, counter, repeats)
        rows.append(row)
    counter.remove()
    return rows


def per_item(row: dict, side: str, key: str) -> float:
    return row[side][key] / row["items"]


def figures(row: dict, setting: str) -> list[Row]:
    """Tokens and time per item of each scoring, against the papers' one forward per item."""
    baseline = "papers' scripts: one forward/item"
    out = []
    for scoring in SCORINGS:
        side = scoring.value
        shape = f"{per_item(row, side, 'calls'):.2f} forwards, {per_item(row, side, 'sequences'):.2f} seq/item"
        out += [
            cost("paper_cost", f"{row['task']} {side} tokens/item", per_item(row, side, "tokens"),
                 per_item(row, "baseline", "tokens"), baseline, "tokens", f"--label-scoring {side}: {shape}"),
            cost("paper_cost", f"{row['task']} {side} time/item", 1000 * per_item(row, side, "seconds"),
                 1000 * per_item(row, "baseline", "seconds"), baseline, "ms", setting),
        ]  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="HF model id, path, .gguf file or gemma-3-270m (default: the tiny model)")
    parser.add_argument("--lang", default="de", help="paper language to measure (default de)")
    parser.add_argument("--limit", type=int, default=20, help="items per task")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1, help="lm-eval batch size (the papers use 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side; the best is reported")
    add_json_option(parser)
    args = parser.parse_args()
    check_lang(args.lang, PAPER_LANGS, what="--lang")

    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model and resolve_model(args.model)
        if model_path is None:
            from mlalign_tasks.models.tiny_model import build_tiny_model

            model_path = str(build_tiny_model(Path(tmp) / "tiny"))
        rows = measure(model_path, args.lang, args.limit, args.device, args.batch_size, args.repeats)

    table = Table(
        "task", "scoring", "forwards/item", "seq/item", "tokens/item", "ms/item", "tokens / papers'", "time / papers'",
        title=f"cost per item, {args.lang}, batch size {args.batch_size}, {args.limit} items, best of {args.repeats}",
    )  # fmt: skip
    for row in rows:
        for side in ("baseline", *(s.value for s in SCORINGS)):
            table.add_row(
                row["task"], "papers' scripts" if side == "baseline" else side,
                f"{per_item(row, side, 'calls'):.2f}", f"{per_item(row, side, 'sequences'):.2f}",
                f"{per_item(row, side, 'tokens'):.0f}", f"{1000 * per_item(row, side, 'seconds'):.1f}",
                f"{row[side]['tokens'] / row['baseline']['tokens']:.2f}",
                f"{row[side]['seconds'] / row['baseline']['seconds']:.2f}",
            )  # fmt: skip
    Console(width=200).print(table)
    setting = f"batch size {args.batch_size}, best of {args.repeats}"
    write_rows(args.json, [figure for row in rows for figure in figures(row, setting)])


if __name__ == "__main__":
    main()

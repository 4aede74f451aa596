"""Cost per item of the paper's tasks in lm-eval vs the paper's one-forward constrained decoding.

lm-eval scores a multiple-choice item with one log-likelihood request per label word (prompt +
label), so it runs the prompt once per label unless its logits cache applies (only when every label
is a single token after the prompt). The paper's scripts run one forward of the prompt and compare
the probabilities of the labels' first tokens; ``mlalign eval --label-scoring first-token`` does the
same inside lm-eval (one-token choices, which its logits cache serves from one forward), measured
here as a third side. This script counts, in a real lm-eval run, the forward passes and the tokens
that go through the model (a forward hook on the model), and compares them with one forward of each
prompt, timed on the same model.

    python bench/bench_paper_cost.py                      # tiny model, 20 items of each task in German
    python bench/bench_paper_cost.py --model Qwen/Qwen1.5-1.8B --device cuda --limit 100 --lang sw
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _rows import Row, add_json_option, cost, write_rows

from mlalign_tasks import label_scoring, paper_prompts
from mlalign_tasks.evaluate import tasks_dir
from mlalign_tasks.languages import PAPER_LANGS, check_lang, task_name


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


def _timed(fn, counter: ForwardCounter, repeats: int) -> tuple[float, int, int, int]:
    """Best wall time of `repeats` runs of `fn`, and the forward calls, sequences and tokens of one run."""
    best = float("inf")
    for _ in range(repeats):
        counter.reset()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, counter.calls, counter.sequences, counter.tokens


def measure(model_path: str, lang: str, limit: int, device: str, batch_size: int, repeats: int) -> list[dict]:
    """Per task: forwards, tokens and seconds per item for lm-eval and for the paper's one forward."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).to(device).eval()
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    counter = ForwardCounter(model)
    rows = []
    for task, family in paper_prompts.PAPER_TASKS.items():
        name = task_name(family, lang)
        lm_task = manager.load([name])["tasks"][name]  # dataset built outside the timed region
        first_task = manager.load([name])["tasks"][name]
        label_scoring.apply_first_token({name: first_task}, tokenizer)  # --label-scoring first-token
        items = paper_prompts.load_items(task, lang, limit=limit)
        encoded = [tokenizer(item["prompt"], return_tensors="pt").input_ids.to(device) for item in items]

        def run_lm_eval(lm_task=lm_task) -> None:
            simple_evaluate(model=lm, tasks=[lm_task], task_manager=manager, limit=limit, log_samples=False)

        def run_first_token(first_task=first_task) -> None:
            simple_evaluate(model=lm, tasks=[first_task], task_manager=manager, limit=limit, log_samples=False)

        def run_paper(encoded=encoded) -> None:
            with torch.no_grad():
                for ids in encoded:  # the paper: one forward of the prompt per item, batch size 1
                    model(ids)

        run_paper()  # warm-up
        lm_seconds, lm_calls, lm_seqs, lm_tokens = _timed(run_lm_eval, counter, repeats)
        first_seconds, first_calls, first_seqs, first_tokens = _timed(run_first_token, counter, repeats)
        paper_seconds, paper_calls, paper_seqs, paper_tokens = _timed(run_paper, counter, repeats)
        label_tokens = [
            len(tokenizer(items[0]["prompt"] + w).input_ids) - len(encoded[0][0])
            for w in paper_prompts.english_labels(task)
        ]
        n = len(items)
        rows.append(
            {
                "task": name,
                "items": n,
                "choices": len(label_tokens),
                "label_tokens_after_prompt": label_tokens,
                "lm_eval_forward_calls_per_item": lm_calls / n,
                "lm_eval_sequences_per_item": lm_seqs / n,
                "lm_eval_tokens_per_item": lm_tokens / n,
                "lm_eval_ms_per_item": 1000 * lm_seconds / n,
                "first_token_sequences_per_item": first_seqs / n,
                "first_token_tokens_per_item": first_tokens / n,
                "first_token_ms_per_item": 1000 * first_seconds / n,
                "paper_forward_calls_per_item": paper_calls / n,
                "paper_sequences_per_item": paper_seqs / n,
                "paper_tokens_per_item": paper_tokens / n,
                "paper_ms_per_item": 1000 * paper_seconds / n,
                "sequence_ratio": lm_seqs / paper_seqs,
                "token_ratio": lm_tokens / paper_tokens,
                "time_ratio": lm_seconds / paper_seconds,
                "first_token_token_ratio": first_tokens / paper_tokens,
                "first_token_time_ratio": first_seconds / paper_seconds,
            }
        )
    counter.remove()
    return rows


def figures(r: dict, setting: str) -> list[Row]:
    """The bench rows of one task: tokens and time per item, lm-eval (ours) vs the paper's one forward."""
    paper = "paper: one forward/item"
    shape = (
        f"{r['items']} items, labels {r['label_tokens_after_prompt']} tokens; lm-eval "
        f"{r['lm_eval_forward_calls_per_item']:.2f} calls, {r['lm_eval_sequences_per_item']:.2f} seq/item"
    )
    return [
        cost("paper_cost", f"{r['task']} tokens/item (lm-eval/paper)", r["lm_eval_tokens_per_item"],
             r["paper_tokens_per_item"], paper, "tokens", shape),
        cost("paper_cost", f"{r['task']} time/item (lm-eval/paper)", r["lm_eval_ms_per_item"],
             r["paper_ms_per_item"], paper, "ms", setting),
        cost("paper_cost", f"{r['task']} first-token tokens/item (lm-eval/paper)", r["first_token_tokens_per_item"],
             r["paper_tokens_per_item"], paper, "tokens",
             f"--label-scoring first-token: {r['first_token_sequences_per_item']:.2f} seq/item"),
        cost("paper_cost", f"{r['task']} first-token time/item (lm-eval/paper)", r["first_token_ms_per_item"],
             r["paper_ms_per_item"], paper, "ms", setting),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="HF model id or path (default: build the tiny model)")
    parser.add_argument("--lang", default="de", help="paper language to measure (default de)")
    parser.add_argument("--limit", type=int, default=20, help="items per task")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1, help="lm-eval batch size (the paper uses 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side; the best is reported")
    add_json_option(parser)
    args = parser.parse_args()
    check_lang(args.lang, PAPER_LANGS, what="--lang")

    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model
        if model_path is None:
            from mlalign_tasks.tiny_model import build_tiny_model

            model_path = str(build_tiny_model(Path(tmp) / "tiny"))
        rows = measure(model_path, args.lang, args.limit, args.device, args.batch_size, args.repeats)

    table = Table(
        "task", "label tokens", "lm-eval calls/item", "lm-eval seq/item", "paper seq/item", "lm-eval tok/item",
        "paper tok/item", "tok ratio", "lm-eval ms/item", "paper ms/item", "time ratio", "first-token tok ratio",
        "first-token time ratio",
        title=f"cost per item, {args.lang}, batch size {args.batch_size}, {args.limit} items, best of {args.repeats}",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["task"], str(r["label_tokens_after_prompt"]),
            f"{r['lm_eval_forward_calls_per_item']:.2f}", f"{r['lm_eval_sequences_per_item']:.2f}",
            f"{r['paper_sequences_per_item']:.2f}",
            f"{r['lm_eval_tokens_per_item']:.0f}", f"{r['paper_tokens_per_item']:.0f}", f"{r['token_ratio']:.2f}",
            f"{r['lm_eval_ms_per_item']:.1f}", f"{r['paper_ms_per_item']:.1f}", f"{r['time_ratio']:.2f}",
            f"{r['first_token_token_ratio']:.2f}", f"{r['first_token_time_ratio']:.2f}",
        )  # fmt: skip
    Console(width=200).print(table)
    setting = f"batch size {args.batch_size}, best of {args.repeats}"
    write_rows(args.json, [figure for r in rows for figure in figures(r, setting)])


if __name__ == "__main__":
    main()

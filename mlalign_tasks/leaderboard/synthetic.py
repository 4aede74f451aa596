"""Write result and sample files in lm-eval 0.4.13's exact on-disk layout from chosen per-item outcomes.

For the leaderboard's tests and benchmark, which need many models and known numbers; the layout is the
one `EvaluationTracker.save_results_aggregated` / `save_results_samples` write (a test compares it with
a real lm-eval run).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LM_EVAL_VERSION = "0.4.13"
MC_CHOICES = ("entailment", "neutral", "contradiction")


@dataclass(frozen=True)
class Item:
    """One scored item: the answer given (choice index, or the extracted text) and the gold answer."""

    answer: int | str
    gold: int | str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stderr(scores: list[float]) -> float | str:
    n = len(scores)
    if n < 2:
        return "N/A"
    mean = sum(scores) / n
    return math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1) / n)


def sample_record(task: str, doc_id: int, item: Item, generative: bool, filt: str, prompt_chars: int) -> dict[str, Any]:
    """One line of `samples_<task>_<date>.jsonl` as lm-eval writes it (key order included)."""
    prompt = f"[{task} #{doc_id}] " + "lorem ipsum dolor sit amet " * (prompt_chars // 27)
    doc = {"question": prompt[:200], "answer": str(item.gold)}
    score = float(item.answer == item.gold)
    if generative:
        arguments = {"gen_args_0": {"arg_0": prompt, "arg_1": {"until": ["\n\n"], "do_sample": False}}}
        resps, filtered = [[f"The answer is {item.answer}"]], [str(item.answer)]
        metric = "exact_match"
    else:
        arguments = {f"gen_args_{i}": {"arg_0": prompt, "arg_1": c} for i, c in enumerate(MC_CHOICES)}
        logp = [[str(-10.0 + (2.0 if i == item.answer else -0.1 * i)), "False"] for i in range(len(MC_CHOICES))]
        resps, filtered = [[pair] for pair in logp], logp
        metric = "acc"
    record = {
        "doc_id": doc_id,
        "doc": doc,
        "target": str(item.gold),
        "arguments": arguments,
        "resps": resps,
        "filtered_resps": filtered,
        "filter": filt,
        "metrics": [metric],
        "doc_hash": _sha(json.dumps(doc)),
        "prompt_hash": _sha(prompt),
        "target_hash": _sha(str(item.gold)),
        metric: score,
    }
    return record


def write_run(
    out: Path,
    model_args: str | dict[str, str],
    tasks: dict[str, list[Item]],
    generative: set[str] = frozenset(),
    gen_filter: str = "last_number",
    date_id: str = "2026-01-01T00-00-00.000000",
    with_samples: bool = True,
    lm_eval_version: str = LM_EVAL_VERSION,
    prompt_chars: int = 400,
) -> Path:
    """Write `<out>/<model_name_sanitized>/results_<date>.json` (+ samples) for the given items per task."""
    args = model_args if isinstance(model_args, dict) else dict(kv.split("=", 1) for kv in model_args.split(","))
    model_name = args.get("peft") or args["pretrained"]
    sanitized = model_name.replace("/", "__").replace(":", "__")
    folder = out / sanitized
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    for task, items in tasks.items():
        gen = task in generative
        metric, filt = ("exact_match", gen_filter) if gen else ("acc", "none")
        scores = [float(i.answer == i.gold) for i in items]
        results[task] = {
            "name": task,
            "alias": task,
            "sample_len": len(items),
            f"{metric},{filt}": sum(scores) / len(scores),
            f"{metric}_stderr,{filt}": _stderr(scores),
        }
        configs[task] = {"task": task, "output_type": "generate_until" if gen else "multiple_choice"}
        if with_samples:
            lines = (
                json.dumps(sample_record(task, i, it, gen, filt, prompt_chars), ensure_ascii=False)
                for i, it in enumerate(items)
            )
            (folder / f"samples_{task}_{date_id}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {
        "results": results,
        "group_subtasks": {},
        "configs": configs,
        "versions": dict.fromkeys(tasks, 1.0),
        "n-shot": dict.fromkeys(tasks, 0),
        "higher_is_better": {t: {"exact_match" if t in generative else "acc": True} for t in tasks},
        "n-samples": {t: {"original": len(i), "effective": len(i)} for t, i in tasks.items()},
        "config": {"model": "hf", "model_args": model_args, "batch_size": 1, "limit": None},
        "git_hash": None,
        "date": 1767225600.0,
        "transformers_version": "5.23.0",
        "lm_eval_version": lm_eval_version,
        "task_hashes": {},
        "model_source": "hf",
        "model_name": model_name,
        "model_name_sanitized": sanitized,
    }
    path = folder / f"results_{date_id}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path

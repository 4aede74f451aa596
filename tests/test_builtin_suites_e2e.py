"""lm-eval's own built-in task configs (xnli_de/en, mgsm_direct_de/en: their prompts, filters, metrics and the
xnli group aggregate) run for real by lm-eval 0.4.13 on the tiny model, their hub datasets replaced by the
mirror's parallel SNLI and MGSM items; lm-eval writes the results and samples, the board reads them."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import pytest
import yaml

from mlalign_tasks.leaderboard import make_leaderboard
from mlalign_tasks.pipeline.evaluate import parse_tasks

LABELS = ("entailment", "neutral", "contradiction")  # XNLI's label ids 0, 1, 2
ITEMS = 3


@functools.cache
def builtin_index() -> dict:
    from lm_eval.tasks import TaskManager

    return TaskManager().task_index


def builtin_yaml(task: str) -> Path:
    return Path(builtin_index()[task].yaml_path)


def write_local_tasks(root: Path, shared: Path) -> Path:
    """YAMLs that include lm-eval's built-in ones and only point them at local JSON files of the same fields."""
    tasks = root / "tasks"
    tasks.mkdir(parents=True)
    english = json.loads((shared / "paper_tasks" / "snli" / "snli_en600_test.json").read_text())
    for lang in ("de", "en"):
        items = json.loads((shared / "paper_tasks" / "snli" / f"snli_{lang}600_test.json").read_text())[:ITEMS]
        rows = [{"premise": x["premise"], "hypothesis": x["hypothesis"], "label": LABELS.index(english[i]["answer"])}
                for i, x in enumerate(items)]  # fmt: skip
        data = tasks / f"xnli_{lang}.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        local = {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"validation": str(data)}},
        }
        config = {"include": str(builtin_yaml(f"xnli_{lang}")), "task": f"xnli_{lang}", **local, "training_split": None}
        (tasks / f"xnli_{lang}.yaml").write_text(yaml.safe_dump(config))
        mgsm = (shared / "mgsm" / f"mgsm_{lang}.tsv").read_text(encoding="utf-8").splitlines()[:ITEMS]
        rows = [{"question": q, "answer": None, "answer_number": int(a), "equation_solution": None}
                for q, a in (line.split("\t") for line in mgsm)]  # fmt: skip
        data = tasks / f"mgsm_{lang}.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        local = {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(data)}}}
        config = {"include": str(builtin_yaml(f"mgsm_direct_{lang}")), "task": f"mgsm_direct_{lang}", **local}
        config["training_split"] = None
        (tasks / f"mgsm_direct_{lang}.yaml").write_text(yaml.safe_dump(config))
    group = {
        "group": "xnli",
        "task": ["xnli_de", "xnli_en"],
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
    }
    (tasks / "_xnli.yaml").write_text(yaml.safe_dump(group))
    return tasks


@pytest.mark.slow
def test_builtin_suites_run_by_lm_eval_onto_the_board(tiny_model_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(write_local_tasks(tmp_path, shared_data)), include_defaults=False)
    out = tmp_path / "runs"
    tracker = EvaluationTracker(output_path=str(out))
    results = simple_evaluate(
        model="hf", model_args=f"pretrained={tiny_model_dir}", tasks=["xnli", "mgsm_direct_de", "mgsm_direct_en"],
        task_manager=manager, device="cpu", log_samples=True, evaluation_tracker=tracker,
        gen_kwargs={"max_gen_toks": 4},
    )  # fmt: skip
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    board = make_leaderboard([out], tmp_path / "board")
    assert board.families == ["mgsm_direct", "xnli"] and board.languages == ["en", "de"]
    assert board.metrics == {"xnli": "acc,none", "mgsm_direct": "exact_match,remove_whitespace"}
    written = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    with (tmp_path / "board" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["task"] for r in rows} == set(written)  # every task and the xnli group lm-eval reported
    for r in rows:  # each number traced back to the file lm-eval wrote
        assert float(r["value"]) == written[r["task"]][r["metric"]]
        assert r["level"] == ("group" if r["task"] == "xnli" else "language")
    assert {r["metric"] for r in rows if r["family"] == "mgsm_direct"} == {
        "exact_match,remove_whitespace", "exact_match,flexible-extract"
    }  # fmt: skip
    assert all(int(r["n"]) == ITEMS for r in rows if r["level"] == "language")
    assert board.settings["xnli_de"][board.models[0].name]["shots"] == "0"


def test_eval_accepts_builtin_suite_names() -> None:
    sel = parse_tasks("xnli,belebele:de,sw,mgsm_aligned:de,global_mmlu_fr,mgsm_direct_en")
    assert sel.builtin == ["xnli", "belebele_deu_Latn", "belebele_swh_Latn", "global_mmlu_fr", "mgsm_direct_en"]
    assert sel.langs == {"mgsm_aligned": ["de"]}
    assert parse_tasks("xnli:de,en").lm_eval_tasks() == ["xnli_de", "xnli_en"]
    from mlalign_tasks.errors import MlalignError

    with pytest.raises(MlalignError, match="unknown xnli language 'xx'"):
        parse_tasks("xnli:xx")

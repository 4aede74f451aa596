"""End to end: real `mlalign eval` (lm-eval 0.4.13) runs of the tiny model and of the tiny model plus a real
PEFT LoRA adapter, then a board from their output directory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mlalign_tasks.leaderboard import make_leaderboard
from mlalign_tasks.leaderboard.items import Items
from mlalign_tasks.leaderboard.samples import _answer, _parse_fast, load_samples
from mlalign_tasks.leaderboard.synthetic import Item, sample_record

TASKS = "snli_aligned:en,de,mgsm_aligned:en,de"


def make_adapter(model_dir: Path, out: Path) -> Path:
    """A real LoRA adapter with random (non-zero) B matrices, so that it changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    meta = {
        "base_model": str(model_dir),
        "languages": ["de"],
        "examples_per_language": 8,
        "data_hash": "0" * 64,
        "hyperparameters": {"r": 4},
        "versions": {},
        "seed": 0,
        "final_loss": 0.0,
        "mlalign_version": "0.1.0",
    }
    (out / "mlalign_training.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mlalign_tasks.pipeline import evaluate

    root = tmp_path_factory.mktemp("e2e")
    adapter = make_adapter(tiny_model_dir, root / "adapters" / "qalign")
    for peft in (None, str(adapter)):
        evaluate.run(
            evaluate.EvalRequest(
                model=str(tiny_model_dir),
                adapter=peft,
                tasks=evaluate.parse_tasks(TASKS),
                limit=3,
                gen_kwargs={"max_gen_toks": 8},
                output_path=root / "runs",
                device="cpu",
            )
        )
    return root / "runs", adapter


@pytest.mark.slow
def test_board_from_real_lm_eval_output(runs: tuple[Path, Path], tmp_path: Path) -> None:
    results_dir, adapter = runs
    board = make_leaderboard([results_dir], tmp_path / "board")
    assert [m.adapter for m in board.models].count(str(adapter)) == 1 and len(board.models) == 2
    aligned = next(m for m in board.models if m.adapter)
    assert aligned.seen == ("de",) and aligned.base == next(m for m in board.models if not m.adapter).key
    assert (tmp_path / "board" / "README.md").read_text().count("tiny random-weight test model") == 1
    assert board.metrics == {"mgsm_aligned": "exact_match,last_number", "snli_aligned": "acc,none"}
    assert len(board.comparisons) == 4 and all(
        c["n_paired"] == 3 and c["p_value"] is not None for c in board.comparisons
    )
    assert {(c["model"], c["family"], c["language"]) for c in board.consistency} == {
        (m.name, f, "de") for m in board.models for f in ("mgsm_aligned", "snli_aligned")
    }
    inputs = {}
    for path in results_dir.rglob("results_*.json"):
        data = json.loads(path.read_text())
        inputs[data["config"]["model_args"]] = data["results"]
    names = {m.name: f"pretrained={m.pretrained}" + (f",peft={m.adapter}" if m.adapter else "") for m in board.models}
    with (tmp_path / "board" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (2 * 1 + 2 * 1)  # mgsm: exact_match; snli: acc (paper scoring has no acc_norm)
    for r in rows:
        assert float(r["value"]) == inputs[names[r["model"]]][r["task"]][r["metric"]]


@pytest.mark.slow
def test_real_sample_logs_take_the_fast_path_and_match_synthetic_layout(runs: tuple[Path, Path]) -> None:
    results_dir, _ = runs
    for path in results_dir.rglob("samples_*.jsonl"):
        metric = "exact_match,last_number" if "mgsm" in path.name else "acc,none"
        name, _, filt = metric.partition(",")
        fast = _parse_fast(path.read_bytes(), name, filt)
        assert fast is not None, f"{path} fell back to the JSON parser"
        records = [r for line in path.read_text().splitlines() if (r := json.loads(line))["filter"] == filt]
        want = Items.of(
            [r["doc_id"] for r in records], [_answer(r["filtered_resps"]) for r in records], [r[name] for r in records]
        )
        assert all(np.array_equal(x, y) for x, y in zip(fast, want, strict=True))
        assert all(np.array_equal(x, y) for x, y in zip(load_samples(path, metric), fast, strict=True))
        generative = "mgsm" in path.name
        synthetic = sample_record(
            "t", 0, Item("1" if generative else 0, "1" if generative else 0), generative, filt, 10
        )
        assert list(records[0])[: len(synthetic) - 1] == list(synthetic)[:-1]  # same keys in the same order

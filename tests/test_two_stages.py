"""QAlign's two stages on the tiny model: real TRL runs, stage II really continuing stage I's weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlalign_trainer import response_data, sft
from mlalign_trainer.merge import merge_adapter
from mlalign_trainer.prompts import ALPACA_NO_INPUT
from safetensors.torch import load_file

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data
from mlalign_tasks.files.artefacts import METADATA_FILE

SMOKE = ["--config", "qalign-cpu-smoke", "--max_length", "384", "--examples_per_language", "8", "--save_strategy", "no"]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    (weights,) = [p for p in path.glob("*.safetensors") if p.name != "training_args.bin"]
    return load_file(weights)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train(tiny_model_dir: Path, out: Path, stage: str, *extra: str) -> dict:
    argv = [*SMOKE, "--stage", stage, "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), *extra]
    assert sft.main(argv) == 0
    return json.loads((out / METADATA_FILE).read_text())


@pytest.fixture(scope="module")
def stage_one(tiny_model_dir, tmp_path_factory) -> Path:
    """Stage I of the smoke recipe: QAlign's prompt on German and French GSM8K questions, a LoRA adapter."""
    out = tmp_path_factory.mktemp("qalign") / "question"
    _train(tiny_model_dir, out, "question", "--max_steps", "3", "--learning_rate", "1e-2")
    return out


def test_response_data_is_english_questions_and_answers_in_qaligns_template(shared_data):
    build = response_data.build_response_dataset("gsm8k", 5, seed=0)
    answers = {}
    for line in (shared_data / "gsm8k/train_en.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers[ALPACA_NO_INPUT.format(instruction=row["question"])] = row["answer"]
    assert len(build.dataset) == 5 and build.languages == ["en"]
    for row in build.dataset:
        assert answers[row["prompt"]] == row["completion"] and "####" in row["completion"]
    assert build.data_hash == response_data.build_response_dataset("gsm8k", 5, seed=0).data_hash
    with pytest.raises(MlalignError, match="stage II writes question-answer examples in QAlign's Alpaca template"):
        response_data.build_response_dataset("gsm8k", 5, fmt="plain")


def test_gsm8kinstruct_is_qaligns_ten_languages_pinned_by_blob_id_and_offline_names_its_file():
    for lang in response_data.GSM8KINSTRUCT_LANGS:
        entry = data.lookup(f"gsm8k/train_{lang}.jsonl")
        assert entry.path == f"data/gsm8kinstruct/{lang}/train.txt" and entry.commit.startswith("a65ee63")
        assert entry.sha256 or len(entry.git_blob) == 40
    with pytest.raises(DataError, match=r"data file gsm8k/train_sw.jsonl not found .*offline mode is on"):
        response_data.build_response_dataset("gsm8kinstruct", 5)


def test_metamathqa_offline_is_one_clear_error():
    with pytest.raises(
        DataError, match=r"cannot load the hub dataset meta-math/MetaMathQA \(.*--response_source gsm8k"
    ):
        response_data.build_response_dataset("metamathqa", 5)


@pytest.mark.slow
def test_stage_two_continues_the_stage_one_adapter(tiny_model_dir, stage_one, tmp_path):
    first = _tensors(stage_one)
    assert max(v.abs().max().item() for k, v in first.items() if "lora_B" in k) > 0  # stage I moved off the init
    # With a learning rate of 0 nothing moves: what stage II writes is exactly what it started from, stage I's adapter
    # (a fresh adapter would have lora_B = 0 and new random lora_A).
    _train(tiny_model_dir, tmp_path / "still", "response", "--init_from", str(stage_one), "--max_steps", "1",
           "--learning_rate", "0", "--lora_r", "4")  # fmt: skip
    assert _equal(_tensors(tmp_path / "still"), first)
    assert json.loads((tmp_path / "still" / "adapter_config.json").read_text())["r"] == 16  # the adapter's, not 4
    meta = _train(tiny_model_dir, tmp_path / "moved", "response", "--init_from", str(stage_one), "--max_steps", "2",
                  "--learning_rate", "1e-2")  # fmt: skip
    second = _tensors(tmp_path / "moved")
    assert first.keys() == second.keys() and not _equal(first, second)
    assert max((second[k] - first[k]).abs().max().item() for k in first) > 1e-4
    assert meta["stage"] == "response" and meta["languages"] == ["en"] and meta["data_source"]["source"] == "gsm8k"
    assert meta["init_from"]["path"] == str(stage_one) and meta["init_from"]["kind"] == "adapter"
    assert [s["stage"] for s in meta["stages"]] == ["question", "response"]
    assert meta["stages"][0]["languages"] == ["de", "fr"] and meta["stages"][0]["data_source"]["format"] == "qalign"
    assert meta["seen_languages"] == ["de", "fr"]  # stage II's English adds no seen language
    assert meta["base_model"] == str(tiny_model_dir) == meta["stages"][0]["base_model"]


@pytest.mark.slow
def test_stage_two_from_a_merge_or_a_full_fine_tune(tiny_model_dir, stage_one, tmp_path):
    merged = merge_adapter(stage_one, tmp_path / "merged")
    meta = _train(tiny_model_dir, tmp_path / "on-merge", "response", "--init_from", str(merged), "--max_steps", "1")
    assert meta["init_from"]["kind"] == "model" and meta["base_model"] == str(tiny_model_dir)
    assert [s["stage"] for s in meta["stages"]] == ["question", "response"]
    assert json.loads((tmp_path / "on-merge" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        merged
    )  # a new adapter on the merged model
    # QAlign's own protocol fine-tunes the whole model in both stages (recipe `qalign`, on the CPU here).
    full = ["--config", "qalign", "--use_cpu", "true", "--model_name_or_path", str(tiny_model_dir), "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--effective_batch_size", "2", "--save_strategy", "no",
            "--warmup_steps", "0"]  # fmt: skip
    first = tmp_path / "full-question"
    assert sft.main([*full, "--stage", "question", "--languages", "de", "--examples_per_language", "4",
                     "--output_dir", str(first), "--learning_rate", "1e-2"]) == 0  # fmt: skip
    base = _tensors(tiny_model_dir)
    assert not _equal(_tensors(first), base)
    second = tmp_path / "full-response"
    assert sft.main([*full, "--stage", "response", "--response_source", "gsm8k", "--examples_per_language", "4",
                     "--init_from", str(first), "--output_dir", str(second), "--learning_rate", "0"]) == 0  # fmt: skip
    assert _equal(_tensors(second), _tensors(first))  # stage II started from stage I's weights, not the base's
    meta = json.loads((second / METADATA_FILE).read_text())
    assert meta["init_from"]["kind"] == "model" and meta["hyperparameters"]["use_peft"] is False
    assert [s["stage"] for s in meta["stages"]] == ["question", "response"] and meta["seen_languages"] == ["de"]


@pytest.mark.slow
def test_stage_two_merges_stage_one_and_trains_a_new_adapter_on_it(tiny_model_dir, stage_one, tmp_path):
    out = tmp_path / "merge-new"
    args = ["--init_from", str(stage_one), "--merge_init_from", "true", "--max_steps", "2", "--learning_rate", "0",
            "--lora_r", "4", "--lora_target_modules", "q_proj", "k_proj", "--save_strategy", "steps",
            "--save_steps", "1"]  # fmt: skip
    meta = _train(tiny_model_dir, out, "response", *args)
    merged = out / "init-merged"
    assert _equal(_tensors(merged), _tensors(merge_adapter(stage_one, tmp_path / "by-hand")))  # stage I, merged
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(merged.resolve())  # the new adapter applies to the merge
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["k_proj", "q_proj"]  # the flags', not stage I's
    new = _tensors(out)
    assert new and all(not v.any() for k, v in new.items() if "lora_B" in k)  # fresh (lr 0): the merge unchanged
    assert meta["init_from"]["path"] == str(stage_one) and meta["init_from"]["kind"] == "adapter"
    assert meta["hyperparameters"]["merge_init_from"] is True and meta["base_model"] == str(tiny_model_dir)
    assert [s["stage"] for s in meta["stages"]] == ["question", "response"] and meta["seen_languages"] == ["de", "fr"]
    # An interrupted run resumes from its checkpoint on the merge it wrote, which it does not write again.
    written = (merged / "model.safetensors").stat().st_mtime_ns
    for name in (METADATA_FILE, "adapter_config.json", "adapter_model.safetensors"):
        (out / name).unlink()
    (out / "checkpoint-2").rename(out / "checkpoint-2.partial")  # as if killed before it finished
    _train(tiny_model_dir, out, "response", *args)
    assert (merged / "model.safetensors").stat().st_mtime_ns == written and _equal(_tensors(out), new)
    with pytest.raises(MlalignError, match="is a full model already, with nothing to merge; drop --merge_init_from"):
        _train(tiny_model_dir, tmp_path / "twice", "response", "--init_from", str(merged), "--merge_init_from", "true")
    with pytest.raises(MlalignError, match="--merge_init_from merges the --init_from adapter: give --init_from"):
        sft.parse_args(["--stage", "response", "--merge_init_from", "true"])
    assert not (tmp_path / "twice").exists()


def test_bad_stage_inputs(tiny_model_dir, stage_one, tmp_path):
    base = ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(MlalignError, match="--init_from .*nothing: no such directory"):
        sft.main([*base, "--stage", "response", "--prompt_format", "qalign", "--init_from", str(tmp_path / "nothing")])
    with pytest.raises(MlalignError, match="is not the model .* was trained from"):
        sft.main(["--stage", "response", "--prompt_format", "qalign", "--init_from", str(stage_one),
                  "--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path / "o")])  # fmt: skip
    with pytest.raises(MlalignError, match="is a LoRA adapter, which stage II trains on .*merge it first"):
        sft.main([*base, "--stage", "response", "--prompt_format", "qalign", "--init_from", str(stage_one),
                  "--use_peft", "false"])  # fmt: skip
    with pytest.raises(MlalignError, match="stage II writes question-answer examples"):
        sft.main([*base, "--stage", "response", "--init_from", str(stage_one)])  # the default format is stage I's
    (tmp_path / "one.yaml").write_text("learning_rate: 1.0e-3\nstages:\n  question: {languages: de}\n")
    with pytest.raises(MlalignError, match=r"recipe .*one.yaml has no response stage \(it has: question\)"):
        sft.parse_args(["--config", str(tmp_path / "one.yaml"), "--stage", "response"])
    (tmp_path / "odd.yaml").write_text("stages:\n  answers: {languages: de}\n")
    with pytest.raises(MlalignError, match="'stages' must map stage names \\(question, response\\)"):
        sft.parse_args(["--config", str(tmp_path / "odd.yaml")])
    assert not (tmp_path / "o").exists()
    cli = subprocess.run(
        [sys.executable, "-m", "mlalign_trainer.sft", *base, "--stage", "response", "--prompt_format", "qalign",
         "--response_source", "metamathqa"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1
    assert cli.stderr.startswith("error: cannot load the hub dataset meta-math/MetaMathQA")

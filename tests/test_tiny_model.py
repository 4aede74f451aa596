"""The tiny offline model: loads with Auto classes, round-trips every benchmark script, distinct pad/eos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mlalign_tasks.files import data
from mlalign_tasks.tasks.languages import MGSM_LANGS, PAPER_LANGS


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def benchmark_texts() -> list[str]:
    texts = [data.resolve(f"mgsm/mgsm_{c}.tsv").read_text(encoding="utf-8").splitlines()[0] for c in MGSM_LANGS]
    for code in PAPER_LANGS:
        texts.append(data.read_registry_json(f"paper_tasks/snli/snli_{code}600_test.json")[0]["premise"])
    return texts + ["١٢٣ ۴۵۶ ５０ ½ € ₹ ฿ \t\n  double  spaces", "emoji 🙂 and combining é"]


def test_every_benchmark_script_round_trips(tok):
    for text in benchmark_texts():
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.decode(ids) == text
        assert tok.unk_token_id not in ids


def test_special_tokens_and_chat_template(tok):
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert tok("hello").input_ids[0] == tok.bos_token_id
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "Wie viel?"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.startswith(tok.bos_token) and "Wie viel?" in chat and chat.endswith("<|assistant|>\n")


def test_model_loads_and_runs(tiny_model_dir, tok):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id != model.config.eos_token_id
    assert model.num_parameters() < 1_000_000
    batch = tok(["Hallo Welt", "สวัสดี"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch.input_ids.shape and torch.isfinite(logits).all()


def test_build_is_deterministic(tiny_model_dir, tmp_path):
    from mlalign_tasks.models.tiny_model import build_tiny_model

    again = build_tiny_model(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
    a = AutoModelForCausalLM.from_pretrained(again).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((again / "mlalign_tiny.json").read_text())["seed"] == 0


def test_cli_refuses_a_non_model_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    res = subprocess.run(
        [sys.executable, "-m", "mlalign_tasks.cli", "tiny-model", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2 and "not a model directory" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_weights_on_a_full_disk_are_one_line_and_keep_the_old_model(tmp_path, tiny_model_dir, file_size_limit):
    """safetensors reports a failed write of the weights (a full disk; here a file size limit, so that the write fails
    with EFBIG as with ENOSPC) as its own error: one line naming the folder, and the earlier model stays whole."""
    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = subprocess.run(
        [*file_size_limit, "100000", sys.executable, "-m", "mlalign_tasks.cli", "tiny-model", "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 2 and res.stderr.splitlines()[-1] == f"error: File too large: {out}", res.stderr
    assert "Traceback" not in res.stderr and {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_failed_build_writes_nothing(tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    from mlalign_tasks.models.tiny_model import build_tiny_model

    def disk_full(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        build_tiny_model(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []  # no half-written model, no temporary directory


def test_refuses_a_file(tmp_path):
    from mlalign_tasks.errors import MlalignError
    from mlalign_tasks.models.tiny_model import build_tiny_model

    (tmp_path / "model").write_text("mine")
    with pytest.raises(MlalignError, match="not a model directory"):
        build_tiny_model(tmp_path / "model")
    assert (tmp_path / "model").read_text() == "mine"


def test_refuses_a_model_it_did_not_build(tmp_path):
    """A real model folder (config.json and weights, no tiny-model marker) is the user's: never replaced."""
    from mlalign_tasks.errors import MlalignError
    from mlalign_tasks.models.tiny_model import build_tiny_model

    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(MlalignError, match="not a model directory written by `mlalign tiny-model`"):
        build_tiny_model(model)
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.safetensors"]

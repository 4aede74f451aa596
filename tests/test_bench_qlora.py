"""bench/bench_qlora_gpu.py: its model-FLOPs formula against torch's FLOP counter, and a CPU smoke run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_qlora_gpu.py"


def load_bench():
    """The script as a module (bench/ is not a package)."""
    sys.path.insert(0, str(SCRIPT.parent))  # its sibling modules (random_model)
    spec = importlib.util.spec_from_file_location("bench_qlora_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seq", [64, 256])
def test_model_flops_per_token_matches_flop_counter(seq: int) -> None:
    """Forward + backward of a frozen Llama (GQA) with LoRA on q_proj,v_proj, counted matmul by matmul."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=1000, tie_word_embeddings=False, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    r, targets = 4, ("q_proj", "v_proj")
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=r, target_modules=list(targets), lora_dropout=0.0))
    # As TRL does for PEFT with gradient checkpointing (the benchmark's setting): the first layer's input
    # gradient is computed too, so every frozen projection has its activation-gradient matmul.
    model.enable_input_require_grads()
    ids = torch.randint(0, config.vocab_size, (1, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    measured = counter.get_total_flops() / seq
    formula = load_bench().model_flops_per_token(config, seq, lora_r=r, lora_targets=targets)
    # The count is exact (matmuls only; norms, softmax and the loss are not model FLOPs): the tolerance is slack.
    assert measured == pytest.approx(formula, rel=1e-3)


@pytest.mark.slow
def test_cpu_smoke_run_trains_every_variant_on_the_same_rows(tmp_path: Path) -> None:
    """The plain QLoRA loop and mlalign's trainer (padded and padding-free) train the same rows in 4-bit."""
    out = tmp_path / "qlora.json"
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--shapes", "tiny-llama:64", "--steps", "2",
           "--warmup", "1", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped, loaded, *rows = json.loads(out.read_text())
    needs = "needs a CUDA GPU and the liger-kernel package"
    assert skipped == {"skipped": {"liger": needs, "liger-cudnn": needs}}
    assert loaded["shape"] == "tiny-llama" and loaded["load_s"] > 0
    by = {r["variant"]: r for r in rows}
    assert list(by) == ["plain", "plain-no-cudnn", "mlalign", "mlalign-cudnn", "padding-free"]
    for r in rows:
        assert r["seq"] == 64 and r["device_kind"] == "cpu" and r["peak_mem_gib"] is None and r["mfu"] is None
        assert r["tokens_per_s"] > 0 and r["s_per_step"] > 0 and r["peak_rss_gib"] > 0
        assert r["linear4bit_modules"] == 2 * 7  # every projection of both layers is NF4 (the LM head is not)
        assert r["lora_b_max_abs"] > 0  # lora_B starts at zero: the adapters were trained
    # The same rows: the padded and padding-free trainers see the same batches, so the same tokens and losses
    # (padding-free attention is exact); the plain loop draws its own order.
    for variant in ("mlalign-cudnn", "padding-free"):
        assert by[variant]["tokens_timed"] == by["mlalign"]["tokens_timed"]
        assert by[variant]["last_loss"] == pytest.approx(by["mlalign"]["last_loss"], abs=1e-3)
    assert by["plain"]["mean_row_tokens"] == by["mlalign"]["mean_row_tokens"]


def test_bench_rows_vary_in_length_and_avoid_special_tokens() -> None:
    rows = load_bench().bench_rows(vocab=1000, seq=256, n=64)
    lengths = [len(r) for r in rows]
    assert lengths[:4] == [256] * 4 and min(lengths) >= 32 and len(set(lengths)) > 20
    assert min(min(r) for r in rows) >= 16 and max(max(r) for r in rows) < 1000


def test_gpu_check_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_eval_speed_smoke_compares_mlalign_eval_with_lm_eval(tmp_path: Path) -> None:
    """mlalign eval and plain lm_eval on the same model, tasks and settings give the same scores."""
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_cli_check.py"), "--smoke", "--section", "eval-speed",
           "--repeats", "1", "--work", str(tmp_path / "work"), "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [s["step"] for s in doc["steps"]] == ["model", "speed-mlalign-0", "speed-lmeval-0"]
    speed = doc["eval_speed"]
    assert speed["same_scores"] is True
    assert speed["generated_tokens"]["mlalign"] == speed["generated_tokens"]["lm_eval"] > 0
    assert speed["wall_ratio_mlalign_over_lm_eval"] > 0

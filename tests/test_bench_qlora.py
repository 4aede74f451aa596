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
def test_cpu_smoke_run_trains_a_4bit_model(tmp_path: Path) -> None:
    out = tmp_path / "qlora.json"
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--shapes", "tiny-llama", "--seq", "64", "--batch", "2",
           "--steps", "2", "--warmup", "1", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert row["shape"] == "tiny-llama" and row["seq"] == 64 and row["batch"] == 2
    assert row["device_kind"] == "cpu" and row["peak_mem_gib"] is None and row["mfu"] is None
    assert row["tokens_per_s"] > 0 and row["s_per_step"] > 0 and row["peak_rss_gib"] > 0
    assert row["linear4bit_modules"] == 2 * 7  # every projection of both layers is NF4 (the LM head is not)
    assert row["lora_b_max_abs"] > 0  # lora_B starts at zero: the adapters were trained

"""The 4-bit presets on the tiny model (bitsandbytes NF4 runs on the CPU too): configs, the merge before quantising
against a merge by hand, the results' record, and the leaderboard's refusal to mix presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.models.model_loading import Nf4Preset, bnb_config, load_4bit
from mlalign_tasks.pipeline import evaluate


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random (non-identity) LoRA adapter on q_proj and v_proj."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("nf4-adapter") / "lora"
    get_peft_model(base, config).save_pretrained(out)
    return out


def test_preset_configs() -> None:
    paper, ours = bnb_config(Nf4Preset.paper), bnb_config(Nf4Preset.mlalign)
    # the papers' scripts: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", compute float16)
    assert (paper.load_in_4bit, paper.bnb_4bit_quant_type, paper.bnb_4bit_compute_dtype) == (True, "nf4", torch.float16)
    assert paper.bnb_4bit_use_double_quant is False
    assert (ours.bnb_4bit_quant_type, ours.bnb_4bit_compute_dtype, ours.bnb_4bit_use_double_quant) == (
        "nf4",
        torch.bfloat16,
        True,
    )


def nf4_roundtrip(weight: torch.Tensor) -> torch.Tensor:
    """`weight` quantised to NF4 without double quantisation (blocks of 64) and dequantised, by bitsandbytes."""
    import bitsandbytes.functional as bnbf

    packed, state = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=False)
    return bnbf.dequantize_4bit(packed, state).float()


def test_paper_preset_quantises_the_merged_weights(tiny_model_dir, adapter) -> None:
    import bitsandbytes.functional as bnbf
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = load_4bit(str(tiny_model_dir), str(adapter), Nf4Preset.paper, "cpu")
    assert type(model).__name__ == "LlamaForCausalLM"  # merged: no PEFT wrapper, no LoRA modules
    assert not any("lora" in name for name, _ in model.named_modules())
    q = model.model.layers[1].self_attn.q_proj
    assert type(q).__name__ == "Linear4bit" and q.compute_dtype == torch.float16
    assert q.weight.quant_state.nested is False and q.weight.quant_state.quant_type == "nf4"
    got = bnbf.dequantize_4bit(q.weight.data, q.weight.quant_state).float()

    # the merge by hand: W + (B A * alpha / r) in float16 (the product in float32, as PEFT does on the CPU), then NF4
    lora = load_file(adapter / "adapter_model.safetensors")
    prefix = "base_model.model.model.layers.1.self_attn.q_proj"
    a, b = lora[f"{prefix}.lora_A.weight"], lora[f"{prefix}.lora_B.weight"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.layers[1].self_attn.q_proj.weight.detach()
    merged = base.half() + (b.float() @ a.float() * (16 / 4)).half()
    expected, unmerged = nf4_roundtrip(merged), nf4_roundtrip(base.half())
    # equal but for float16 rounding (a value on a level boundary may land on the neighbouring NF4 level)
    assert ((got - expected).abs() < 1e-3).float().mean() > 0.98
    assert (got - expected).abs().mean() < 0.01 * (got - unmerged).abs().mean()  # far from NF4 of the base alone


def test_mlalign_preset_keeps_the_adapter_on_the_quantised_base(tiny_model_dir, adapter) -> None:
    model = load_4bit(str(tiny_model_dir), str(adapter), Nf4Preset.mlalign, "cpu")
    assert type(model).__name__ == "PeftModel"
    q = model.get_base_model().model.layers[1].self_attn.q_proj
    assert type(q.base_layer).__name__ == "Linear4bit" and hasattr(q, "lora_A")
    assert q.base_layer.weight.quant_state.nested is True and q.base_layer.compute_dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nf4_preset": Nf4Preset.paper}, "--nf4-preset paper applies to 4-bit evaluation; add --load-in-4bit"),
        ({"load_in_4bit": True, "dtype": evaluate.Dtype.float16}, "--dtype float16 applies to full precision"),
    ],
)
def test_preset_options_that_do_not_fit_are_refused(tiny_model_dir, changes, message) -> None:
    req = evaluate.EvalRequest(model=str(tiny_model_dir), tasks=evaluate.parse_tasks("snli_aligned:de"), **changes)
    with pytest.raises(MlalignError, match=message):
        evaluate.run(req)


def test_results_record_the_preset(monkeypatch, tmp_path, tiny_model_dir, adapter) -> None:
    monkeypatch.setattr(evaluate, "resolve_device", lambda device, load_in_4bit: "cpu")  # NF4 on the CPU, for tests
    req = evaluate.EvalRequest(
        model=str(tiny_model_dir), adapter=str(adapter), tasks=evaluate.parse_tasks("sentiment_aligned:de"), limit=2,
        output_path=tmp_path / "out", load_in_4bit=True, nf4_preset=Nf4Preset.paper,
    )  # fmt: skip
    results = evaluate.run(req)
    assert results["mlalign"]["load_in_4bit"] is True and results["mlalign"]["nf4_preset"] == "paper"
    (saved,) = (tmp_path / "out").glob("*/results_*.json")
    assert json.loads(saved.read_text())["config"]["model_args"] == f"pretrained={tiny_model_dir},peft={adapter}"

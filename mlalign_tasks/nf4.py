"""4-bit NF4 loading (bitsandbytes) for evaluation, in two named presets (`mlalign eval --nf4-preset`).

- ``mlalign`` (the default): QLoRA's setting, the one the trainer trains in: NF4 with double quantisation,
  bfloat16 compute; an adapter is applied as LoRA on top of the quantised base.
- ``paper``: the papers' evaluation scripts: NF4 without double quantisation, float16 compute; an adapter is
  merged into the base model in float16 first (as upstream evaluated merged checkpoints), and the merged weights
  are quantised.
"""

from __future__ import annotations

import tempfile
from enum import StrEnum
from pathlib import Path


class Nf4Preset(StrEnum):
    """The 4-bit presets (values as given on the command line)."""

    mlalign = "mlalign"
    paper = "paper"


def bnb_config(preset: Nf4Preset = Nf4Preset.mlalign, compute_dtype=None):
    """The bitsandbytes config of `preset` (`compute_dtype` overrides the preset's compute dtype)."""
    import torch
    from transformers import BitsAndBytesConfig

    paper = preset is Nf4Preset.paper
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype or (torch.float16 if paper else torch.bfloat16),
        bnb_4bit_use_double_quant=not paper,
    )


def load_4bit(model: str, adapter: str | None, preset: Nf4Preset, device: str):
    """`model` (+ `adapter`) in 4-bit on `device`, as `preset` says, in eval mode."""
    from transformers import AutoModelForCausalLM

    def quantised(path: str):
        return AutoModelForCausalLM.from_pretrained(
            path, quantization_config=bnb_config(preset), device_map={"": device}
        )

    if adapter and preset is Nf4Preset.paper:
        from mlalign_trainer.merge import merge_adapter

        with tempfile.TemporaryDirectory(prefix="mlalign-merged-") as tmp:
            merged = merge_adapter(adapter, Path(tmp) / "model", base=model, dtype="float16")
            loaded = quantised(str(merged))
    else:
        loaded = quantised(model)
        if adapter:
            from peft import PeftModel

            loaded = PeftModel.from_pretrained(loaded, adapter)
    return loaded.eval()

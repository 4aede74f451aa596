"""Loading a model for evaluation, analyses and merges: device, dtype, the 4-bit NF4 presets, base model + adapter.

The 4-bit presets (`mlalign eval --nf4-preset`, also `mlalign analyze`):

- ``mlalign`` (the default): QLoRA's setting, the one the trainer trains in: NF4 with double quantisation,
  bfloat16 compute; an adapter is applied as LoRA on top of the quantised base.
- ``paper``: the papers' evaluation scripts: NF4 without double quantisation, float16 compute; an adapter is
  merged into the base model in float16 first (as upstream evaluated merged checkpoints), and the merged weights
  are quantised.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import ADAPTER_FILE
from mlalign_tasks.models.gguf_models import resolve_model
from mlalign_tasks.models.model_paths import check_local


class Dtype(StrEnum):
    """The weights' dtype in full precision (auto: the command's default, e.g. the model config's)."""

    auto = "auto"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


DTYPES = tuple(d.value for d in Dtype if d is not Dtype.auto)  # the explicit ones
MergeDtype = StrEnum("MergeDtype", {name: name for name in DTYPES})  # a merged model's: an explicit one


class Nf4Preset(StrEnum):
    """The 4-bit presets (values as given on the command line)."""

    mlalign = "mlalign"
    paper = "paper"


@dataclass(frozen=True)
class ModelSpec:
    """The model an analysis loads: the base model, an optional PEFT adapter (then base and aligned are both
    analysed), where it runs and in what precision."""

    model: str
    adapter: str | None = None
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    dtype: Dtype = Dtype.auto  # full precision (auto: bfloat16 on a GPU that has it, else float32)
    load_in_4bit: bool = False  # NF4 (CUDA)
    nf4_preset: Nf4Preset = Nf4Preset.mlalign  # with load_in_4bit

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", str(self.model))
        if self.adapter is not None:
            object.__setattr__(self, "adapter", str(self.adapter))
        try:
            object.__setattr__(self, "dtype", Dtype(self.dtype))
        except ValueError:
            raise MlalignError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(Dtype)}") from None
        preset = Nf4Preset(self.nf4_preset)
        object.__setattr__(self, "nf4_preset", preset)
        if preset is Nf4Preset.paper and not self.load_in_4bit:
            raise MlalignError("--nf4-preset paper applies to 4-bit analyses; add --load-in-4bit")
        if preset is Nf4Preset.paper and self.adapter:
            # upstream analysed merged checkpoints, each its own model; one run here toggles an adapter instead
            raise MlalignError(
                "--nf4-preset paper quantises a merged model, not base + adapter: run `mlalign merge` on the adapter "
                "and analyse the merged model with --model, and the base model in a second run"
            )


def torch_dtype(name: str):
    """The torch dtype named `name` (one of `DTYPES`)."""
    import torch

    if name not in DTYPES:
        raise MlalignError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def resolve_device(device: str | None, load_in_4bit: bool = False) -> str:
    """The device to run on (None or 'auto': cuda if available, else cpu), checked against what is there."""
    import torch

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise MlalignError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MlalignError(f"device {device!r}, but no CUDA GPU is visible; use --device cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise MlalignError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) visible")
    if load_in_4bit and dev.type != "cuda":
        raise MlalignError(
            "--load-in-4bit needs a CUDA GPU (bitsandbytes NF4); drop --load-in-4bit to run on "
            f"{device} in full precision"
        )
    return device


def load_causal_lm(model: str | Path, adapter: str | Path | None = None, **kwargs):
    """`model` as a transformers causal LM (`kwargs` go to `from_pretrained`), with the PEFT `adapter` applied."""
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    if adapter is None:
        return loaded
    from peft import PeftModel

    return PeftModel.from_pretrained(loaded, str(adapter))


def merged_model(adapter: str | Path, base: str | None = None, dtype: str = "float32"):
    """`adapter` merged into `base` (default: the adapter's base model), loaded unquantised in `dtype`: the merged
    model and the base model it was merged into."""
    from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME

    check_local(str(adapter), "--adapter", ADAPTER_FILE)
    adapter = Path(adapter)
    config_file = adapter / ADAPTER_FILE
    if adapter.is_dir() and not any((adapter / name).is_file() for name in (SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME)):
        raise MlalignError(
            f"--adapter {adapter} holds {ADAPTER_FILE} but no adapter weights ({SAFETENSORS_WEIGHTS_NAME}); pass a "
            "trained adapter folder (what `mlalign train` writes to --output_dir)"
        )
    weights = torch_dtype(dtype)
    base = base or json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise MlalignError(f"{config_file} names no base model; give --base")
    base = resolve_model(base, "--base")
    check_local(base, "--base")
    try:
        return load_causal_lm(base, adapter, dtype=weights).merge_and_unload(), base
    except OSError as e:
        raise MlalignError(f"cannot load base model {base!r} with adapter {adapter}: {e}") from None


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
    quantised = {"quantization_config": bnb_config(preset), "device_map": {"": device}}
    if adapter and preset is Nf4Preset.paper:
        merged, _ = merged_model(adapter, base=model, dtype="float16")
        with tempfile.TemporaryDirectory(prefix="mlalign-merged-") as tmp:
            merged.save_pretrained(tmp)
            del merged  # the float16 copy, before the quantised one loads
            return load_causal_lm(tmp, **quantised).eval()
    return load_causal_lm(model, adapter or None, **quantised).eval()

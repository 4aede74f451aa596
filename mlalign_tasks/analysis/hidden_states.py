"""Load a causal LM (optionally 4-bit, optionally with a LoRA adapter) and collect every layer's hidden states.

All layers come from one forward pass per batch (``output_hidden_states=True``); prompts are left
padded with explicit position ids, so every row gives the same numbers as when run alone. Index
``l`` of the hidden states is the output of layer ``l`` (0 = the embeddings); as returned by
Hugging Face models, the last one is already passed through the model's final norm.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import ADAPTER_FILE
from mlalign_tasks.models.model_loading import (
    ModelSpec,
    Nf4Preset,
    bnb_config,
    load_causal_lm,
    resolve_device,
    torch_dtype,
)
from mlalign_tasks.models.model_paths import check_local
from mlalign_tasks.runtime.progress import StepProgress


@dataclass
class Batch:
    """One forward pass: all hidden states (L+1 tensors [B, T, H]), the mask and the last position's logits."""

    hidden_states: tuple[torch.Tensor, ...]
    attention_mask: torch.Tensor  # [B, T], left padded
    input_ids: torch.Tensor  # [B, T]
    last_logits: torch.Tensor  # [B, V]: the model's own next-token logits after the prompt


@dataclass
class LoadedModel:
    """A model ready for analysis: the (possibly PEFT-wrapped) model, its tokenizer and where it runs."""

    model: Any
    tokenizer: Any
    device: torch.device
    peft: str | None = None

    @property
    def base(self) -> Any:
        """The underlying transformers model (unwrapped from PEFT)."""
        return self.model.get_base_model() if self.peft else self.model

    @property
    def num_layers(self) -> int:
        """Number of decoder layers L (hidden states are indexed 0..L)."""
        return int(self.base.config.get_text_config().num_hidden_layers)

    def variants(self) -> list[str]:
        """'base' and, with an adapter, 'aligned'."""
        return ["base", "aligned"] if self.peft else ["base"]

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        """Run the base model (adapter disabled) or the aligned one (adapter enabled)."""
        if name not in self.variants():
            raise MlalignError(f"unknown model variant {name!r}; this run has {self.variants()}")
        with self.model.disable_adapter() if (self.peft and name == "base") else nullcontext():
            yield


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on a GPU that supports it, else float32."""
    if dtype == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return torch_dtype(dtype)


def _load_error(model: str, e: Exception) -> MlalignError:
    return MlalignError(
        f"cannot load model {model!r} as a causal LM ({str(e).splitlines()[0]}); "
        "pass a local model directory or a Hugging Face model id available offline"
    )


def check_paths(model: str, peft: str | Path | None) -> None:
    """Refuse a local-looking `model` or `peft` that is absent or not a model/adapter, before any data or Hub."""
    check_local(model, "--model")
    if peft is not None:
        check_local(str(peft), "--peft", ADAPTER_FILE)


def config_num_layers(model: str) -> int:
    """Number of decoder layers of `model`, read from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    check_local(model, "--model")
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise _load_error(model, e) from None
    return int(config.get_text_config().num_hidden_layers)


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load `spec`'s model (a Hugging Face id or path) for analysis, with its LoRA adapter if it names one."""
    from transformers import AutoTokenizer

    model, peft = spec.model, spec.adapter
    dev = torch.device(resolve_device(spec.device, spec.load_in_4bit))
    dtype = resolve_dtype(spec.dtype, dev)
    check_paths(model, peft)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if spec.load_in_4bit:
        # the paper preset computes in float16 as the papers' scripts; mlalign's in the analysis dtype
        compute = None if spec.nf4_preset is Nf4Preset.paper else (dtype if dtype != torch.float32 else torch.float16)
        kwargs["quantization_config"] = bnb_config(spec.nf4_preset, compute_dtype=compute)
        kwargs["device_map"] = {"": dev.index or 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = load_causal_lm(model, peft, **kwargs)
    except (OSError, ValueError) as e:
        raise _load_error(model, e) from None
    if not spec.load_in_4bit:
        lm = lm.to(dev)
    lm.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(lm, tokenizer, dev, peft=str(peft) if peft is not None else None)


def parse_layers(spec: str | None, num_layers: int, default: list[int]) -> list[int]:
    """Parse '0,4,-1' or '2-6' into sorted, unique layer indices in 0..num_layers (negatives count from the end)."""
    if spec is None or not spec.strip():
        return default
    valid = f"valid: 0..{num_layers} (0 = embeddings, {num_layers} = last layer), or negative from the end"
    out: set[int] = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        span = re.fullmatch(r"(\d+)-(\d+)", part)
        if span:
            values = list(range(int(span[1]), int(span[2]) + 1))
        elif re.fullmatch(r"-?\d+", part):
            values = [int(part)]
        else:
            raise MlalignError(f"bad layer {part!r} in --layers {spec!r}; expected e.g. '0,8,-1' or '4-8'")
        for v in values:
            if not -(num_layers + 1) <= v <= num_layers:
                raise MlalignError(f"layer {v} is out of range: the model has {num_layers} layers; {valid}")
            out.add(v % (num_layers + 1))
    if not out:
        raise MlalignError(f"--layers {spec!r} selects no layer; {valid}")
    return sorted(out)


def run_batches(
    lm: LoadedModel,
    texts: list[str],
    reduce: Callable[[Batch], dict[str, torch.Tensor]],
    batch_size: int = 8,
    progress: StepProgress | None = None,
) -> dict[str, torch.Tensor]:
    """Run `texts` through the model (longest first, one forward per batch) and reduce every batch.

    `reduce` maps a Batch to tensors whose first dimension is the batch; they come back concatenated
    on the CPU in the order of `texts`. Each batch advances `progress` by its texts.
    """
    if batch_size < 1:
        raise MlalignError(f"--batch-size must be at least 1, got {batch_size}")
    if not texts:
        return {}
    ids = lm.tokenizer(texts, add_special_tokens=True)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        enc = lm.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
        mask = enc["attention_mask"].to(lm.device)
        input_ids = enc["input_ids"].to(lm.device)
        with torch.inference_mode():
            out = lm.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=(mask.long().cumsum(-1) - 1).clamp(min=0),
                output_hidden_states=True,
                use_cache=False,
                logits_to_keep=1,
            )
            reduced = reduce(Batch(tuple(out.hidden_states), mask.bool(), input_ids, out.logits[:, -1, :]))
        for key, value in reduced.items():
            parts.setdefault(key, []).append(value.detach().float().cpu())
        if progress is not None:
            progress.advance(len(rows))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return {key: torch.cat(chunks)[inverse] for key, chunks in parts.items()}

"""Merge a trained LoRA adapter into its base model and write a full model (temp dir + rename)."""

from __future__ import annotations

import json
from pathlib import Path

from mlalign_tasks.artefacts import ADAPTER_FILE, METADATA_FILE
from mlalign_tasks.atomic import atomic_dir, weights_written, write_json_atomic
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.gguf_models import resolve_model
from mlalign_tasks.model_loading import load_causal_lm, torch_dtype
from mlalign_tasks.model_paths import check_local
from mlalign_tasks.output_dirs import check_replaceable


def merge_adapter(adapter: str | Path, out: str | Path, base: str | None = None, dtype: str = "float32") -> Path:
    """Load `base` (default: the adapter's base model) unquantised, apply the adapter, merge, save to `out`."""
    from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
    from transformers import AutoTokenizer

    check_local(str(adapter), "--adapter", ADAPTER_FILE)
    adapter, out = Path(adapter), Path(out)
    config_file = adapter / ADAPTER_FILE
    if adapter.is_dir() and not any((adapter / name).is_file() for name in (SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME)):
        raise MlalignError(
            f"--adapter {adapter} holds {ADAPTER_FILE} but no adapter weights ({SAFETENSORS_WEIGHTS_NAME}); pass a "
            "trained adapter folder (what `mlalign train` writes to --output_dir)"
        )
    weights = torch_dtype(dtype)
    check_replaceable(out, "--out")
    base = base or json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise MlalignError(f"{config_file} names no base model; give --base")
    base = resolve_model(base, "--base")
    check_local(base, "--base")
    try:
        merged = load_causal_lm(base, adapter, dtype=weights).merge_and_unload()
    except OSError as e:
        raise MlalignError(f"cannot load base model {base!r} with adapter {adapter}: {e}") from None
    tok_source = adapter if (adapter / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tok_source)

    with atomic_dir(out) as tmp, weights_written(out):
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (adapter / METADATA_FILE).is_file():
            meta = json.loads((adapter / METADATA_FILE).read_text(encoding="utf-8"))
            meta["merged_from_adapter"] = str(adapter.resolve())
            write_json_atomic(tmp / METADATA_FILE, meta)
    return out

"""Merge a trained LoRA adapter into its base model and write a full model (temp dir + rename)."""

from __future__ import annotations

import json
from pathlib import Path

from mlalign_tasks.files.artefacts import METADATA_FILE
from mlalign_tasks.files.atomic import atomic_dir, weights_written, write_json_atomic
from mlalign_tasks.files.output_dirs import check_replaceable
from mlalign_tasks.models.model_loading import merged_model


def merge_adapter(adapter: str | Path, out: str | Path, base: str | None = None, dtype: str = "float32") -> Path:
    """Load `base` (default: the adapter's base model) unquantised, apply the adapter, merge, save to `out`."""
    from transformers import AutoTokenizer

    out = Path(out)
    check_replaceable(out, "--out")
    merged, base = merged_model(adapter, base, dtype)
    adapter = Path(adapter)
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

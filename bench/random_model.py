"""Random-weight checkpoints of real architectures at real sizes (speed and memory do not depend on the weights).

``python bench/random_model.py SHAPE OUT [--device cuda]`` writes a bf16 checkpoint with mlalign's tiny byte-level
BPE tokenizer beside it, so every mlalign command (train, eval, analyze, merge, run) can load it offline. With the
tokenizer the vocabulary is the tokenizer's (1024 entries); without it (``--no-tokenizer``, the QLoRA benchmark) it
is the real model's, so the embedding and LM head have their real cost.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

SHAPES = {
    "llama2-7b": (
        "llama",
        {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
         "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
         "tie_word_embeddings": False},
    ),
    "qwen2.5-1.5b": (
        "qwen2",
        {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
         "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1e6,
         "tie_word_embeddings": True},
    ),
    "qwen2.5-0.5b": (
        "qwen2",
        {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
         "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1e6,
         "tie_word_embeddings": True},
    ),
    # For smoke runs on the CPU: well under a second per step.
    "tiny-llama": (
        "llama",
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 2048,
         "tie_word_embeddings": False},
    ),
    "tiny-qwen2": (
        "qwen2",
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096,
         "tie_word_embeddings": True},
    ),
}  # fmt: skip


def write_random_checkpoint(shape: str, out: Path, device: str = "cuda", tokenizer: bool = True) -> dict:
    """Write a random-weight bf16 checkpoint of `shape` to `out` (initialised on `device`); returns its timings."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from mlalign_tasks.models.tiny_model import build_tokenizer

    model_type, sizes = SHAPES[shape]
    special = {}
    tok = None
    if tokenizer:
        tok = build_tokenizer()
        special = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
        sizes = {**sizes, "vocab_size": len(tok)}
    config = AutoConfig.for_model(model_type, **sizes, **special, dtype="bfloat16")
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if tok is not None:
        model.generation_config = GenerationConfig(**special)
    built = time.perf_counter()
    model.save_pretrained(out)
    if tok is not None:
        tok.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"build_s": round(built - start, 2), "save_s": round(time.perf_counter() - built, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", choices=sorted(SHAPES))
    p.add_argument("out", type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-tokenizer", action="store_true", help="Keep the real vocabulary; write no tokenizer.")
    a = p.parse_args()
    print(write_random_checkpoint(a.shape, a.out, a.device, tokenizer=not a.no_tokenizer))


if __name__ == "__main__":
    main()

"""QLoRA throughput and memory on a CUDA GPU with real architectures at real sizes and random weights.

For each shape (Llama-2-7B, Qwen2.5-1.5B) the script writes a random-weight bf16 checkpoint from the config,
loads it the way `mlalign train` does (``sft.load_model``: NF4, double quantisation, bf16 compute,
``prepare_model_for_kbit_training``, non-reentrant gradient checkpointing), adds LoRA on q_proj,v_proj and runs
``SFTTrainer`` steps with paged 8-bit AdamW on fixed-length random token rows at each sequence length.
Throughput does not depend on weight values.

Reported per (shape, sequence length): tokens/s and s/step over the timed steps (after warm-up), peak GPU memory
(``torch.cuda.max_memory_allocated``, and reserved), and model FLOPs utilisation. Model FLOPs per token of LoRA
training on a frozen base = forward (2 N) + backward to the activations (2 N), N = non-embedding parameters +
the LM head, plus attention scores (4 * layers * seq * hidden per token forward, the same backward);
recomputation by checkpointing is not counted. MFU = model FLOPs/s / the GPU's dense bf16 peak.

Unsloth publishes ~1.9x the throughput of plain HF QLoRA; this script measures the plain HF path
(transformers + bitsandbytes + PEFT + TRL), so that ratio is the gap. ``--attn flash_attention_2`` (needs the
flash-attn package) and ``--liger`` (needs liger-kernel; fused RoPE/RMSNorm/SwiGLU/cross-entropy) try fused kernels.

Usage: python bench/bench_qlora_gpu.py [--shapes llama2-7b,qwen2.5-1.5b] [--seq 512,1024] [--batch 4]
       [--steps 10] [--warmup 3] [--attn sdpa] [--liger] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from mlalign_tasks.atomic import write_json_atomic

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
}  # fmt: skip
# Dense bf16 peak TFLOP/s by device name fragment (no sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "4090": 165.0, "3090": 71.0}


def write_random_checkpoint(shape: str, out: Path) -> Path:
    """A random-weight bf16 checkpoint of `shape` with a tokenizer-free config (initialised on the GPU)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, sizes = SHAPES[shape]
    config = AutoConfig.for_model(model_type, **sizes, torch_dtype="bfloat16")
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


def model_flops_per_token(config, seq: int) -> float:
    """Forward + activation-gradient FLOPs per token (see the module docstring)."""
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter  # q,o + k,v + gate,up,down
    n = layers * per_layer + h * config.vocab_size
    attention = 4 * layers * seq * h
    return 2 * (2 * n + attention)


def run(shape: str, ckpt: Path, seq: int, a: argparse.Namespace) -> dict:
    from datasets import Dataset
    from mlalign_trainer import sft
    from transformers import TrainerCallback
    from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

    from mlalign_tasks.tiny_model import build_tokenizer

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._t)

    model_args = ModelConfig(
        model_name_or_path=str(ckpt), dtype="bfloat16", load_in_4bit=True, bnb_4bit_quant_type="nf4",
        use_bnb_nested_quant=True, use_peft=True, lora_target_modules=["q_proj", "v_proj"], lora_r=16,
        lora_alpha=32, lora_dropout=0.05, attn_implementation=a.attn,
    )  # fmt: skip
    args = SFTConfig(
        output_dir=str(ckpt.parent / f"trainer-{seq}"), max_steps=a.warmup + a.steps, per_device_train_batch_size=a.batch,
        gradient_accumulation_steps=1, learning_rate=5e-5, optim="paged_adamw_8bit", bf16=True,
        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}, max_length=seq,
        save_strategy="no", report_to="none", logging_steps=1000, disable_tqdm=True, use_liger_kernel=a.liger,
    )  # fmt: skip
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = sft.load_model(model_args, args)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(10, model.config.vocab_size, (a.batch * (a.warmup + a.steps), seq), generator=g)
    dataset = Dataset.from_dict({"input_ids": rows.tolist()})
    timer = StepTimer()
    # The rows are token ids already; the tokenizer only supplies the padding id (no row needs padding).
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=build_tokenizer(),
                         peft_config=get_peft_config(model_args), callbacks=[timer])  # fmt: skip
    trainer.train()
    step_s = sum(timer.times[a.warmup :]) / a.steps
    tokens_s = a.batch * seq / step_s
    name = torch.cuda.get_device_name()
    peak = a.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    flops = model_flops_per_token(model.config, seq) * tokens_s
    result = {
        "shape": shape, "seq": seq, "batch": a.batch, "attn": a.attn, "liger": a.liger, "device": name,
        "s_per_step": round(step_s, 4), "tokens_per_s": round(tokens_s, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "model_tflops_per_s": round(flops / 1e12, 1), "mfu": round(flops / (peak * 1e12), 4) if peak else None,
    }  # fmt: skip
    del trainer, model
    torch.cuda.empty_cache()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="llama2-7b,qwen2.5-1.5b")
    p.add_argument("--seq", default="512,1024")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--liger", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--json", type=Path, default=None, help="Also write the results to this JSON file.")
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit(
            "bench_qlora_gpu.py needs a CUDA GPU (bitsandbytes 4-bit QLoRA) and none is visible; run it on a GPU "
            "machine. For CPU numbers use bench/bench_train.py."
        )
    unknown = set(a.shapes.split(",")) - set(SHAPES)
    if unknown:
        sys.exit(f"unknown shape(s) {sorted(unknown)}; known: {', '.join(SHAPES)}")
    results = []
    for shape in a.shapes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = write_random_checkpoint(shape, Path(tmp) / shape)
            for seq in (int(s) for s in a.seq.split(",")):
                results.append(run(shape, ckpt, seq, a))
                print(json.dumps(results[-1]), flush=True)
    print(f"\n{'shape':14s} {'seq':>5s} {'tok/s':>9s} {'s/step':>7s} {'peak GiB':>9s} {'MFU':>6s}")
    for r in results:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"{r['shape']:14s} {r['seq']:5d} {r['tokens_per_s']:9.0f} {r['s_per_step']:7.3f} "
              f"{r['peak_mem_gib']:9.2f} {mfu:>6s}")  # fmt: skip
    if a.json:
        write_json_atomic(a.json, results)


if __name__ == "__main__":
    main()

"""QLoRA throughput and memory on a CUDA GPU with real architectures at real sizes and random weights.

For each shape (Llama-2-7B, Qwen2.5-1.5B) the script writes a random-weight bf16 checkpoint from the config,
loads it the way `mlalign train` does (``sft.load_model``: NF4, double quantisation, bf16 compute,
``prepare_model_for_kbit_training``, non-reentrant gradient checkpointing), adds LoRA on q_proj,v_proj and runs
``SFTTrainer`` steps with paged 8-bit AdamW on fixed-length random token rows at each sequence length.
Throughput does not depend on weight values.

Reported per (shape, sequence length): tokens/s and s/step over the timed steps (after warm-up), peak GPU memory
(``torch.cuda.max_memory_allocated``, and reserved), the process's peak host RSS, and model FLOPs utilisation.
Model FLOPs per token (`model_flops_per_token`, checked against ``torch.utils.flop_counter`` in
tests/test_bench_qlora.py) of LoRA training on a frozen base: the weight matmuls forward (2 N) and backward to the
activations only (2 N; no weight gradients), N = non-embedding matmul parameters + the LM head; the attention
matmuls (QK^T and PV) forward (4 * layers * seq * q_dim) and backward (twice that: dQ, dK, dP, dV); and the LoRA
matmuls (6 * r * (in + out) per adapted projection: forward, activation and weight gradients). Attention counts
the full seq x seq square although it is causal (the PaLM appendix B / Megatron-LM convention); recomputation by
gradient checkpointing is not counted. Backward includes the first layer's input gradient, which TRL's
``enable_input_require_grads`` (gradient checkpointing with PEFT) makes autograd compute. MFU = model FLOPs/s /
the GPU's dense bf16 peak.

Unsloth publishes ~1.9x the throughput of plain HF QLoRA; this script measures the plain HF path
(transformers + bitsandbytes + PEFT + TRL), so that ratio is the gap. ``--attn flash_attention_2`` (needs the
flash-attn package) and ``--liger`` (needs liger-kernel; fused RoPE/RMSNorm/SwiGLU/cross-entropy) try fused kernels.

``--device cpu`` is a smoke check of the same path (still 4-bit NF4 via bitsandbytes, gradient checkpointing,
LoRA), with what needs CUDA swapped: fp32 compute, ``adamw_torch``, no GPU memory figures (``peak_mem_gib``
is None) and no MFU unless ``--peak-tflops`` is given. Its numbers are not QLoRA-on-GPU figures.

Usage: python bench/bench_qlora_gpu.py [--shapes llama2-7b,qwen2.5-1.5b] [--seq 512,1024] [--batch 4]
       [--steps 10] [--warmup 3] [--attn sdpa] [--liger] [--peak-tflops 989]
       python bench/bench_qlora_gpu.py --device cpu --shapes tiny-llama --seq 64 --batch 2 --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterable
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
    # For smoke runs (--device cpu): seconds per step on a laptop CPU.
    "tiny-llama": (
        "llama",
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 2048,
         "tie_word_embeddings": False},
    ),
}  # fmt: skip
# Dense bf16 peak TFLOP/s by device name fragment (no sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "4090": 165.0, "3090": 71.0}
LORA_R = 16
LORA_TARGETS = ("q_proj", "v_proj")


def write_random_checkpoint(shape: str, out: Path, device: str = "cuda") -> Path:
    """A random-weight bf16 checkpoint of `shape` with a tokenizer-free config (initialised on `device`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, sizes = SHAPES[shape]
    config = AutoConfig.for_model(model_type, **sizes, torch_dtype="bfloat16")
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def model_flops_per_token(config, seq: int, lora_r: int = 0, lora_targets: Iterable[str] = ()) -> float:
    """Model FLOPs per trained token of LoRA on a frozen base at sequence length `seq` (see the module docstring).

    `lora_targets` are projection names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) adapted
    with rank `lora_r` in every layer.
    """
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    kv = config.num_key_value_heads * head_dim
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}  # fmt: skip
    n = layers * sum(i * o for i, o in shapes.values()) + h * config.vocab_size
    attention = layers * 4 * seq * q  # QK^T and PV, the full square
    lora = layers * sum(lora_r * sum(shapes[t]) for t in lora_targets)
    return 2 * n + 2 * n + attention + 2 * attention + 6 * lora


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model name."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        info = Path("/proc/cpuinfo").read_text()
        return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def peak_rss_gib() -> float:
    """The process's peak resident set size so far (host memory, whole process lifetime), in GiB."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib * (1 if sys.platform.startswith("linux") else 1 / 1024) / 2**20, 2)


def run(shape: str, ckpt: Path, seq: int, a: argparse.Namespace) -> dict:
    import bitsandbytes as bnb
    from datasets import Dataset
    from mlalign_trainer import sft
    from mlalign_trainer.callbacks import Avx512Bf16Guard
    from transformers import TrainerCallback
    from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

    from mlalign_tasks.tiny_model import build_tokenizer

    cuda = a.device == "cuda"

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._t)

    # CUDA: QLoRA as `mlalign train` runs it. CPU: the same 4-bit path with fp32 compute and plain AdamW
    # (bf16 autocast and the paged 8-bit optimizer need CUDA).
    dtype = "bfloat16" if cuda else "float32"
    precision = {"optim": "paged_adamw_8bit", "bf16": True} if cuda else {"optim": "adamw_torch", "use_cpu": True}
    model_args = ModelConfig(
        model_name_or_path=str(ckpt), dtype=dtype, load_in_4bit=True, bnb_4bit_quant_type="nf4",
        use_bnb_nested_quant=True, use_peft=True, lora_target_modules=list(LORA_TARGETS), lora_r=LORA_R,
        lora_alpha=32, lora_dropout=0.05, attn_implementation=a.attn,
    )  # fmt: skip
    args = SFTConfig(
        output_dir=str(ckpt.parent / f"trainer-{seq}"), max_steps=a.warmup + a.steps, per_device_train_batch_size=a.batch,
        gradient_accumulation_steps=1, learning_rate=5e-5, **precision,
        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}, max_length=seq,
        save_strategy="no", report_to="none", logging_steps=1000, disable_tqdm=True, use_liger_kernel=a.liger,
    )  # fmt: skip
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = sft.load_model(model_args, args)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(10, model.config.vocab_size, (a.batch * (a.warmup + a.steps), seq), generator=g)
    dataset = Dataset.from_dict({"input_ids": rows.tolist()})
    timer = StepTimer()
    # The rows are token ids already; the tokenizer only supplies the padding id (no row needs padding).
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=build_tokenizer(),
                         peft_config=get_peft_config(model_args), callbacks=[Avx512Bf16Guard(), timer])  # fmt: skip
    trainer.train()
    step_s = sum(timer.times[a.warmup :]) / a.steps
    tokens_s = a.batch * seq / step_s
    name = device_name(a.device)
    peak = a.peak_tflops or (next((v for k, v in PEAK_TFLOPS.items() if k in name), None) if cuda else None)
    flops = model_flops_per_token(model.config, seq, LORA_R, LORA_TARGETS) * tokens_s
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    result = {
        "shape": shape, "seq": seq, "batch": a.batch, "attn": a.attn, "liger": a.liger, "device": name,
        "device_kind": a.device, "s_per_step": round(step_s, 4), "tokens_per_s": round(tokens_s, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
        "peak_rss_gib": peak_rss_gib(),
        "model_tflops_per_s": round(flops / 1e12, 4), "mfu": round(flops / (peak * 1e12), 4) if peak else None,
        "linear4bit_modules": sum(isinstance(m, bnb.nn.Linear4bit) for m in trainer.model.modules()),
        "lora_b_max_abs": max(p.detach().abs().max().item() for p in lora_b) if lora_b else None,
    }  # fmt: skip
    del trainer, model
    if cuda:
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
    p.add_argument(
        "--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke check of the same path (fp32)."
    )
    p.add_argument("--json", type=Path, default=None, help="Also write the results to this JSON file.")
    a = p.parse_args()
    if a.device == "cpu":
        # Hide any GPU before CUDA initialises, so the 4-bit model is placed on the CPU (see sft.kbit_device_map).
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif not torch.cuda.is_available():
        sys.exit(
            "bench_qlora_gpu.py needs a CUDA GPU (bitsandbytes 4-bit QLoRA) and none is visible; run it on a GPU "
            "machine, or pass --device cpu for a smoke check. For CPU numbers use bench/bench_train.py."
        )
    unknown = set(a.shapes.split(",")) - set(SHAPES)
    if unknown:
        sys.exit(f"unknown shape(s) {sorted(unknown)}; known: {', '.join(SHAPES)}")
    results = []
    for shape in a.shapes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = write_random_checkpoint(shape, Path(tmp) / shape, a.device)
            for seq in (int(s) for s in a.seq.split(",")):
                results.append(run(shape, ckpt, seq, a))
                print(json.dumps(results[-1]), flush=True)
    print(f"\n{'shape':14s} {'seq':>5s} {'tok/s':>9s} {'s/step':>7s} {'peak GiB':>9s} {'MFU':>6s}")
    for r in results:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gib']:.2f}" if r["peak_mem_gib"] is not None else "n/a"
        print(f"{r['shape']:14s} {r['seq']:5d} {r['tokens_per_s']:9.0f} {r['s_per_step']:7.3f} {mem:>9s} {mfu:>6s}")
    if a.json:
        write_json_atomic(a.json, results)


if __name__ == "__main__":
    main()

"""QLoRA throughput and memory on a CUDA GPU: a plain HF QLoRA loop against `mlalign train`'s settings, side by side.

Per shape (Llama-2-7B, Qwen2.5-1.5B; random weights, see bench/random_model.py) the base model is written once as a
bf16 checkpoint and loaded once the way `mlalign train` loads it (``sft.load_model``: NF4, double quantisation, bf16
compute, ``prepare_model_for_kbit_training``, non-reentrant gradient checkpointing). Each variant then adds LoRA,
trains and removes it again (``unload``), on the same rows:

- ``plain``: the textbook transformers + PEFT + bitsandbytes QLoRA loop: ``get_peft_model``, random micro-batches
  padded to their longest row, the model's own loss on full logits, bf16 autocast, ``bnb.optim.PagedAdamW8bit``.
- ``mlalign``: ``QTTrainer`` (TRL ``SFTTrainer``) with `mlalign train`'s defaults for CUDA (the parser's, not a copy):
  length-balanced micro-batches (``batch_rebalance``), TRL's fused LM-head loss (no full logits), bf16 LoRA weights,
  PyTorch's cuDNN attention backend off (``--cudnn_attention false``).
- ``padding-free``: the same with ``--padding_free``: each micro-batch is one row without padding.
- ``liger``: the same with ``--use_liger_kernel`` (fused RMSNorm/RoPE/SwiGLU); run last, it patches the model.
- ``plain-no-cudnn``: the plain loop with cuDNN attention off (``enable_cudnn_sdp(False)``); ``mlalign-cudnn``,
  ``liger-cudnn``: those with it on (``--cudnn_attention true``). With cuDNN on, SDPA on an H100 (torch 2.11) picks
  cuDNN, which builds an execution graph on the host for every new batch shape, and variable-length batches are
  all new shapes; off, it takes the flash or memory-efficient kernels. The graphs are cached per process, so a
  variant with cuDNN on runs faster after another has seen the same shapes: compare such variants run first, each in
  a process of its own.

Settings are the 12/24 GB recipes': LoRA r 16 on q_proj,v_proj, micro-batch 4, effective batch 16 (4 accumulation
steps), lr 5e-5. Rows are random token ids of lengths drawn uniformly from [seq/8, seq] (like question-translation
data, whose lengths vary), the first four exactly `seq` long, so the peak memory is that of micro-batches of up to
4 x seq tokens. Throughput counts real (non-padding) tokens per second over the optimizer steps after the warm-up,
so every variant is credited with the same work, whatever padding it also computed.

Model FLOPs per token (``model_flops_per_token``, checked against ``torch.utils.flop_counter`` in
tests/test_bench_qlora.py) of LoRA training on a frozen base: the weight matmuls forward (2 N) and backward to the
activations only (2 N; no weight gradients), N = non-embedding matmul parameters + the LM head; the attention
matmuls (QK^T and PV) forward (4 * layers * seq * q_dim) and backward (twice that); the LoRA matmuls (6 * r * (in +
out) per adapted projection). Attention counts the full square of each row's own length (PaLM appendix B);
recomputation by gradient checkpointing and padding are not counted. MFU = model FLOPs/s / the GPU's dense bf16 peak.

Peak memory is ``torch.cuda.max_memory_allocated`` (and reserved) from just before the variant's first step, with the
4-bit base model resident; the paged optimizer's state lives in CUDA unified memory outside PyTorch's allocator (for
LoRA r 16 on q_proj,v_proj of a 7B model: about 8 MB).

``--profile`` records where the time goes (GPU busy fraction, kernel launches per step, top ops) under
torch.profiler, whose overhead makes its own throughput figures worthless: profile in a run of its own.

``--device cpu`` is a smoke check of the same code (4-bit NF4 on the CPU, fp32 compute, AdamW): its numbers are not
QLoRA-on-GPU figures. Results are written to ``--json`` after every variant, so a run cut short keeps what it has.

Usage: python bench/bench_qlora_gpu.py [--shapes llama2-7b:1024+512,qwen2.5-1.5b:1024]
       [--variants plain,mlalign,padding-free,liger,liger-cudnn] [--steps 3] [--warmup 1] [--json PATH]
       python bench/bench_qlora_gpu.py --device cpu --shapes tiny-llama:64 --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import torch
from random_model import SHAPES, write_random_checkpoint

from mlalign_tasks.files.atomic import write_json_atomic

# Dense bf16 peak TFLOP/s by device name fragment (no sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "4090": 165.0, "3090": 71.0}
VARIANTS = ("plain", "plain-no-cudnn", "mlalign", "mlalign-cudnn", "padding-free", "liger", "liger-cudnn")
MICRO_BATCH, EFFECTIVE_BATCH = 4, 16
FIRST_ID = 16  # random rows use ids >= this: never a special token (padding included)


def model_flops_per_token(config, seq: int, lora_r: int = 0, lora_targets: Iterable[str] = ()) -> float:
    """Model FLOPs per trained token of LoRA on a frozen base in a row of `seq` tokens (see the module docstring).

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


def bench_rows(vocab: int, seq: int, n: int, seed: int = 0) -> list[list[int]]:
    """`n` rows of random ids, lengths uniform in [seq/8, seq], the first four `seq` long."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(2, seq // 8), seq + 1, (n,), generator=g)
    lengths[: min(n, MICRO_BATCH)] = seq
    return [torch.randint(FIRST_ID, vocab, (int(k),), generator=g).tolist() for k in lengths]


def trainer_settings(ckpt: Path, out: Path, seq: int, steps: int, a: argparse.Namespace, variant: str):
    """(qt, training_args, model_args) exactly as `mlalign train` parses them, plus the benchmark's flags."""
    from mlalign_trainer import sft

    flags = [
        "--model_name_or_path", str(ckpt), "--output_dir", str(out), "--max_steps", str(steps),
        "--per_device_train_batch_size", str(MICRO_BATCH), "--effective_batch_size", str(EFFECTIVE_BATCH),
        "--max_length", str(seq), "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1",
        "--disable_tqdm", "true", "--attn_implementation", a.attn,
    ]  # fmt: skip
    if a.device == "cpu":  # the same 4-bit path on the CPU (fp32 compute): a smoke check
        flags += ["--load_in_4bit", "true", "--gradient_checkpointing", "true"]
    if variant == "padding-free":
        flags += ["--padding_free", "true"]
    if base_variant(variant) == "liger":
        flags += ["--use_liger_kernel", "true"]
    if variant.endswith("-cudnn") and not variant.endswith("-no-cudnn"):
        flags += ["--cudnn_attention", "true"]
    qt, args, model_args = sft.parse_args(flags)
    sft.apply_batch_size(qt, args)
    args.include_num_input_tokens_seen = "non_padding"  # the clock's token count (the parser takes only a bool)
    if args.padding_free:
        args.max_length = None  # as `mlalign train`: the rows are <= seq already
    return qt, args, model_args


class StepClock:
    """Wall time and tokens seen at the end of every optimizer step (CUDA-synchronised)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.times: list[float] = []
        self.tokens: list[int] = []
        self.losses: list[float] = []

    def start(self) -> None:
        self._sync()
        self.times, self.tokens = [time.perf_counter()], [0]

    def step(self, tokens_so_far: int) -> None:
        self._sync()
        self.times.append(time.perf_counter())
        self.tokens.append(int(tokens_so_far))

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def clock_callback(clock: StepClock):
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            clock.start()

        def on_step_end(self, args, state, control, **kw):
            clock.step(state.num_input_tokens_seen)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                clock.losses.append(float(logs["loss"]))

    return Clock()


def run_mlalign(model, rows, args, model_args, clock: StepClock):
    """Train `model` with `mlalign train`'s trainer; returns the PEFT-wrapped model."""
    from datasets import Dataset
    from mlalign_trainer.callbacks import Avx512Bf16Guard
    from mlalign_trainer.qt_trainer import QTTrainer
    from transformers import PrinterCallback
    from trl import get_peft_config

    from mlalign_tasks.models.tiny_model import build_tokenizer

    # The rows are token ids already; the tokenizer only supplies the padding id (no row contains it).
    trainer = QTTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": rows}),
        processing_class=build_tokenizer(), peft_config=get_peft_config(model_args),
        callbacks=[Avx512Bf16Guard(), clock_callback(clock)],
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # a line per logged step is noise here
    trainer.train()
    peft_model = trainer.model
    del trainer
    return peft_model


def run_plain(model, rows, args, model_args, clock: StepClock):
    """The textbook QLoRA loop on the same rows and settings; returns the PEFT-wrapped model."""
    from peft import get_peft_model
    from trl import get_peft_config

    cuda = clock.cuda
    peft_model = get_peft_model(model, get_peft_config(model_args))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    if cuda:
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(params, lr=args.learning_rate)
    else:
        optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    device = next(peft_model.parameters()).device
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(rows), generator=g).tolist()
    micro = [order[i : i + MICRO_BATCH] for i in range(0, len(order), MICRO_BATCH)]
    accumulation = args.gradient_accumulation_steps
    peft_model.train()
    clock.start()
    seen = 0
    for step in range(len(micro) // accumulation):
        total = 0.0
        for chunk in micro[step * accumulation : (step + 1) * accumulation]:
            width = max(len(rows[i]) for i in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for j, i in enumerate(chunk):
                ids[j, : len(rows[i])] = torch.tensor(rows[i])
                mask[j, : len(rows[i])] = 1
            labels = ids.masked_fill(mask == 0, -100)
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss / accumulation
            loss.backward()
            total += loss.item()
            seen += int(mask.sum())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.losses.append(total)
        clock.step(seen)
    del optimizer
    return peft_model


def run_variant(variant: str, model, ckpt: Path, shape: str, seq: int, a: argparse.Namespace, work: Path) -> dict:
    """One variant on the loaded base model (LoRA added, trained, removed); its figures."""
    import bitsandbytes as bnb

    cuda = a.device == "cuda"
    steps = a.warmup + a.steps
    _, args, model_args = trainer_settings(ckpt, work / f"{shape}-{seq}-{variant}", seq, steps, a, variant)
    rows = bench_rows(model.config.vocab_size, seq, EFFECTIVE_BATCH * steps)
    clock = StepClock(cuda)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    runner = run_plain if base_variant(variant) == "plain" else run_mlalign
    with profiled(a.profile, cuda) as prof, cudnn_attention_off(variant.endswith("-no-cudnn")):
        peft_model = runner(model, rows, args, model_args, clock)
    if len(clock.times) != steps + 1:
        raise RuntimeError(f"{variant}: {len(clock.times) - 1} optimizer steps timed, expected {steps}")
    timed_s = clock.times[-1] - clock.times[a.warmup]
    tokens = clock.tokens[-1] - clock.tokens[a.warmup]
    name = device_name(a.device)
    peak = a.peak_tflops or (next((v for k, v in PEAK_TFLOPS.items() if k in name), None) if cuda else None)
    lengths = [len(r) for r in rows]
    lora = (model_args.lora_r, model_args.lora_target_modules)
    flops_per_token = sum(k * model_flops_per_token(model.config, k, *lora) for k in lengths) / sum(lengths)
    flops = flops_per_token * tokens / timed_s
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    result = {
        "shape": shape, "seq": seq, "variant": variant, "micro_batch": MICRO_BATCH,
        "effective_batch": EFFECTIVE_BATCH, "timed_steps": a.steps, "attn": a.attn, "device": name,
        "device_kind": a.device, "s_per_step": round(timed_s / a.steps, 4), "tokens_per_s": round(tokens / timed_s, 1),
        "tokens_timed": tokens, "mean_row_tokens": round(sum(lengths) / len(lengths), 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
        "peak_rss_gib": peak_rss_gib(), "model_tflops_per_s": round(flops / 1e12, 4),
        "mfu": round(flops / (peak * 1e12), 4) if peak else None,
        "first_loss": round(clock.losses[0], 4) if clock.losses else None,
        "last_loss": round(clock.losses[-1], 4) if clock.losses else None,
        "linear4bit_modules": sum(isinstance(m, bnb.nn.Linear4bit) for m in peft_model.modules()),
        "lora_b_max_abs": max(p.detach().abs().max().item() for p in lora_b) if lora_b else None,
    }  # fmt: skip
    if prof is not None:
        result["profile"] = profile_summary(prof, clock.times[-1] - clock.times[0], steps)
    base = peft_model.unload()  # the base model without LoRA, for the next variant
    if base is not model:
        raise RuntimeError("unloading LoRA did not give back the base model")
    return result


def base_variant(variant: str) -> str:
    """plain, mlalign, padding-free or liger: the variant without its cuDNN suffix."""
    return variant.removesuffix("-no-cudnn").removesuffix("-cudnn")


@contextmanager
def cudnn_attention_off(active: bool):
    """PyTorch's cuDNN SDPA backend off for the block when `active` (restored after)."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(before and not active)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


@contextmanager
def profiled(enabled: bool, cuda: bool):
    """torch.profiler over the block (CPU ops, and CUDA kernels on a GPU), or nothing."""
    if not enabled:
        yield None
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        yield prof


def profile_summary(prof, wall_s: float, steps: int) -> dict:
    """Where the time went: GPU kernel time over wall time, kernel launches per step, the top ops."""
    events = prof.key_averages()

    def gpu(e) -> float:  # microseconds of the op's own kernels
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0

    print(events.table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    top_gpu = sorted(events, key=gpu, reverse=True)[:8]
    top_cpu = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return {
        "wall_s": round(wall_s, 2),
        "gpu_busy_fraction": round(sum(gpu(e) for e in events) / 1e6 / wall_s, 3),
        "kernel_launches_per_step": round(launches / steps),
        "top_gpu_ops_ms": {e.key[:60]: round(gpu(e) / 1e3, 1) for e in top_gpu},
        "top_cpu_ops_ms": {e.key[:60]: round(e.self_cpu_time_total / 1e3, 1) for e in top_cpu},
    }


def load_base(ckpt: Path, seq: int, a: argparse.Namespace):
    """The 4-bit base model as `mlalign train` loads it; (model, seconds)."""
    from mlalign_trainer import sft

    _, args, model_args = trainer_settings(ckpt, ckpt.parent / "load", seq, 1, a, "mlalign")
    start = time.perf_counter()
    model = sft.load_model(model_args, args)
    return model, round(time.perf_counter() - start, 2)


def parse_shapes(text: str) -> list[tuple[str, list[int]]]:
    """'llama2-7b:1024+512,qwen2.5-1.5b:1024' -> [(shape, [seq, ...]), ...]."""
    out = []
    for item in text.split(","):
        shape, _, seqs = item.partition(":")
        if shape not in SHAPES:
            sys.exit(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
        try:
            out.append((shape, [int(s) for s in (seqs or "1024").split("+")]))
        except ValueError:
            sys.exit(f"bad sequence lengths in {item!r}; e.g. llama2-7b:1024+512")
    return out


def available_variants(names: list[str], device: str) -> tuple[list[str], dict[str, str]]:
    """(variants to run, skipped variant -> reason)."""
    import importlib.util

    skipped = {}
    if device != "cuda" or importlib.util.find_spec("liger_kernel") is None:
        for name in (v for v in names if base_variant(v) == "liger"):
            skipped[name] = "needs a CUDA GPU and the liger-kernel package"
    run = sorted((v for v in dict.fromkeys(names) if v in VARIANTS and v not in skipped), key=lambda v: "liger" in v)
    return run, skipped  # in the order given, liger last: it patches the model


def print_table(results: list[dict]) -> None:
    print(f"\n{'shape':14s} {'seq':>5s} {'variant':16s} {'tok/s':>9s} {'x plain':>8s} {'peak GiB':>9s} {'MFU':>6s}")
    for r in results:
        if "variant" not in r:
            continue
        base = next((b for b in results if b.get("variant") == "plain" and b["shape"] == r["shape"]
                     and b["seq"] == r["seq"]), None)  # fmt: skip
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}" if base else "n/a"
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gib']:.2f}" if r["peak_mem_gib"] is not None else "n/a"
        print(f"{r['shape']:14s} {r['seq']:5d} {r['variant']:16s} {r['tokens_per_s']:9.0f} {ratio:>8s} {mem:>9s} "
              f"{mfu:>6s}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="llama2-7b:1024+512,qwen2.5-1.5b:1024", help="SHAPE:SEQ[+SEQ...],...")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=3, help="Timed optimizer steps (each of 16 rows).")
    p.add_argument("--warmup", type=int, default=1, help="Untimed optimizer steps first.")
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke check of the same code.")
    p.add_argument("--checkpoint-dir", type=Path, default=None, help="Where to write the random checkpoints.")
    p.add_argument("--json", type=Path, default=None, help="Write the results here (after every variant).")
    p.add_argument("--profile", action="store_true", help="torch.profiler over each variant (slows it: no timings).")
    a = p.parse_args()
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before CUDA initialises: the 4-bit model goes to the CPU
    elif not torch.cuda.is_available():
        sys.exit(
            "bench_qlora_gpu.py needs a CUDA GPU (bitsandbytes 4-bit QLoRA) and none is visible; run it on a GPU "
            "machine, or pass --device cpu for a smoke check. For CPU numbers use bench/bench_train.py."
        )
    variants, skipped = available_variants([v.strip() for v in a.variants.split(",")], a.device)
    if unknown := set(a.variants.split(",")) - set(VARIANTS):
        sys.exit(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    results: list[dict] = [{"skipped": skipped}] if skipped else []

    def save() -> None:
        if a.json:
            write_json_atomic(a.json, results)

    for shape, seqs in parse_shapes(a.shapes):
        with tempfile.TemporaryDirectory(dir=a.checkpoint_dir) as tmp:
            ckpt = Path(tmp) / shape
            timing = write_random_checkpoint(shape, ckpt, a.device, tokenizer=False)
            model, load_s = load_base(ckpt, seqs[0], a)
            results.append({"shape": shape, "checkpoint": timing, "load_s": load_s})
            for variant in variants:  # liger last: it patches the model's modules for good
                for seq in seqs:
                    results.append(run_variant(variant, model, ckpt, shape, seq, a, Path(tmp)))
                    print(json.dumps(results[-1]), flush=True)
                    save()
            del model
            gc.collect()
            if a.device == "cuda":
                torch.cuda.empty_cache()
    print_table(results)
    save()


if __name__ == "__main__":
    main()

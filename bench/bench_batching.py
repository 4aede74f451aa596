"""CPU training throughput by batching: random padded micro-batches vs length-balanced ones vs padding-free.

The data are real question-translation pairs (GSM8K questions in 7 languages, 64 each), whose lengths vary about
twofold. Every variant trains the same examples per optimizer step (effective batch 16 = 4 micro-batches of 4),
so the updates are the same (tests/test_trainer.py checks it) and only the cost differs:

- ``random``: TRL's default; each micro-batch is padded to its longest example (the baseline);
- ``batch_rebalance``: our default; the effective batch is drawn at random, then split into micro-batches of
  similar lengths (transformers' ``BatchRebalanceSampler``);
- ``padding_free``: one flattened row per micro-batch; with SDPA on the CPU this attends through a dense
  block-diagonal mask over the whole row, so it is expected to lose here (its gain needs FlashAttention varlen).

Two model sizes: the tiny test model (hidden 64) and a wider 4-layer one (hidden 512, ~14M parameters), where the
matrix products dominate as they do in real models. Variants alternate within each repeat; the best run counts.

Usage: python bench/bench_batching.py [--steps 4] [--repeats 2] [--hidden 64 512] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("MLALIGN_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLALIGN_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

from _rows import Row, add_json_option, throughput, write_rows  # noqa: E402
from mlalign_trainer import qt_data, sft  # noqa: E402

from mlalign_tasks.models.tiny_model import DEFAULT_SIZES, build_tiny_model  # noqa: E402

VARIANTS = {
    "random": ("--train_sampling_strategy", "random"),
    "batch_rebalance": ("--train_sampling_strategy", "batch_rebalance"),
    "padding_free": ("--train_sampling_strategy", "random", "--padding_free", "true"),
}


def make_model(root: Path, hidden: int) -> Path:
    """The tiny model, or a wider one of the same family (4 layers, 4 heads, MLP 3x hidden)."""
    if hidden == DEFAULT_SIZES["hidden_size"]:
        return build_tiny_model(root / "tiny")
    return build_tiny_model(root / f"h{hidden}", hidden_size=hidden, intermediate_size=3 * hidden,
                            num_attention_heads=4, num_key_value_heads=4)  # fmt: skip


def padding_share(trainer, steps: int) -> float:
    """Padded positions / all positions over the micro-batches of the first `steps` optimizer steps."""
    pad = total = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if i == steps * trainer.args.gradient_accumulation_steps:
            break
        total += batch["input_ids"].numel()
        if "attention_mask" in batch:
            pad += batch["input_ids"].numel() - int(batch["attention_mask"].sum())
    return pad / total


def run_variant(model: Path, out: Path, dataset, steps: int, extra: tuple[str, ...]) -> tuple[float, float]:
    """(examples/s, padding share) of one training run."""
    argv = [
        "--model_name_or_path", str(model), "--output_dir", str(out), "--max_steps", str(steps),
        "--per_device_train_batch_size", "4", "--effective_batch_size", "16", "--save_strategy", "no",
        "--disable_tqdm", "true", "--logging_steps", str(steps), *extra,
    ]  # fmt: skip
    qt, args, model_args = sft.parse_args(argv)
    sft.apply_batch_size(qt, args)
    trainer = sft.build_trainer(qt, args, model_args, dataset)
    share = padding_share(trainer, steps)
    return trainer.train().metrics["train_samples_per_second"], share


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 512])
    add_json_option(p)
    a = p.parse_args()

    dataset = qt_data.build_qt_dataset("gsm8k", "de,es,fr,ja,ru,sw,zh", 64, seed=0).dataset
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for hidden in a.hidden:
            model = make_model(tmp, hidden)
            best = dict.fromkeys(VARIANTS, 0.0)
            share: dict[str, float] = {}
            for r in range(a.repeats):
                for name, extra in VARIANTS.items():
                    speed, share[name] = run_variant(model, tmp / f"{hidden}-{name}-{r}", dataset, a.steps, extra)
                    best[name] = max(best[name], speed)
            size = f"hidden {hidden}, {a.steps} steps x 16 examples, best of {a.repeats}"
            print(f"\n{size}")
            for name in VARIANTS:
                print(f"  {name:16s} examples/s {best[name]:7.2f}  padding {share[name]:6.1%}  "
                      f"time ratio to random {best['random'] / best[name]:.3f}")  # fmt: skip
            for name in ("batch_rebalance", "padding_free"):
                rows.append(throughput("batching", f"{name}, hidden {hidden}: examples/s (ratio = time vs random)",
                                       best[name], best["random"], "random padded micro-batches", "examples/s",
                                       f"padding {share[name]:.0%} vs {share['random']:.0%}; {size}"))  # fmt: skip
    write_rows(a.json, rows)


if __name__ == "__main__":
    main()

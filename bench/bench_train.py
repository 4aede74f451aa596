"""CPU training throughput on the tiny model: `mlalign train` vs a bare TRL `SFTTrainer` script, same settings.

Two comparisons, alternating A/B runs in one process (on a shared machine the fastest run is the robust figure):

1. training loop: ``trainer.train()`` of our trainer (``sft.build_trainer``: mlalign's defaults, pad token, over-long
   filter, AVX512-BF16 guard and SIGINT callbacks) vs ``trl.SFTTrainer`` built directly from the model path with
   the same ``SFTConfig`` and ``LoraConfig``; steps/s and tokens/s (TRL's ``num_tokens``) from the trainers' metrics.
2. whole run: ``sft.main`` (run-directory checks, training, atomic adapter save, metadata) vs the bare script
   (``SFTTrainer`` + ``train`` + ``save_model``), wall time; both read the same dataset saved by ``build-qt``.

Usage: python bench/bench_train.py [--model DIR|FILE.gguf|gemma-3-270m] [--steps 30] [--batch 8] [--max-length 256]
       [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("MLALIGN_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLALIGN_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
warnings.filterwarnings("ignore", category=FutureWarning)

from _rows import add_json_option, cost, throughput, write_rows  # noqa: E402
from mlalign_trainer import qt_data, sft  # noqa: E402

from mlalign_tasks.models.gguf_models import resolve_model  # noqa: E402
from mlalign_tasks.models.tiny_model import build_tiny_model  # noqa: E402


def settings(model: Path, out: Path, steps: int, batch: int, max_length: int) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--output_dir", str(out), "--max_steps", str(steps),
        "--per_device_train_batch_size", str(batch), "--effective_batch_size", str(batch),
        "--max_length", str(max_length), "--learning_rate", "1e-3", "--logging_steps", str(steps),
        "--save_strategy", "no", "--disable_tqdm", "true",
    ]  # fmt: skip


def bare_trainer(argv: list[str], dataset):
    """The plain TRL script: SFTTrainer from the model path with the same parsed SFTConfig and LoRA config."""
    from trl import SFTTrainer, get_peft_config

    _, args, model_args = sft.parse_args(argv)
    args.model_init_kwargs = {"dtype": model_args.dtype}
    return SFTTrainer(model=model_args.model_name_or_path, args=args, train_dataset=dataset,
                      peft_config=get_peft_config(model_args))  # fmt: skip


def ours_trainer(argv: list[str], dataset):
    qt, args, model_args = sft.parse_args(argv)
    sft.apply_batch_size(qt, args)
    return sft.build_trainer(qt, args, model_args, dataset)


def loop_stats(trainer) -> tuple[float, float]:
    """(steps/s, tokens/s) of one ``train()``."""
    metrics = trainer.train().metrics
    tokens = max(e.get("num_tokens", 0) for e in trainer.state.log_history)
    return metrics["train_steps_per_second"], tokens / metrics["train_runtime"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder, .gguf file or gemma-3-270m (default: the tiny model)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    add_json_option(p)
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(resolve_model(a.model)) if a.model else build_tiny_model(tmp / "tiny")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model)
        build = qt_data.build_qt_dataset("gsm8k", "de,fr", 200, seed=0)
        build.dataset, _ = sft.drop_overlong(build.dataset, tok, a.max_length)  # both see the same examples
        data_dir = qt_data.save_build(build, tmp / "qt")
        dataset = build.dataset.flatten_indices()

        loop: dict[str, list[tuple[float, float]]] = {"mlalign": [], "bare TRL": []}
        whole: dict[str, list[float]] = {"mlalign": [], "bare TRL": []}
        for r in range(a.repeats):
            for name, make in (("mlalign", ours_trainer), ("bare TRL", bare_trainer)):
                loop[name].append(loop_stats(make(settings(model, tmp / f"loop-{name}-{r}", a.steps, a.batch,
                                                           a.max_length), dataset)))  # fmt: skip
            argv = settings(model, tmp / f"main-{r}", a.steps, a.batch, a.max_length) + [
                "--dataset_path",
                str(data_dir),
            ]
            t0 = time.perf_counter()
            sft.main(argv)
            whole["mlalign"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            trainer = bare_trainer(settings(model, tmp / f"bare-{r}", a.steps, a.batch, a.max_length),
                                   qt_data.load_build(data_dir)[0])  # fmt: skip
            trainer.train()
            trainer.save_model(str(tmp / f"bare-{r}"))
            whole["bare TRL"].append(time.perf_counter() - t0)

    print(f"\n{a.model or 'tiny model'}, {a.steps} steps x batch {a.batch}, max_length {a.max_length}, {len(dataset)} examples, "
          f"{a.repeats} alternating repeats (best / median)")  # fmt: skip
    for name in loop:
        sps = [s for s, _ in loop[name]]
        tps = [t for _, t in loop[name]]
        print(f"  loop  {name:9s} steps/s {max(sps):6.2f} / {statistics.median(sps):6.2f}   "
              f"tokens/s {max(tps):8.0f} / {statistics.median(tps):8.0f}")  # fmt: skip
    for name in whole:
        print(f"  whole {name:9s} wall s  {min(whole[name]):6.2f} / {statistics.median(whole[name]):6.2f}")
    print("  all runs (loop steps/s):", {name: [round(s, 2) for s, _ in runs] for name, runs in loop.items()})
    best = {name: max(s for s, _ in loop[name]) for name in loop}
    print(f"  time ratio, training loop (ours / bare TRL, best): {best['bare TRL'] / best['mlalign']:.3f}x")
    print(f"  time ratio, whole run (ours / bare TRL, best): {min(whole['mlalign']) / min(whole['bare TRL']):.3f}x")
    size = (
        f"{a.model or 'tiny model'}, {a.steps} steps x batch {a.batch}, max_length {a.max_length}, best of {a.repeats}"
    )
    best_tps = {name: max(t for _, t in loop[name]) for name in loop}
    bare = "bare TRL SFTTrainer"
    write_rows(
        a.json,
        [
            throughput("train", "training loop steps/s (ratio = time ours/bare)", best["mlalign"], best["bare TRL"],
                       bare, "steps/s", size),
            throughput("train", "training loop tokens/s (ratio = time ours/bare)", best_tps["mlalign"],
                       best_tps["bare TRL"], bare, "tokens/s", size),
            cost("train", "whole run incl. save (ours/bare)", min(whole["mlalign"]), min(whole["bare TRL"]), bare,
                 "s", "sft.main vs SFTTrainer + train + save_model"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

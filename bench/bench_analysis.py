"""Throughput of the analyses: one forward pass per batch (mlalign) vs a naive re-run of the model per layer.

    .venv/bin/python bench/bench_analysis.py                     # the tiny model, built in a temp dir
    .venv/bin/python bench/bench_analysis.py --model M --device cuda --items 64
    .venv/bin/python bench/bench_analysis.py --items 8 --json rows.json      # also write bench/_rows.py rows

Both paths go through the same code (``run_batches``, ``LogitLens``, ``mean_pooled``); the naive
baseline runs every batch once per layer and keeps only that layer. The script checks that both
give the same numbers and prints items/s (prompts or sentences per second, forward + reduction).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("MLALIGN_OFFLINE", "1")
os.environ.setdefault("MLALIGN_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

from _rows import add_json_option, throughput, write_rows  # noqa: E402

from mlalign_tasks.analysis import paper_items  # noqa: E402
from mlalign_tasks.analysis.hidden_states import Batch, load_model, run_batches  # noqa: E402
from mlalign_tasks.analysis.logit_lens import LogitLens  # noqa: E402
from mlalign_tasks.analysis.pca import mean_pooled  # noqa: E402
from mlalign_tasks.models.model_loading import ModelSpec  # noqa: E402
from mlalign_tasks.tasks.languages import PAPER_LANGS, parse_langs  # noqa: E402


def lens_one_pass(lm, lens: LogitLens, prompts: list[str], batch_size: int) -> torch.Tensor:
    with lens.capturing():
        return run_batches(lm, prompts, lambda b: {"p": lens.logits(b).softmax(-1).transpose(0, 1)}, batch_size)["p"]


def lens_per_layer(lm, lens: LogitLens, prompts: list[str], batch_size: int) -> torch.Tensor:
    """Baseline: one full forward per layer, decoding only that layer."""
    last = lm.num_layers

    def reducer(layer: int):
        def reduce(batch: Batch) -> dict[str, torch.Tensor]:
            h = lens.normed_last if layer == last else lens.apply_norm(batch.hidden_states[layer][:, -1, :])
            return {"p": lens.head(h).softmax(-1)}

        return reduce

    with lens.capturing():
        per = [run_batches(lm, prompts, reducer(layer), batch_size)["p"] for layer in range(last + 1)]
    return torch.stack(per, dim=1)


def timed(fn, *args) -> tuple[float, torch.Tensor]:
    fn(*args)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model id or directory (default: build the tiny model)")
    parser.add_argument("--items", type=int, default=32, help="items per language")
    parser.add_argument("--langs", default="en,de,sw")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    add_json_option(parser)
    args = parser.parse_args()
    langs = parse_langs(args.langs, PAPER_LANGS)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from mlalign_tasks.models.tiny_model import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny"))
        lm = load_model(ModelSpec(model, device=args.device))
        lens = LogitLens(lm.model)
        _, items = paper_items.prompts("snli", langs, args.items, seed=0)
        prompts = [it["prompt"] for lang in langs for it in items[lang]]
        _, texts = paper_items.sentences("snli", langs, args.items, seed=0)
        sentences = [t for lang in langs for t in texts[lang]]
        layers = list(range(lm.num_layers + 1))

        rows = []
        t_fast, fast = timed(lens_one_pass, lm, lens, prompts, args.batch_size)
        t_slow, slow = timed(lens_per_layer, lm, lens, prompts, args.batch_size)
        assert torch.allclose(fast, slow, atol=1e-5), "logit lens: one-pass and per-layer results differ"
        rows.append(("logit lens", len(prompts), t_fast, t_slow))

        def pooled_per_layer(lm, texts, bs):
            return torch.cat([mean_pooled(lm, texts, [layer], bs) for layer in layers], dim=1)

        t_fast, fast = timed(mean_pooled, lm, sentences, layers, args.batch_size)
        t_slow, slow = timed(pooled_per_layer, lm, sentences, args.batch_size)
        assert torch.allclose(fast, slow, atol=1e-5), "pca: one-pass and per-layer results differ"
        rows.append(("pca pooling", len(sentences), t_fast, t_slow))

    print(f"model {model} ({lm.num_layers} layers), device {lm.device}, batch size {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'analysis':<12} {'items':>5} {'one pass items/s':>17} {'per layer items/s':>18} {'speed-up':>9}")
    for name, n, fast_s, slow_s in rows:
        print(f"{name:<12} {n:>5} {n / fast_s:>17.1f} {n / slow_s:>18.1f} {slow_s / fast_s:>8.1f}x")
    note = f"{lm.num_layers + 1} layers, batch size {args.batch_size}, device {lm.device}"
    write_rows(
        args.json,
        [
            throughput("analysis", f"{name} items/s (ratio = time one pass/per layer)", n / fast_s, n / slow_s,
                       "re-run per layer", "items/s", f"{n} items, {note}")
            for name, n, fast_s, slow_s in rows
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

"""How much QAlign's two training details that the ``qalign`` recipe does not reproduce change its training.

QAlign's ``finetune.py`` (NJUNLP/QAlign @ a65ee63, transformers 4.29) differs from mlalign's trainer (current TRL and
transformers) in two ways; this script measures each on the recipe's own stage-I data (QAlign's GSM8K question
translations from the data mirror, in the Alpaca template of ``prompt_format: qalign``, truncated at 512 tokens):

- **Loss averaging.** transformers 4.29 averages the loss over each micro-batch's response tokens, then over the
  micro-batches of an optimizer step (accumulation steps x processes); current transformers divides the summed loss
  by the response tokens of the whole step. A token weighs ``mean(n) / n`` times as much upstream as here (``n``: the
  response tokens of its micro-batch). Reported: that ratio over every token of an epoch (min / median / max), for
  the recipe's batches (4 x 32 accumulation, one process) and upstream's (2 x 8 accumulation x 8 processes); and on
  real models, over the same accumulated batches, both losses and the cosine similarity of the two LoRA gradients.
- **The ``<pad>`` row.** Upstream adds ``<pad>`` to a tokenizer without one and resizes the embeddings, the new rows
  set to the mean of the others; its logit then takes part in every softmax. Reported: the loss with and without
  that extra output row on the same batches, and the probability the extra row takes.

    MLALIGN_DATA_DIR=../shared/data python bench/bench_qalign_loss.py --model tiny --steps 2
    python bench/bench_qalign_loss.py --model mistral --steps 0   # token weights with a LLaMA-like tokenizer
    python bench/bench_qalign_loss.py --model gemma-3-270m --steps 1   # needs mlalign[gemma]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from mlalign_trainer import recipes
from mlalign_trainer.qt_data import build_qt_dataset

from mlalign_tasks.errors import DataError
from mlalign_tasks.files.atomic import write_json_atomic
from mlalign_tasks.models.gguf_models import resolve_model

# (per-device batch, micro-batches per optimizer step): the recipe's 4 x 32 on one process; upstream's
# finetune.sh: --per_device_train_batch_size 2 --gradient_accumulation_steps 8 on 8 processes (torchrun)
LAYOUTS = {"recipe": (4, 32), "upstream": (2, 64)}
# mlalign's LoRA defaults (r 16, alpha 32 on q_proj,v_proj) without dropout, so that both rules see the same forward
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def mistral_tokenizer(folder: Path) -> str:
    """Mistral-7B's SentencePiece tokenizer (LLaMA-2's kind, 32k) from the mistral-common wheel `make install` downloads
    (tests/tokenizer_wheels.txt), written to `folder` as a Llama tokenizer: for the token counts only."""
    wheel = Path(sys.prefix) / "test-wheels" / "mistral_common-1.13.1-py3-none-any.whl"
    if not wheel.is_file():
        raise SystemExit(f"{wheel} is missing; run `make install`")
    folder.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        (folder / "tokenizer.model").write_bytes(archive.read("mistral_common/data/tokenizer.model.v1"))
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return str(folder)


def recipe_settings() -> dict:
    """The qalign recipe's stage-I flags (shared ones and the stage's)."""
    path = recipes.recipe_path("qalign")
    return recipes.stage_flags(recipes.read_recipe(path), "question", path)


def stage_one_rows(settings: dict) -> tuple[list[dict], list[str]]:
    """The recipe's stage-I prompt/completion rows for the languages the data mirror holds, and those languages."""
    rows, langs = [], []
    for lang in settings["languages"].split(","):
        try:
            build = build_qt_dataset("gsm8k", lang, None, seed=settings["seed"], fmt="qalign", clean=False)
        except DataError:
            continue  # not in the mirror (bn, th are fetched with `mlalign data fetch`)
        rows += list(build.dataset)
        langs.append(lang)
    return rows, langs


def tokenize(tokenizer, rows: list[dict], max_length: int) -> list[tuple[list[int], int]]:
    """(input ids, number of prompt ids) per row: prompt (with the tokenizer's BOS), completion and EOS, truncated
    at `max_length`; the loss is on the ids after the prompt."""
    prompts = tokenizer([row["prompt"] for row in rows])["input_ids"]
    completions = tokenizer([row["completion"] for row in rows], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id]
    return [((p + c + eos)[:max_length], len(p)) for p, c in zip(prompts, completions, strict=True)]


def steps(n: int, per_device: int, micro: int, seed: int) -> list[list[list[int]]]:
    """A random epoch (seeded) cut into optimizer steps of `micro` micro-batches of `per_device` row indices."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    size = per_device * micro
    return [
        [order[s + m : s + m + per_device] for m in range(0, size, per_device)] for s in range(0, n - size + 1, size)
    ]


def weight_ratios(examples: list[tuple[list[int], int]], layout: list[list[list[int]]]) -> dict:
    """Per response token, upstream's weight over the current one (``mean(n) / n`` of its micro-batch): quantiles."""
    ratios: list[float] = []
    empty = 0  # micro-batches truncated to no response token: upstream's mean over none is NaN
    for step in layout:
        counts = [sum(max(len(examples[i][0]) - examples[i][1], 0) for i in micro) for micro in step]
        mean = sum(counts) / len(counts)
        empty += counts.count(0)
        for n in counts:
            ratios += [mean / n] * n if n else []
    ratios.sort()
    return {
        "steps": len(layout),
        "empty_micro_batches": empty,
        "tokens": len(ratios),
        "min": ratios[0],
        "median": statistics.median(ratios),
        "max": ratios[-1],
        "p05": ratios[len(ratios) // 20],
        "p95": ratios[len(ratios) * 19 // 20],
    }


def model_figures(model_path: str, examples, layout, device: str) -> dict:
    """On the real model with a fresh LoRA adapter, per optimizer step of `layout`: both losses, the cosine of the
    two gradients and their norm ratio; and the loss with upstream's mean-initialised extra output row."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device)
    head = base.get_output_embeddings().weight.detach()
    extra_row = head.mean(0)  # smart_tokenizer_and_embedding_resize: the new row is the mean of the others
    model = get_peft_model(base, LoraConfig(**LORA, task_type="CAUSAL_LM"))
    # B starts at zero (no gradient for A then): a small random B, so that both factors have gradients
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for step in layout:
        started = time.perf_counter()
        sums, counts, grads, pad_sums, pad_mass = [], [], [], [], 0.0
        for micro in step:
            batch = [examples[i] for i in micro]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in batch], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
            # positions whose next token is a response token (prompt length - 1 up to the last but one)
            where = torch.zeros_like(mask, dtype=torch.bool)
            for r, (ids, prompt) in enumerate(batch):
                where[r, prompt - 1 : len(ids) - 1] = True
            targets = input_ids[:, 1:][where[:, :-1]]
            # the decoder's output (after the final norm) at the scored positions, then the LM head there only
            hidden = base.get_decoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state[where]
            logits = base.get_output_embeddings()(hidden).float()
            if not out and not grads:  # the head alone is the model's logits (no soft-capping or scaling after it)
                with torch.no_grad():
                    full = model(input_ids=input_ids, attention_mask=mask).logits[where]
                if not torch.allclose(full.float(), logits, atol=1e-3):
                    raise SystemExit(f"{model_path}: the LM head alone does not give the model's logits")
            loss_sum = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
            model.zero_grad()
            loss_sum.backward()
            grads.append(torch.cat([p.grad.flatten() for p in params]).double())
            with torch.no_grad():
                padded = torch.cat([logits, (hidden.float() @ extra_row.float())[:, None]], dim=-1)
                pad_sums.append(float(torch.nn.functional.cross_entropy(padded, targets, reduction="sum")))
                pad_mass += float(padded.softmax(-1)[:, -1].sum())
            sums.append(loss_sum.item())
            counts.append(len(targets))
        total, micro_n = sum(counts), len(counts)
        upstream = sum(g / (micro_n * n) for g, n in zip(grads, counts, strict=True) if n)
        current = sum(grads) / total
        out.append(
            {
                "response_tokens": total,
                "loss_upstream": sum(s / (micro_n * n) for s, n in zip(sums, counts, strict=True) if n),
                "loss_current": sum(sums) / total,
                "grad_cosine": float(upstream @ current / (upstream.norm() * current.norm())),
                "grad_norm_ratio": float(upstream.norm() / current.norm()),
                "loss_without_pad_row": sum(sums) / total,
                "loss_with_pad_row": sum(pad_sums) / total,
                "pad_row_mean_probability": pad_mass / total,
                "seconds": time.perf_counter() - started,
            }
        )
    return {"steps": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default="tiny", help="tiny (built here), gemma-3-270m, mistral (its tokenizer: --steps 0), a folder"
    )
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps measured on the model (0: none)")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="recipe", help="batches measured on the model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from mlalign_tasks.models.tiny_model import build_tiny_model

    settings = recipe_settings()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "tiny":
            model_path = str(build_tiny_model(Path(tmp) / "tiny"))
        elif args.model == "mistral":
            model_path = mistral_tokenizer(Path(tmp) / "mistral")
        else:
            model_path = resolve_model(args.model)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        rows, langs = stage_one_rows(settings)
        examples = tokenize(tokenizer, rows, settings["max_length"])
        layouts = {
            name: steps(len(examples), per_device, micro, settings["seed"])
            for name, (per_device, micro) in LAYOUTS.items()
        }
        figures = {
            "model": args.model,
            "languages": langs,
            "rows": len(rows),
            "max_length": settings["max_length"],
            "layouts": {name: {"per_device": p, "micro_batches_per_step": m} for name, (p, m) in LAYOUTS.items()},
            "token_weight_ratio_upstream_over_current": {
                name: weight_ratios(examples, layout) for name, layout in layouts.items()
            },
        }
        if args.steps:
            figures["model_layout"] = args.layout
            figures["lora"] = LORA
            figures |= model_figures(model_path, examples, layouts[args.layout][: args.steps], args.device)
    print(figures)
    if args.json:
        write_json_atomic(args.json, figures)


if __name__ == "__main__":
    main()

"""`mlalign eval` (our lm-eval tasks on a model, a per-language table) and `mlalign tasks-path`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlalign_tasks.cli.options import MODEL_HELP, DataDirOpt, GoldOpt, LabelScoringOpt, Nf4PresetOpt
from mlalign_tasks.cli.output import console, print_table
from mlalign_tasks.cli.vocabulary import option
from mlalign_tasks.models.model_loading import Dtype, Nf4Preset
from mlalign_tasks.models.tiny_model import EVAL_BATCH_SIZE as TINY_EVAL_BATCH
from mlalign_tasks.pipeline.evaluate import DEFAULT_TASKS, TASK_SPEC_HELP
from mlalign_tasks.tasks.label_scoring import Gold, Scoring


def tasks_path() -> None:
    """Print the lm-eval task directory, for `lm_eval --include_path "$(mlalign tasks-path)"`."""
    from mlalign_tasks.pipeline.evaluate import tasks_dir

    print(tasks_dir())


def eval_cmd(
    model: Annotated[str, option("model", MODEL_HELP)],
    tasks: Annotated[str, option("tasks", TASK_SPEC_HELP)] = DEFAULT_TASKS,
    peft: Annotated[str | None, option("adapter", "PEFT (LoRA) adapter directory to apply.")] = None,
    limit: Annotated[
        str | None,
        option(
            "items per task or language", "Items per task: a positive integer, a fraction in (0, 1], or 'none' (all)."
        ),
    ] = None,
    num_fewshot: Annotated[int | None, option("few-shot examples", "Few-shot examples (MGSM/MSVAMP: <= 8).")] = None,
    batch_size: Annotated[
        str | None,
        option("batch size", f"Batch size, or 'auto' \\[default: 1; the tiny model: {TINY_EVAL_BATCH}]"),
    ] = None,
    device: Annotated[
        str | None, option("device", "Device, e.g. cuda, cuda:1, cpu (default: cuda if available).")
    ] = None,
    gen_kwargs: Annotated[
        str | None, option("generation settings", "Generation overrides, e.g. 'max_gen_toks=64'.")
    ] = None,
    output_path: Annotated[
        Path | None, option("output folder", "Write lm-eval results JSON and per-sample logs here.")
    ] = None,
    load_in_4bit: Annotated[bool, option("4-bit base model", "Load the model in 4-bit NF4 (CUDA).")] = False,
    nf4_preset: Nf4PresetOpt = Nf4Preset.mlalign,
    include_defaults: Annotated[
        bool, typer.Option("--include-defaults", help="Also index lm-eval's built-in tasks (slower start).")
    ] = False,
    apply_chat_template: Annotated[bool, option("chat template", "Wrap prompts in the model's chat template.")] = False,
    seed: Annotated[
        int,
        option(
            "seed", "Random seed (python, numpy, torch; token-sets scoring's ties; paper's are upstream's, seed 0)."
        ),
    ] = 0,
    label_scoring: LabelScoringOpt = Scoring.paper,
    gold: GoldOpt = Gold.english,
    dtype: Annotated[
        Dtype,
        option("weights' dtype", "Weights' dtype in full precision (auto: the model config's; QAlign used bfloat16)."),
    ] = Dtype.auto,
    use_cache: Annotated[
        Path | None,
        option(
            "request cache",
            "Keep each finished request's answer in PATH_rank0.db (lm-eval's cache, bound to the model and settings), "
            "so that a rerun after an interruption computes only the rest.",
            metavar="PATH",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show lm-eval's log.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Evaluate a model (optionally + adapter) on our lm-eval tasks and print a per-language table."""
    from mlalign_tasks.models.tiny_model import MAX_GEN_TOKS, is_tiny
    from mlalign_tasks.pipeline import evaluate

    if evaluate.leave_launch():  # a copy started by accelerate launch or torchrun: the first process evaluates
        raise typer.Exit
    evaluate.quiet_lm_eval(verbose)
    tiny = is_tiny(model)
    req = evaluate.EvalRequest(
        model=model,
        tasks=evaluate.parse_tasks(tasks, allow_other=include_defaults),
        adapter=peft,
        limit=evaluate.parse_limit(limit),
        num_fewshot=num_fewshot,
        batch_size=evaluate.parse_batch_size(batch_size) if batch_size else TINY_EVAL_BATCH if tiny else 1,
        device=device,
        gen_kwargs=evaluate.parse_gen_kwargs(gen_kwargs),
        output_path=output_path,
        load_in_4bit=load_in_4bit,
        include_defaults=include_defaults,
        apply_chat_template=apply_chat_template,
        data_dir=data_dir,
        seed=seed,
        label_scoring=label_scoring,
        gold=gold,
        dtype=dtype,
        nf4_preset=nf4_preset,
        generation_cap=MAX_GEN_TOKS if tiny else None,
        use_cache=evaluate.RequestCache(use_cache) if use_cache else None,
    )
    results = evaluate.run(req)
    if req.tasks.langs:
        print_table(evaluate.score_table(results, req.tasks))
    if req.tasks.other or req.tasks.builtin:
        names = [
            *req.tasks.builtin,
            *(n for n in results.get("results", {}) if evaluate.builtin_cell(n)),
            *req.tasks.other,
        ]
        print_table(evaluate.other_table(results, list(dict.fromkeys(names))))
    if path := results["mlalign"].get("results_file"):
        console.print(f"results: {path}")
    if tiny:
        console.print(
            f"the tiny random-weight model: at most {MAX_GEN_TOKS} new tokens per generation unless --gen-kwargs "
            f"max_gen_toks=N says otherwise, batches of {TINY_EVAL_BATCH} unless --batch-size says otherwise",
            highlight=False,
            soft_wrap=True,
        )

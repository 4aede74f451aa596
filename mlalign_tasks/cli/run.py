"""`mlalign run`: the whole study in one resumable run, its options defaulted from the built-in models' table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mlalign_trainer.choices import QTSource

from mlalign_tasks.cli.options import DataDirOpt, GoldOpt, LabelScoringOpt, Nf4PresetOpt
from mlalign_tasks.cli.output import console, print_table
from mlalign_tasks.cli.vocabulary import option
from mlalign_tasks.errors import Interrupted
from mlalign_tasks.models.model_loading import Nf4Preset
from mlalign_tasks.pipeline.study_options import BUILTIN, SEED
from mlalign_tasks.tasks.label_scoring import Gold, Scoring

TOY, TINY = BUILTIN["toy"], BUILTIN["tiny"]  # the built-in models' defaults, for the help


def run_cmd(
    model: Annotated[
        str | None,
        option(
            "model",
            "Base model id, folder or .gguf file, 'gemma-3-270m' (installed from PyPI, converted once), 'toy' (the "
            "toy world's pretrained model) or 'tiny' (the random-weight test model) \\[default: the recipe's, else toy]",
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="Trainer recipe: a name (`mlalign recipes` lists them) or a YAML file. Default: toy-world-qalign on "
            "the toy model, cpu-smoke on the tiny one; with another --model, none (the trainer's defaults for the device)."
        ),
    ] = None,
    langs: Annotated[
        str | None,
        option(
            "languages",
            f"Training languages (question translation) \\[default: a recipe's; toy {TOY.languages}; tiny {TINY.languages}]",
        ),
    ] = None,
    qt_source: Annotated[
        QTSource | None,
        option(
            "question-translation source",
            f"Question translations \\[default: a recipe's; toy {TOY.qt_source}; tiny {TINY.qt_source}]",
        ),
    ] = None,
    examples_per_language: Annotated[
        int | None,
        option(
            "examples per language",
            f"Training pairs per language, 0: all \\[default: toy {TOY.scale.examples_per_language}, tiny "
            f"{TINY.scale.examples_per_language}; a real model: the recipe's, else all]",
        ),
    ] = None,
    train_flag: Annotated[
        list[str] | None, typer.Option("--train-flag", help="Extra trainer flag, e.g. '--max_steps=200' (repeat).")
    ] = None,
    tasks: Annotated[
        str | None,
        option("tasks", f"Evaluation tasks (as for `mlalign eval`) \\[default: toy {TOY.tasks}; else {TINY.tasks}]"),
    ] = None,
    limit: Annotated[
        str | None,
        option(
            "items per task or language",
            f"Evaluation items per task, 'none': all \\[default: toy {TOY.scale.eval_limit}, tiny "
            f"{TINY.scale.eval_limit}; a real model: all]",
        ),
    ] = None,
    max_gen_toks: Annotated[
        int | None,
        option(
            "new tokens per generation",
            f"New tokens per MGSM-format item, 0: the task's own \\[default: toy {TOY.scale.max_gen_toks}, tiny "
            f"{TINY.scale.max_gen_toks}; a real model: the task's own]",
        ),
    ] = None,
    batch_size: Annotated[
        str | None,
        option(
            "batch size",
            f"Evaluation batch size \\[default: toy {TOY.scale.batch_size}, tiny {TINY.scale.batch_size}; a real "
            "model: auto]",
        ),
    ] = None,
    device: Annotated[str | None, option("device", "cpu, cuda, cuda:N (default: cuda if available).")] = None,
    load_in_4bit: Annotated[bool, option("4-bit base model", "Evaluate/analyse in 4-bit NF4 (CUDA).")] = False,
    nf4_preset: Nf4PresetOpt = Nf4Preset.mlalign,
    label_scoring: LabelScoringOpt = Scoring.paper,
    gold: GoldOpt = Gold.english,
    analysis_limit: Annotated[
        int | None,
        typer.Option(
            "--analysis-limit",
            help=f"Items per language in the analyses, 0: all \\[default: toy {TOY.scale.analysis_limit}, tiny "
            f"{TINY.scale.analysis_limit}; a real model: all]",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        option(
            "output folder",
            f"Run directory (stages, resumable) \\[default: runs/NAME: {TOY.folder} for the toy world, {TINY.folder} for "
            "the tiny model, else the model folder's name or the Hub id with / as --]",
        ),
    ] = None,
    board: Annotated[
        Path | None,
        typer.Option(help="Leaderboard folder to publish \\[default: leaderboards/NAME, NAME as for --out]"),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace the results of another configuration in --out or --board (without it such a run is refused "
            "and nothing is written).",
        ),
    ] = False,
    seed: Annotated[
        int | None,
        option("seed", f"Seed of data sampling, training and analyses \\[default: a recipe's, else {SEED}]"),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The whole study: data -> question-aligned training -> eval base and aligned -> leaderboard -> analyses."""
    from rich.table import Table

    from mlalign_tasks.models.model_paths import check_model_name
    from mlalign_tasks.pipeline.evaluate import parse_batch_size, parse_limit
    from mlalign_tasks.pipeline.study import run_study
    from mlalign_tasks.pipeline.study_options import chosen_sizes, configure, describe_defaults

    if model is not None:  # before anything is said or written: a typo of a built-in name, an unreachable Hub
        check_model_name(model, "--model", BUILTIN)

    sized = {  # the options whose defaults depend on the model (`chosen_sizes`); given ones only, 0 / 'none': all
        "languages": langs,
        "qt_source": qt_source,
        "examples_per_language": examples_per_language,
        "eval_limit": limit,
        "max_gen_toks": max_gen_toks,
        "analysis_limit": analysis_limit,
        "batch_size": batch_size,
        "seed": seed,
    }
    given = {k: v for k, v in sized.items() if v is not None}
    given |= {k: None for k in ("examples_per_language", "max_gen_toks", "analysis_limit") if given.get(k) == 0}
    if "eval_limit" in given:
        given["eval_limit"] = parse_limit(given["eval_limit"])
    if "batch_size" in given:
        given["batch_size"] = parse_batch_size(given["batch_size"])
    if chosen := describe_defaults(chosen_sizes(model, recipe, given)):  # said before any option is refused
        console.print(chosen, highlight=False, soft_wrap=True)
    cfg = configure(
        model=model, recipe=recipe, **given, train_flags=train_flag or [], eval_tasks=tasks, device=device,
        load_in_4bit=load_in_4bit, nf4_preset=nf4_preset, label_scoring=label_scoring, gold=gold,
        out=out, board=board, data_dir=str(data_dir) if data_dir else None,
    )  # fmt: skip
    try:
        results, paths = run_study(
            cfg, on_start=lambda st, why: console.rule(f"[bold]{st.name}[/bold] ({why})"), replace=replace
        )
    except Interrupted:
        raise Interrupted("the stages that finished are kept; rerun the same command to resume") from None
    table = Table("stage", "status", "seconds", "output", title="mlalign run")
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}", str(r.path))
    print_table(table)
    console.print(f"leaderboard: {paths['leaderboard'] / 'README.md'} and {paths['leaderboard'] / 'index.html'}")
    console.print(f"adapter: {paths['adapter']}   analyses: {paths['logit-lens']}, {paths['pca']}")
    if chosen:
        console.print(chosen, highlight=False, soft_wrap=True)

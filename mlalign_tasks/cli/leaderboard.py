"""`mlalign leaderboard`: build a board from lm-eval results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlalign_tasks.cli.output import console, err_console
from mlalign_tasks.cli.vocabulary import option
from mlalign_tasks.leaderboard.cache import CACHE_ENV
from mlalign_tasks.leaderboard.cache import default_folder as board_cache_folder
from mlalign_tasks.leaderboard.options import DEFAULT_OPTIONS as DEFAULT_BOARD
from mlalign_tasks.leaderboard.options import BoardOptions, Correction


def leaderboard(
    results: Annotated[list[Path], typer.Argument(help="lm-eval output directories or results_*.json files.")],
    out: Annotated[Path, option("output folder", "Board folder to (re)write, e.g. leaderboards/NAME.")],
    manifest: Annotated[
        Path | None, typer.Option(help="YAML: title, description, models (match, name, base, languages), metrics.")
    ] = None,
    embed_inputs: Annotated[
        bool,
        typer.Option(
            "--embed-inputs/--no-embed-inputs",
            help="Copy the results and sample logs into OUT/inputs with a manifest (the board rebuilds from itself).",
        ),
    ] = True,
    allow_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-mismatch",
            help="Compare runs evaluated under different settings (shots, generation, items, prompts, scoring, "
            "precision); each difference is named in a note at the top of the board. Default: refuse.",
        ),
    ] = False,
    correction: Annotated[
        Correction,
        typer.Option(help="Multiple-comparison correction of the per-language p-values: none, holm or bh."),
    ] = Correction.none,
    chance_normalised: Annotated[
        bool,
        typer.Option("--chance-normalised", help="Show classification scores as (score - chance) / (1 - chance)."),
    ] = False,
    bootstrap: Annotated[
        int, typer.Option(help="Paired bootstrap resamples for the intervals of the averages' deltas (0: none).")
    ] = DEFAULT_BOARD.bootstrap,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = DEFAULT_BOARD.seed,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Cache of parsed inputs: a rebuild parses only the files that changed "
            f"(default ${CACHE_ENV}, else ~/.cache/mlalign/leaderboard).",
            show_default=False,
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Parse every input file; read and write no cache.")
    ] = False,
) -> None:
    """Build a leaderboard (Markdown, CSV/JSON, HTML, plots, model cards) comparing base and aligned models."""
    from mlalign_tasks.leaderboard import make_leaderboard

    options = BoardOptions(
        allow_mismatch=allow_mismatch, correction=correction, chance_normalised=chance_normalised,
        bootstrap=bootstrap, seed=seed, embed=embed_inputs,
        cache=None if no_cache else cache_dir or board_cache_folder(),
    )  # fmt: skip
    board = make_leaderboard(results, out, manifest, options)
    console.print(f"leaderboard of {len(board.models)} model(s) written to {out} (open {out / 'index.html'})")
    for note in board.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)

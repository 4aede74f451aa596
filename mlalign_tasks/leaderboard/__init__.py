"""Leaderboards from lm-eval results: base vs question-aligned models across languages.

How a board is built: `make_leaderboard` below reads the results into a complete, read-only `Board`
(`build.build_board`: the models from `models`, the files from `discover`, `runs` and `samples` through the parse
`cache`, the statistics from `stats` and `averages`) and writes it (`write.write_board`: `data`, `markdown`, `page`,
`plots`, `cards`, `inputs`, into a folder checked by `folder`; the plots and the page by a second process, forked
once the board is complete, beside the rest).
"""

from __future__ import annotations

import gc
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlalign_tasks.leaderboard.board import Board
from mlalign_tasks.leaderboard.build import build_board
from mlalign_tasks.leaderboard.inputs import INPUTS, INPUTS_MANIFEST
from mlalign_tasks.leaderboard.options import DEFAULT_OPTIONS, BoardOptions, Correction
from mlalign_tasks.leaderboard.write import write_board

__all__ = ["Board", "BoardOptions", "Correction", "build_board", "make_leaderboard", "regenerate_command"]


def regenerate_command(results: list[Path], out: Path, manifest: Path | None, options: BoardOptions) -> str:
    """The one-line command that rebuilds this board (from its own copy of the inputs when embedded)."""
    if options.embed:
        results, manifest = [out / INPUTS], out / INPUTS / INPUTS_MANIFEST
    args = ["mlalign", "leaderboard", *map(str, results), "--out", str(out)]
    args += ["--manifest", str(manifest)] if manifest else []
    args += [] if options.embed else ["--no-embed-inputs"]
    args += ["--allow-mismatch"] if options.allow_mismatch else []
    args += ["--correction", options.correction.value] if options.correction is not Correction.none else []
    args += ["--chance-normalised"] if options.chance_normalised else []
    args += ["--bootstrap", str(options.bootstrap)] if options.bootstrap != DEFAULT_OPTIONS.bootstrap else []
    args += ["--seed", str(options.seed)] if options.seed != DEFAULT_OPTIONS.seed else []
    return shlex.join(args)


def make_leaderboard(
    results: list[Path], out: Path, manifest: Path | None = None, options: BoardOptions = DEFAULT_OPTIONS
) -> Board:
    """Read the results, compute the statistics and write the board folder atomically."""
    with _collector_paused():
        board = build_board(results, manifest, out, options)
        write_board(board, out, regenerate_command(results, out, manifest, options), results, embed=options.embed)
    return board


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block: a board of 100 models holds millions of objects, which
    each full collection would walk (0.7 s of 5 s there), and building one makes no cycles worth collecting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

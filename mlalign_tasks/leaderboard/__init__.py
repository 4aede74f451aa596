"""Leaderboards from lm-eval results: base vs question-aligned models across languages."""

from __future__ import annotations

import shlex
from pathlib import Path

from mlalign_tasks.leaderboard.build import Board, build_board
from mlalign_tasks.leaderboard.render import INPUTS, INPUTS_MANIFEST, write_board

__all__ = ["Board", "build_board", "make_leaderboard", "regenerate_command"]


def regenerate_command(results: list[Path], out: Path, manifest: Path | None, embed: bool) -> str:
    """The one-line command that rebuilds this board (from its own copy of the inputs when embedded)."""
    if embed:
        results, manifest = [out / INPUTS], out / INPUTS / INPUTS_MANIFEST
    args = ["mlalign", "leaderboard", *map(str, results), "--out", str(out)]
    args += ["--manifest", str(manifest)] if manifest else []
    args += [] if embed else ["--no-embed-inputs"]
    return shlex.join(args)


def make_leaderboard(results: list[Path], out: Path, manifest: Path | None = None, embed: bool = True) -> Board:
    """Read the results, compute the statistics and write the board folder atomically."""
    board = build_board(results, manifest, out)
    write_board(board, out, regenerate_command(results, out, manifest, embed), results, embed=embed)
    return board

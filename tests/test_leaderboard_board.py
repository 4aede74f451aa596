"""`build_board` hands out a finished, read-only board: every table computed, nothing left to wait for or cancel."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from mlalign_tasks.leaderboard import BoardOptions, build_board, make_leaderboard
from mlalign_tasks.leaderboard.synthetic import Item, write_run


def write_pair(root: Path) -> list[Path]:
    """A base and its aligned adapter, two classification and one generation task in en and de, 20 items each."""
    rng = random.Random(0)
    paths = []
    for args in ("pretrained=org/base", "pretrained=org/base,peft=adapters/aligned"):
        tasks = {f"{f}_{lang}": [Item(rng.randint(0, 2), 1) for _ in range(20)] for f in ("snli_aligned", "paper_aligned") for lang in ("en", "de")}  # fmt: skip
        tasks |= {f"mgsm_aligned_{lang}": [Item(str(rng.randint(1, 3)), "2") for _ in range(20)] for lang in ("en", "de")}  # fmt: skip
        paths.append(root / f"run{len(paths)}")
        write_run(paths[-1], args, tasks, generative={"mgsm_aligned_en", "mgsm_aligned_de"})
    return paths


def test_build_board_returns_every_table_and_refuses_changes(tmp_path: Path) -> None:
    runs = write_pair(tmp_path)
    board = build_board(runs, options=BoardOptions(bootstrap=200))
    assert board.averages and board.deltas and board.comparisons and board.consistency and board.cells
    assert all(d["ci_low_pp"] is not None for d in board.deltas)  # the bootstrap ran
    with pytest.raises(dataclasses.FrozenInstanceError):
        board.averages = []  # type: ignore[misc]
    written = make_leaderboard(runs, tmp_path / "board", options=BoardOptions(bootstrap=200, embed=False))
    assert (written.averages, written.deltas, written.notes) == (board.averages, board.deltas, board.notes)

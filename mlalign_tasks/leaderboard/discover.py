"""Find lm-eval results files under the folders a board is built from (not entering other boards), and the error
for results that cannot be read."""

from __future__ import annotations

import os
from pathlib import Path

from mlalign_tasks.errors import MlalignError


class ResultsError(MlalignError):
    """A results file or directory that cannot be read as lm-eval output."""


BOARD_MARKERS = ("results.json", "index.html")  # files every board writes (and lm-eval never does)


def is_board(folder: Path) -> bool:
    """Whether `folder` is a board written by `mlalign leaderboard` (embedded inputs or not)."""
    return all((folder / name).is_file() for name in BOARD_MARKERS)


def _search(root: Path, skip: Path | None) -> tuple[list[Path], list[Path]]:
    """`results_*.json` under `root`, and the boards (or `skip`, resolved) below it that were not entered.

    `root` itself is searched even when it is (or lies inside) a board: naming a board's inputs rebuilds it.
    Hidden folders (a killed `mlalign eval`'s staging folder, `.git`) are not results and are not entered.
    """
    found: list[Path] = []
    left: list[Path] = []
    top = root.resolve()
    for folder, dirs, files in os.walk(top):  # like rglob: symlinked folders are not entered
        here = Path(folder)
        left += [here / d for d in dirs if here / d == skip or is_board(here / d)]
        dirs[:] = [d for d in dirs if here / d not in left and not d.startswith(".")]
        found += [inside(here / f, top) for f in files if f.startswith("results_") and f.endswith(".json")]
    return sorted(found), left


def inside(path: Path, folder: Path) -> Path:
    """`path`, resolved, when it lies in `folder` (resolved); a link or a name leading out of it is refused."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ResultsError(
            f"{path} leads outside its results folder {folder} (to {resolved}); the leaderboard reads only files "
            "inside the folders it is given: remove the link or copy the file there"
        )
    return resolved


def find_results_files(paths: list[Path], skip: Path | None = None) -> list[Path]:
    """Expand directories into their `results_*.json` files (searched recursively); keep files as given.

    A search does not enter a board folder (one with `BOARD_MARKERS`: its embedded inputs are copies) nor
    `skip` (the board being written) unless the directory searched lies inside it.
    """
    if not paths:
        raise ResultsError("no results given: pass lm-eval output directories or results_*.json files")
    skip = skip.resolve() if skip is not None else None
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            files, boards = _search(p, skip)
            if not files:
                raise ResultsError(
                    f"no lm-eval results file (results_*.json) under {p}"
                    + (f" outside the board(s) {', '.join(map(str, boards))}" if boards else "")
                    + ": pass the --output_path of `lm_eval ... --log_samples` or `mlalign eval`"
                    + (", or a board's inputs folder to rebuild it" if boards else "")
                )
            found.extend(files)
        elif p.is_file():
            found.append(p)
        else:
            raise ResultsError(f"results path {p} does not exist")
    return list(dict.fromkeys(f.resolve() for f in found))

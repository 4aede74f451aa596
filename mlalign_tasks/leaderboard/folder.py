"""The board folder: which of its entries are the board's (a rebuild replaces those and keeps the rest), and the checks
before a board is written there (the study checks its board folder with them too)."""

from __future__ import annotations

from pathlib import Path, PurePath

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.output_dirs import check_replaceable, check_writable
from mlalign_tasks.leaderboard.cards import is_card
from mlalign_tasks.leaderboard.discover import BOARD_MARKERS
from mlalign_tasks.leaderboard.inputs import INPUTS
from mlalign_tasks.leaderboard.plots import PLOT_FILES

# Everything a board writes into its folder; other entries there (a gh-pages `.git`, a CNAME) are never touched.
BOARD_ENTRIES = (
    "README.md", "index.html", "results.csv", "results.json", "comparisons.csv", "consistency.csv", "averages.csv",
    "deltas.csv", "settings.csv", "plots", "model_cards", INPUTS,
)  # fmt: skip


def check_board_folder(out: Path, flag: str = "--out") -> None:
    """A board is written into a new or empty folder, or over an earlier board, where a folder can be made."""
    check_replaceable(out, flag, BOARD_MARKERS, "a leaderboard")
    check_writable(out, flag)


def board_owns(relative: PurePath, path: Path) -> bool:
    """Whether an entry of a board folder is the board's (replaced by a rebuild) or another's (kept): its top-level
    entries, all of `inputs`, the plots it draws and the model cards it wrote; not a file a user put beside them."""
    top, *inner = relative.parts
    if top not in BOARD_ENTRIES or len(inner) > 1 and top != INPUTS:
        return False
    if not inner or top == INPUTS:
        return True
    if top == "plots":
        return relative.name in PLOT_FILES
    return top != "model_cards" or is_card(path)


def board_files(out: Path) -> list[Path]:
    """The entries of the board in `out` (not the other files that folder may hold)."""
    return [out / name for name in BOARD_ENTRIES if (out / name).exists()]


def check_target(out: Path, inputs: list[Path], embed: bool) -> None:
    check_board_folder(out)
    entries = [out.resolve() / name for name in BOARD_ENTRIES]
    inside = [p for p in inputs if any(p.resolve().is_relative_to(entry) for entry in entries)]
    if inside and not (embed and all(p.resolve().is_relative_to(out.resolve() / INPUTS) for p in inside)):
        raise MlalignError(
            f"input {inside[0]} lies inside the board's own files in {out}, which are replaced; move it out "
            f"(inputs in {out / INPUTS} are fine when the board embeds its inputs)"
        )

"""Write a board folder atomically: README.md, index.html, the CSVs and results.json, plots, model cards (and,
optionally, copies of the input files)."""

from __future__ import annotations

from pathlib import Path

from mlalign_tasks.files.atomic import atomic_dir
from mlalign_tasks.leaderboard import plots
from mlalign_tasks.leaderboard.averages import AVERAGE_FIELDS, DELTA_FIELDS
from mlalign_tasks.leaderboard.board import COMPARISON_FIELDS, CONSISTENCY_FIELDS, Board
from mlalign_tasks.leaderboard.cards import write_cards
from mlalign_tasks.leaderboard.data import ROW_FIELDS, results_json, write_csv
from mlalign_tasks.leaderboard.folder import board_owns, check_target
from mlalign_tasks.leaderboard.inputs import embed_inputs
from mlalign_tasks.leaderboard.markdown import markdown
from mlalign_tasks.leaderboard.page import html
from mlalign_tasks.leaderboard.tables import SETTINGS_FIELDS
from mlalign_tasks.runtime.parallel import alongside


def write_board(board: Board, out: Path, command: str, inputs: list[Path], embed: bool = True) -> Path:
    """Build the whole board in a temp folder beside `out`, then move its files in (an error leaves `out` untouched;
    files of `out` that the board does not write are kept)."""
    check_target(out, inputs, embed)
    with atomic_dir(out, owns=board_owns) as tmp:
        with alongside(_plots_and_page, board, command, tmp):  # half the writing, on a second core
            write_csv(tmp / "results.csv", board.rows, ROW_FIELDS)
            write_csv(tmp / "comparisons.csv", board.comparisons, list(COMPARISON_FIELDS))
            write_csv(tmp / "consistency.csv", board.consistency, list(CONSISTENCY_FIELDS))
            write_csv(tmp / "settings.csv", board.setting_rows, SETTINGS_FIELDS)
            write_csv(tmp / "averages.csv", board.averages, list(AVERAGE_FIELDS))
            write_csv(tmp / "deltas.csv", board.deltas, list(DELTA_FIELDS))
            (tmp / "results.json").write_text(results_json(board, command), encoding="utf-8")
            (tmp / "README.md").write_text(markdown(board, command), encoding="utf-8")
            write_cards(board, tmp / "model_cards")
        if embed:
            embed_inputs(board, tmp)
    return out


def _plots_and_page(board: Board, command: str, tmp: Path) -> None:
    """The plots and index.html, which shows them."""
    plots.render_plots(board, tmp / "plots")
    (tmp / "index.html").write_text(html(board, command, tmp / "plots"), encoding="utf-8")

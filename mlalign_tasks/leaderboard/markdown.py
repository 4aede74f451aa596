"""The board's README.md."""

from __future__ import annotations

from mlalign_tasks import __version__
from mlalign_tasks.leaderboard.board import Board
from mlalign_tasks.leaderboard.escape import md_block, md_code_block, md_code_span, md_text
from mlalign_tasks.leaderboard.tables import (
    Cell,
    Strong,
    average_table,
    consistency_table,
    family_table,
    group_table,
    legend,
    model_table,
    ordered_notes,
    reference_table,
    settings_table,
)


def _md_cell(cell: Cell) -> str:
    return f"**{md_text(cell.text)}** {md_text(cell.after)}".strip() if isinstance(cell, Strong) else md_text(cell)


def _md_table(header: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(map(md_text, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def markdown(board: Board, command: str) -> str:
    """The board's README."""
    parts = [f"# {md_block(board.title)}", ""]
    if board.description:
        parts += [md_block(board.description), ""]
    parts += [
        f"Regenerate with:\n\n{md_code_block(command, 'bash')}",
        "",
        f"Built by mlalign {__version__} from lm-eval {md_text(', '.join(board.lm_eval_versions))} results. "
        + legend(board),
        "",
        "Open `index.html` for sortable tables and plots. Data: `results.csv` / `results.json` (tidy), "
        "`comparisons.csv`, `consistency.csv`, `averages.csv`, `deltas.csv`, `settings.csv`; model-card snippets in "
        "`model_cards/`.",
        "",
    ]
    if board.notes:
        parts += ["## Notes", "", *(f"- {md_block(n)}" for n in ordered_notes(board)), ""]
    parts += ["## Models", "", _md_table(*model_table(board)), ""]
    parts += ["## Settings", "", _md_table(*settings_table(board)), ""]
    parts += ["## Averages (all task families)", "", _md_table(*average_table(board)), ""]
    header, rows = group_table(board)
    if rows:
        parts += ["## lm-eval group scores", "", _md_table(header, rows), ""]
    header, rows = reference_table(board)
    if rows:
        parts += ["## Published reference numbers", "", _md_table(header, rows), ""]
    parts += ["![Δ heatmap](plots/delta_heatmap.png)", "", "![split averages](plots/split_averages.png)", ""]
    for family in board.families:
        parts += [
            f"## {md_block(family)}",
            "",
            f"Metric: {md_code_span(board.metrics[family])}",
            "",
            _md_table(*family_table(board, family)),
            "",
        ]
        parts += ["Averages (%):", "", _md_table(*average_table(board, family)), ""]
        header, rows = consistency_table(board, family)
        if rows:
            parts += ["Cross-lingual consistency with English (same answer / correct in both, %):", ""]
            parts += [_md_table(header, rows), ""]
    return "\n".join(parts)

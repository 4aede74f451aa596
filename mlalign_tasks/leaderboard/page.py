"""The board's index.html: one self-contained page (inline CSS, JS and plots) with sortable tables."""

from __future__ import annotations

import base64
from html import escape as html_escape
from pathlib import Path
from typing import Any

from markupsafe import Markup

from mlalign_tasks import __version__
from mlalign_tasks.leaderboard.board import Board
from mlalign_tasks.leaderboard.likeness import MISMATCH_PREFIX
from mlalign_tasks.leaderboard.stats import SIGNIFICANCE, significant
from mlalign_tasks.leaderboard.tables import (
    Cell,
    Strong,
    average_table,
    cell_text,
    consistency_table,
    delta_text,
    group_table,
    legend,
    model_table,
    ordered_notes,
    reference_table,
    seen_by,
    settings_table,
)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def delta_style(c: dict[str, Any], scale: float) -> str:
    """Background colour of a Δ cell: green up, red down, stronger with size; faint unless significant (colour
    must not draw the eye to noise)."""
    alpha = min(abs(c["delta_pp"]) / scale, 1.0) * (0.75 if significant(c) else 0.15) + 0.08
    rgb = "26,150,65" if c["delta_pp"] > 0 else ("215,48,39" if c["delta_pp"] < 0 else "160,160,160")
    return f"background-color: rgba({rgb},{alpha:.2f})"


def html(board: Board, command: str, plots: Path) -> str:
    """The self-contained page (inline CSS/JS), with the heatmap's and the split averages' SVGs from the folder
    `plots` inline (as data URIs)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlalign_tasks.leaderboard", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    scale = max([abs(c["delta_pp"]) for c in board.comparisons] + [1.0])
    pairs = board.pairs()
    families = []
    for family in board.families:
        comps = {(c["aligned"], c["language"]): c for c in board.comparisons if c["family"] == family}
        rows = []
        for lang in board.languages:
            views = [board.cells.get((m.name, family, lang)) for m in board.models]
            if any(views):
                deltas = [comps.get((a.name, lang)) for _, a in pairs]
                rows.append(
                    {"lang": lang, "seen_by": seen_by(board, lang), "cells": _score_cells(views, deltas, scale)}
                )
        consistency = consistency_table(board, family)
        families.append(
            {
                "name": family,
                "metric": board.metrics[family],
                "rows": rows,
                "consistency": consistency,
                "averages": average_table(board, family),
                "references": reference_table(board, family),
            }
        )
    return env.get_template("index.html.j2").render(
        board=board,
        command=command,
        pairs=pairs,
        models=model_table(board),
        settings=settings_table(board),
        averages=average_table(board),
        groups=group_table(board),
        references=reference_table(board),
        families=families,
        notes=ordered_notes(board),
        mismatch=MISMATCH_PREFIX,
        legend=legend(board),
        table_rows=table_rows,
        heatmap=_data_uri(plots / "delta_heatmap.svg", "image/svg+xml"),
        bars=_data_uri(plots / "split_averages.svg", "image/svg+xml"),
        significance=SIGNIFICANCE,
        version=__version__,
    )


# The page's big tables are built here rather than in the template: a board of 100 models has 100,000s of cells.


def _score_cells(views: list[dict[str, Any] | None], deltas: list[dict[str, Any] | None], scale: float) -> Markup:
    """The `<td>`s of one language of a family's table: each model's score, then each pair's Δ (texts made of
    numbers only: nothing to escape)."""
    out = []
    for view in views:
        if view is None:
            out.append('<td data-sort="">–</td>')
        else:
            out.append(f'<td class="num" data-sort="{view["value"]}">{cell_text(view)}</td>')
    for c in deltas:
        if c is None:
            out.append('<td data-sort="">–</td>')
            continue
        n = c["n_paired"] if c["n_paired"] is not None else "no samples"
        out.append(
            f'<td class="num delta{" sig" if significant(c) else ""}" data-sort="{c["delta_pp"]}" '
            f'style="{delta_style(c, scale)}" title="n paired = {n}">{delta_text(c)}</td>'
        )
    return Markup("\n".join(out))


def table_rows(rows: list[list[Cell]], num_from: int) -> Markup:
    """The `<tr>`s of a table: cells from `num_from` on (1-based) are numbers; published reference rows marked."""
    out = []
    for row in rows:
        mark = ' class="reference"' if any(isinstance(c, Strong) and c.text.startswith("† ") for c in row) else ""
        cells = "".join(
            (NUM_CELL if i >= num_from else "<td>") + html_escape(str(c)) + "</td>" for i, c in enumerate(row, 1)
        )
        out.append(f"<tr{mark}>{cells}</tr>")
    return Markup("\n".join(out))


NUM_CELL = '<td class="num">'

"""The board's data files: the tidy CSVs and results.json."""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlalign_tasks.leaderboard.board import Board, source_folder
from mlalign_tasks.leaderboard.escape import csv_cell

ROW_FIELDS = [
    "model", "base_model", "adapter", "task", "level", "family", "language", "metric", "value", "stderr", "ci_low",
    "ci_high", "n", "seed", "split", "source",
]  # fmt: skip
RESULT_NEUTRAL = {"cache"}  # options that change how fast a board is built, not what it shows


def write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    """`fields` of each row (None as an empty cell; text `csv_cell`-safe)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(fields)
        safe = functools.cache(csv_cell)  # the same few texts (models, tasks, languages) on every row
        writer.writerows([safe(v) if isinstance(v, str) else v for v in map(row.get, fields)] for row in rows)


def results_json(board: Board, command: str) -> str:
    """results.json: the tidy rows plus models, comparisons, consistency, averages and notes."""
    payload = {
        "title": board.title,
        "description": board.description,
        "command": command,
        "lm_eval_versions": board.lm_eval_versions,
        "metrics": board.metrics,
        "models": [
            {
                "name": m.name,
                "base_model": m.pretrained,
                "adapter": m.adapter,
                "compared_with": m.base,
                "trained_on": list(m.seen) if m.seen is not None else None,
                "sources": sorted({source_folder(r.path) for r in m.runs}),
            }
            for m in board.models
        ],
        "options": {
            k: str(v) if not isinstance(v, bool | int) else v
            for k, v in asdict(board.options).items()
            if k not in RESULT_NEUTRAL
        },
        "rows": board.rows,  # ROW_FIELDS and "primary", in that order
        "comparisons": board.comparisons,
        "consistency": board.consistency,
        "averages": board.averages,
        "deltas": board.deltas,
        "settings": board.setting_rows,
        "references": board.references,
        "notes": board.notes,
    }
    return _json_one_item_per_line(payload)


def _json_one_item_per_line(payload: dict[str, Any]) -> str:
    """JSON with each element of a top-level list on its own line: diffable, and written by json's C encoder
    (an `indent` would use the pure-Python one, seconds on a board of 100 models)."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    parts = []
    for key, value in payload.items():
        if isinstance(value, list) and value:
            items = ",\n  ".join(map(encode, value))
            parts.append(f" {encode(key)}: [\n  {items}\n ]")
        else:
            parts.append(f" {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(parts) + "\n}"

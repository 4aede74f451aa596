"""A board's copy of its inputs (inputs/: the results and samples files per model, with a manifest), from which it
can be rebuilt."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from mlalign_tasks.leaderboard.board import Board, Model

INPUTS = "inputs"
INPUTS_MANIFEST = "manifest.yaml"  # in INPUTS, beside one folder per model


def slugs(models: list[Model]) -> dict[str, str]:
    """A distinct file-name-safe form of every model name (numbered where two names reduce to the same); never
    `.`, `..`, a hidden name or a name the board's inputs folder uses itself."""
    out: dict[str, str] = {}
    for model in models:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", model.name).strip("._-") or "model"
        stem = f"{stem}-model" if stem == INPUTS_MANIFEST else stem
        name, k = stem, 1
        while name in out.values():
            k += 1
            name = f"{stem}-{k}"
        out[model.name] = name
    return out


def _input_files(board: Board) -> list[tuple[Model, Path]]:
    files = []
    for model in board.models:
        for run in model.runs:
            paths = [run.path, *(Path(path) for r in run.tasks.values() for _, path in r.samples)]
            files += [(model, path) for path in dict.fromkeys(paths)]
    return files


def embed_inputs(board: Board, out: Path) -> Path:
    """Copy the results/samples files into out/inputs/<model>/ with a manifest that keeps names and pairing."""
    root, folder = out / INPUTS, slugs(board.models)
    for model, path in _input_files(board):
        target = root / folder[model.name] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    manifest = {
        "title": board.title,
        "description": board.description,
        "metrics": board.metrics,
        "models": [
            {"match": m.key, "name": m.name}
            | ({"base": m.base} if m.base else {})
            | ({"languages": list(m.seen)} if m.seen is not None else {})
            for m in board.models
        ],
    }
    (root / INPUTS_MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return root

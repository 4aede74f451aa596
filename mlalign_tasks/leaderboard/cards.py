"""The board's model_cards/: a Hugging Face `model-index` YAML per model with an adapter or a base it is compared
with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlalign_tasks.leaderboard.board import Board, Model
from mlalign_tasks.leaderboard.inputs import slugs


def write_cards(board: Board, folder: Path) -> None:
    """A card in `folder` (made here) for each model with an adapter or a base it is compared with."""
    folder.mkdir()
    by_model: dict[str, list[dict[str, Any]]] = {}
    for (name, _, _), row in _primary_rows(board).items():
        by_model.setdefault(name, []).append(row)
    stems = slugs(board.models)
    for model in board.models:
        if model.adapter or model.base:
            card = model_card(model, by_model.get(model.name, []))
            (folder / f"{stems[model.name]}.yaml").write_text(card, encoding="utf-8")


def _primary_rows(board: Board) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(model, family, language) -> its primary row (the first run's, for a cell run with several seeds)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in board.rows:
        if r["primary"]:
            out.setdefault((r["model"], r["family"], r["language"]), r)
    return out


def model_card(model: Model, rows: list[dict[str, Any]]) -> str:
    """Hugging Face model-card `model-index` YAML for one model from its primary rows (lm-eval's values).

    What `yaml.dump` writes for the whole card, assembled from each result's text (dumped once per task and metric,
    every model's cards alike, with the value's own dump put in)."""
    head = _card_yaml(model.name, [])
    if not rows or not head.endswith(_EMPTY_RESULTS):
        return _card_yaml(model.name, [_card_result(row) for row in rows])
    return head[: -len(_EMPTY_RESULTS)] + "  results:\n" + "".join(map(_card_item, rows))


_EMPTY_RESULTS = "  results: []\n"
_VALUE_LINE = "      value: "
_CARD_ITEMS: dict[tuple[str, str, str, str], tuple[str, str]] = {}  # (family, task, language, metric) -> text
_YAML_FLOATS: dict[str, str] = {}  # repr(value) -> its YAML


def _card_yaml(name: str, results: list[dict[str, Any]]) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available: 10x faster
    card = {"model-index": [{"name": name, "results": results}]}
    return yaml.dump(card, Dumper=dumper, sort_keys=False, allow_unicode=True)


def _card_result(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": {"type": "text-generation", "name": row["family"]},
        "dataset": {"name": row["task"], "type": row["family"], "config": row["language"], "split": "test"},
        "metrics": [{"type": row["metric"].split(",")[0], "name": row["metric"], "value": row["value"]}],
        "source": {"name": "mlalign leaderboard", "url": "index.html"},
    }


def _card_item(row: dict[str, Any]) -> str:
    """One result of a card as `yaml.dump` writes it; the whole result dumped where its value line is not plain."""
    key = (row["family"], row["task"], row["language"], row["metric"])
    if key not in _CARD_ITEMS:
        text = _card_yaml("m", [_card_result(row | {"value": 0.5})])
        item = text.removeprefix("model-index:\n- name: m\n  results:\n")
        before, _, after = item.partition(_VALUE_LINE + "0.5\n")
        _CARD_ITEMS[key] = (before, after) if item.count(_VALUE_LINE) == 1 and after else ("", "")
    before, after = _CARD_ITEMS[key]
    if not after:
        return _card_yaml("m", [_card_result(row)]).removeprefix("model-index:\n- name: m\n  results:\n")
    value = repr(row["value"])
    if value not in _YAML_FLOATS:
        _YAML_FLOATS[value] = yaml.safe_dump(row["value"]).split("\n", 1)[0]
    return f"{before}{_VALUE_LINE}{_YAML_FLOATS[value]}\n{after}"


_CARD_SOURCE = "    source:\n      name: mlalign leaderboard\n      url: index.html\n"


def is_card(path: Path) -> bool:
    """Whether `path` is a model card as `model_card` writes it: `model-index` alone, each result from the board."""
    if path.suffix != ".yaml" or path.is_symlink() or not path.is_file():
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = text.splitlines()[2:]  # after `model-index:` and `- name: ...`
    return (
        text.startswith("model-index:\n- name: ")
        and all(line.startswith(" ") for line in lines)
        and text.count("\n  - task:\n") == text.count(_CARD_SOURCE)
    )

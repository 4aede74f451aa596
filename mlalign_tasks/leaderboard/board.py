"""The board as a value: its models, its tables, and the types the modules that build and write it share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlalign_tasks.leaderboard.items import Items
from mlalign_tasks.leaderboard.options import DEFAULT_OPTIONS, BoardOptions
from mlalign_tasks.leaderboard.runs import Run

CellKey = tuple[str, str, str]  # (model key, family, language)
Samples = dict[CellKey, Items]  # (model key, family, lang) -> its logged items
COMPARISON_FIELDS = (
    "base", "aligned", "family", "language", "split", "metric", "base_value", "aligned_value", "delta_pp",
    "n_paired", "only_base", "only_aligned", "p_value", "p_adjusted",
)  # fmt: skip
CONSISTENCY_FIELDS = ("model", "family", "language", "n", "same_answer", "both_correct")


@dataclass
class Model:
    """A model on the board: a base model, or a base plus adapter (an aligned model)."""

    key: str
    name: str
    pretrained: str
    adapter: str | None
    runs: list[Run] = field(default_factory=list)
    base: str | None = None  # key of the base model it is compared with
    seen: tuple[str, ...] | None = None  # languages it was trained on

    def split(self, lang: str) -> str:
        """english / seen / unseen for an aligned model with known training languages, else n/a."""
        if lang == "en":
            return "english"
        if self.seen is None:
            return "n/a"
        return "seen" if lang in self.seen else "unseen"


@dataclass(frozen=True)
class Board:
    """Everything the renderers need, complete and read-only as `build_board` returns it; numbers are lm-eval's own
    values (no rounding here)."""

    title: str
    description: str
    models: list[Model]
    families: list[str]
    languages: list[str]
    metrics: dict[str, str]  # family -> primary "metric,filter"
    rows: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    consistency: list[dict[str, Any]]
    averages: list[dict[str, Any]]
    notes: list[str]
    lm_eval_versions: list[str]
    settings: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # task -> model -> SETTINGS
    options: BoardOptions = DEFAULT_OPTIONS
    chance: dict[str, float] = field(default_factory=dict)  # classification family -> chance level
    spread: dict[tuple[str, str, str], tuple[float, int]] = field(default_factory=dict)  # seeds: (sd, runs)
    references: list[dict[str, Any]] = field(default_factory=list)  # published numbers (never in statistics)
    deltas: list[dict[str, Any]] = field(default_factory=list)  # Δ of each pair's averages with its interval
    cells: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (model name, family, lang)
    setting_rows: list[dict[str, str]] = field(default_factory=list)  # per model and family: its SETTINGS

    def model(self, key: str) -> Model:
        return next(m for m in self.models if m.key == key)

    def pairs(self) -> list[tuple[Model, Model]]:
        """(base, aligned) pairs whose base is on the board."""
        keys = {m.key for m in self.models}
        return [(self.model(m.base), m) for m in self.models if m.base in keys]


def source_folder(path: Path) -> str:
    """The folder a results file was read from, relative to the working directory when inside it (not the file: its
    name has lm-eval's run date, and a re-run must give the same board)."""
    return str(path.parent.relative_to(Path.cwd())) if path.parent.is_relative_to(Path.cwd()) else path.parent.name

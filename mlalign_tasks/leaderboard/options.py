"""The leaderboard's options, typed and checked once: the CLI builds them, `mlalign run` composes them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from mlalign_tasks.errors import MlalignError


class Correction(StrEnum):
    """Multiple-comparison correction of the per-language p-values of each pair and task family."""

    none = "none"
    holm = "holm"  # Holm-Bonferroni: controls the family-wise error rate
    bh = "bh"  # Benjamini-Hochberg: controls the false discovery rate


@dataclass(frozen=True)
class BoardOptions:
    """How a board is built from its inputs (everything but the inputs, the manifest and the folder)."""

    allow_mismatch: bool = False  # compare runs made under different settings (a visible note names each)
    correction: Correction = Correction.none
    chance_normalised: bool = False  # classification scores as (score - chance) / (1 - chance)
    bootstrap: int = 2000  # paired bootstrap resamples for the intervals of the averages' deltas (0: none)
    seed: int = 0  # of the bootstrap
    embed: bool = True  # copy the inputs into the board
    cache: Path | None = None  # folder of the parse cache (`leaderboard.cache`); None: parse every input file

    def __post_init__(self) -> None:
        if self.bootstrap < 0 or 0 < self.bootstrap < 100:
            raise MlalignError(f"--bootstrap {self.bootstrap}: use 0 (no intervals) or at least 100 resamples")


DEFAULT_OPTIONS = BoardOptions()

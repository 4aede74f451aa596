"""The analyses' protocol options (enums only, so the CLI can offer them without importing torch)."""

from __future__ import annotations

from enum import Enum


class LensProtocol(str, Enum):
    """Which logit lens runs (mlalign_tasks.analysis.logit_lens)."""

    paper = "paper"
    english_output = "english-output"

"""Published reference numbers (from a paper or a model card) shown beside a board's own results, never mixed into
its statistics: a manifest entry per number, with where it was published."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from mlalign_tasks.errors import MlalignError

REFERENCES_KEY = "references"
REFERENCE_KEYS = ("model", "benchmark", "languages", "value", "source")
_URL = re.compile(r"https?://\S+")
_LANG = re.compile(r"[a-z]{2,3}(-[A-Z][a-z]{3})?")


def check_references(entries: Any, path: Path) -> None:
    """Each entry: model, benchmark (a task family on the board), languages, value (percent, as published) and
    source (an http(s) URL)."""
    if entries is None:
        return
    if not isinstance(entries, list):
        raise MlalignError(f"manifest {path}: '{REFERENCES_KEY}' must be a list of mappings {list(REFERENCE_KEYS)}")
    for i, entry in enumerate(entries):
        where = f"manifest {path}: {REFERENCES_KEY}[{i}]"
        if not isinstance(entry, dict) or set(entry) != set(REFERENCE_KEYS):
            raise MlalignError(f"{where} must have exactly the keys {list(REFERENCE_KEYS)}")
        langs = entry["languages"]
        langs = langs.split(",") if isinstance(langs, str) else langs
        if (
            not isinstance(langs, list)
            or not langs
            or not all(isinstance(c, str) and _LANG.fullmatch(c.strip()) for c in langs)
        ):
            raise MlalignError(f"{where}.languages must be language codes, e.g. [de, fr] or 'de,fr' (got {langs!r})")
        entry["languages"] = [c.strip() for c in langs]
        value = entry["value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise MlalignError(f"{where}.value must be a percentage between 0 and 100, as published (got {value!r})")
        if not isinstance(entry["source"], str) or not _URL.fullmatch(entry["source"]):
            raise MlalignError(f"{where}.source must be the http(s) URL where the number is published")


def reference_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checked entries, as board rows (`value` as a proportion like every other value on the board)."""
    return [
        {
            "model": str(e["model"]),
            "family": str(e["benchmark"]),
            "languages": list(e["languages"]),
            "value": round(e["value"] / 100, 12),  # 57.2 -> 0.572, not 0.5720000000000001
            "source": e["source"],
        }
        for e in entries
    ]


def ours_over(reference: dict[str, Any], primary: dict[tuple[str, str], float]) -> float | None:
    """A board model's mean over the reference's languages of its benchmark (None unless it has every one);
    `primary` maps (family, language) to the model's values."""
    values = [primary.get((reference["family"], lang)) for lang in reference["languages"]]
    return None if any(v is None for v in values) else statistics.fmean(values)

"""lm-eval hooks of qalign_mgsm_cross (filters and metric come from the included qalign_mgsm template)."""

from __future__ import annotations

from mlalign_tasks import math_tasks

FAMILY = "qalign_mgsm_cross"


def load_dataset(lang: str, data_dir: str | None = None, **_: object):
    """custom_dataset hook, called as fn(**metadata, **dataset_kwargs); other keyword arguments are ignored."""
    return math_tasks.load_dataset(FAMILY, lang, data_dir)

"""lm-eval hooks of mgsm_aligned; the logic lives in mlalign_tasks.math_tasks."""

from __future__ import annotations

from mlalign_tasks import math_tasks

FAMILY = "mgsm_aligned"
extract_filter = math_tasks.extract_filter
process_results = math_tasks.process_results


def load_dataset(lang: str, data_dir: str | None = None, **_: object):
    """custom_dataset hook, called as fn(**metadata, **dataset_kwargs); other keyword arguments are ignored."""
    return math_tasks.load_dataset(FAMILY, lang, data_dir)

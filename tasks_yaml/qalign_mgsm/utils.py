"""lm-eval hooks of qalign_mgsm; the logic lives in mlalign_tasks.math_tasks."""

from __future__ import annotations

from mlalign_tasks import math_tasks

FAMILY = "qalign_mgsm"
extract_filter = math_tasks.extract_filter
qalign_filter = math_tasks.qalign_filter
process_results = math_tasks.process_results


def load_dataset(lang: str, data_dir: str | None = None, **_: object):
    """custom_dataset hook, called as fn(**metadata, **dataset_kwargs); other keyword arguments are ignored."""
    return math_tasks.load_dataset(FAMILY, lang, data_dir)

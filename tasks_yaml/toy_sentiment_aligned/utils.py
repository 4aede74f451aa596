"""lm-eval hooks of toy_sentiment_aligned; the logic lives in mlalign_tasks.toy_tasks."""

from __future__ import annotations

from mlalign_tasks import toy_tasks


def load_dataset(lang: str, **_: object):
    """custom_dataset hook, called as fn(**metadata, **dataset_kwargs); other keyword arguments are ignored."""
    return toy_tasks.dataset(toy_tasks.SENTIMENT_FAMILY, lang)

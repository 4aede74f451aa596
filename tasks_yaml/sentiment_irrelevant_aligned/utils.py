"""lm-eval hooks of sentiment_irrelevant_aligned; the logic lives in mlalign_tasks.paper_prompts."""

from __future__ import annotations

from mlalign_tasks import paper_prompts

TASK = "sentiment"
WORDS = paper_prompts.LabelWords.irrelevant


def load_dataset(lang: str, data_dir: str | None = None, **_: object):
    """custom_dataset hook, called as fn(**metadata, **dataset_kwargs); other keyword arguments are ignored."""
    return paper_prompts.dataset(TASK, lang, data_dir, WORDS)

"""The analyses' protocol options (enums only, so the CLI can offer them without importing torch)."""

from __future__ import annotations

from enum import StrEnum


class PaperTask(StrEnum):
    """The paper task an analysis reads its items and prompts from (mlalign_tasks.tasks.paper_prompts.PAPER_TASKS)."""

    sentiment = "sentiment"
    snli = "snli"
    paws = "paws"
    toy_sentiment = "toy_sentiment"  # the toy world's reviews (mlalign_tasks.analysis.paper_items.TOY_TASK)


class LensProtocol(StrEnum):
    """Which logit lens runs (mlalign_tasks.analysis.logit_lens)."""

    paper = "paper"
    english_output = "english-output"


class PcaInput(StrEnum):
    """What a PCA point is made of (mlalign_tasks.analysis.pca)."""

    prompt = "prompt"  # the paper's: the full 2-shot native-label sentiment prompt of an item
    sentence = "sentence"  # mlalign's: the task's first input field alone (premise, sentence1, review)


class Pooling(StrEnum):
    """Which token positions a point's mean runs over."""

    all = "all"  # the paper's: every token, BOS included
    content = "content"  # mlalign's: special tokens (BOS) left out


# The language pairs whose PC1 correlation the paper reports (knowledge_finding.ipynb and the paper's table).
PAPER_PAIRS = ("en-de", "en-fr", "en-hi", "de-fr", "de-hi", "fr-hi", "en-th", "en-sw", "en-ms")

"""Which items of the paper's parallel test sets an analysis uses: prompts (logit lens) and raw sentences (PCA).

The test sets are parallel (item ``i`` of every language translates English item ``i``), so one
seeded choice of item indices is used for every language.
"""

from __future__ import annotations

import numpy as np

from mlalign_tasks import paper_prompts
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.languages import PAPER_LANGS, parse_langs


def check_inputs(task: str, langs: str | list[str], limit: int | None) -> list[str]:
    """Validate the task, the languages (paper languages) and the limit; return the language codes."""
    paper_prompts.check_task(task)
    codes = parse_langs(langs, PAPER_LANGS)
    if limit is not None and limit < 1:
        raise MlalignError(f"--limit must be a positive number of items, got {limit}")
    return codes


def sample_indices(candidates: list[int], limit: int | None, seed: int) -> list[int]:
    """`limit` of the candidate indices drawn without replacement with `seed` (all when no limit), sorted."""
    if limit is None or limit >= len(candidates):
        return list(candidates)
    rng = np.random.default_rng(seed)
    return sorted(int(candidates[i]) for i in rng.choice(len(candidates), size=limit, replace=False))


def prompts(
    task: str,
    langs: list[str],
    limit: int | None,
    seed: int,
    data_dir=None,
    words: paper_prompts.LabelWords = paper_prompts.LabelWords.english,
) -> tuple[list[int], dict]:
    """The chosen item indices and, per language, the items ({"idx", "prompt", "label"}) at those indices, their
    shots answered with `words` (English label words, or each language's own)."""
    by_lang = {lang: paper_prompts.load_items(task, lang, data_dir=data_dir, words=words) for lang in langs}
    chosen = sample_indices(list(range(len(by_lang[langs[0]]))), limit, seed)
    return chosen, {lang: [items[i] for i in chosen] for lang, items in by_lang.items()}


def sentences(task: str, langs: list[str], limit: int | None, seed: int, data_dir=None) -> tuple[list[int], dict]:
    """Parallel sentences: the task's first input field (premise, sentence1, review) of the chosen items.

    Items whose English sentence repeats an earlier one (SNLI has three hypotheses per premise) are
    left out, so every point of the PCA is a distinct sentence.
    """
    field = paper_prompts.sentence_field(task)
    rows = {lang: paper_prompts.test_rows(task, lang, data_dir) for lang in dict.fromkeys(["en", *langs])}
    first: dict[str, int] = {}
    for i, row in enumerate(rows["en"]):
        first.setdefault(row[field], i)
    chosen = sample_indices(sorted(first.values()), limit, seed)
    return chosen, {lang: [rows[lang][i][field] for i in chosen] for lang in langs}

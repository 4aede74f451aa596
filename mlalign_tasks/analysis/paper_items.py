"""Which items of the paper's parallel test sets an analysis uses: prompts (logit lens) and raw sentences (PCA).

The test sets are parallel (item ``i`` of every language translates English item ``i``), so one
seeded choice of item indices is used for every language. Besides the paper's tasks, the toy world's
reviews (`TOY_TASK`, the paper tasks' format in the toy languages) can be analysed.
"""

from __future__ import annotations

import numpy as np

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.tasks import paper_prompts, toy_tasks
from mlalign_tasks.tasks.languages import PAPER_LANGS, TOY_LANGS, parse_langs

TOY_TASK = "toy_sentiment"
TASKS = (*paper_prompts.PAPER_TASKS, TOY_TASK)


def check_inputs(task: str, langs: str | list[str], limit: int | None) -> list[str]:
    """Validate the task, the languages (of that task) and the limit; return the language codes."""
    if task != TOY_TASK and task not in paper_prompts.PAPER_TASKS:
        raise MlalignError(f"unknown paper task {task!r}; valid tasks: {', '.join(TASKS)}")
    codes = parse_langs(langs, TOY_LANGS if task == TOY_TASK else PAPER_LANGS)
    if limit is not None and limit < 1:
        raise MlalignError(f"--limit must be a positive number of items, got {limit}")
    return codes


def sample_indices(candidates: list[int], limit: int | None, seed: int) -> list[int]:
    """`limit` of the candidate indices drawn without replacement with `seed` (all when no limit), sorted."""
    if limit is None or limit >= len(candidates):
        return list(candidates)
    rng = np.random.default_rng(seed)
    return sorted(int(candidates[i]) for i in rng.choice(len(candidates), size=limit, replace=False))


def labels(task: str, langs: list[str], data_dir=None) -> tuple[list[str], dict[str, list[str]]]:
    """The English label words and, per language, the label words in that language ("" where there are none)."""
    if task == TOY_TASK:
        world = toy_tasks.DEFAULT_WORLD
        return list(toy_tasks.LABELS), {lang: [world.word(w, lang) for w in toy_tasks.LABELS] for lang in langs}
    english = paper_prompts.english_labels(task, data_dir)
    return english, {lang: paper_prompts.native_labels(task, lang, data_dir) for lang in langs}


def prompts(
    task: str,
    langs: list[str],
    limit: int | None,
    seed: int,
    data_dir=None,
    words: paper_prompts.LabelWords = paper_prompts.LabelWords.english,
) -> tuple[list[int], dict]:
    """The chosen item indices and, per language, the items ({"idx", "prompt", "label"}) at those indices, their
    shots answered with `words` (English label words, or each language's own; the toy task's: English only)."""
    if task == TOY_TASK:
        if words is not paper_prompts.LabelWords.english:
            raise MlalignError(f"the {TOY_TASK} task has English-label prompts only")
        by_lang = {lang: toy_tasks.sentiment_items(lang) for lang in langs}
    else:
        by_lang = {lang: paper_prompts.load_items(task, lang, data_dir=data_dir, words=words) for lang in langs}
    chosen = sample_indices(list(range(len(by_lang[langs[0]]))), limit, seed)
    return chosen, {lang: [items[i] for i in chosen] for lang, items in by_lang.items()}


def sentences(task: str, langs: list[str], limit: int | None, seed: int, data_dir=None) -> tuple[list[int], dict]:
    """Parallel sentences: the task's first input field (premise, sentence1, review) of the chosen items.

    Items whose English sentence repeats an earlier one (SNLI has three hypotheses per premise) are
    left out, so every point of the PCA is a distinct sentence.
    """
    if task == TOY_TASK:
        texts = {lang: toy_tasks.reviews(lang) for lang in dict.fromkeys(["en", *langs])}
    else:
        field = paper_prompts.sentence_field(task)
        texts = {
            lang: [row[field] for row in paper_prompts.test_rows(task, lang, data_dir)]
            for lang in dict.fromkeys(["en", *langs])
        }
    first: dict[str, int] = {}
    for i, text in enumerate(texts["en"]):
        first.setdefault(text, i)
    chosen = sample_indices(sorted(first.values()), limit, seed)
    return chosen, {lang: [texts[lang][i] for i in chosen] for lang in langs}

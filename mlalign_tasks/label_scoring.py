"""How the paper-format tasks (the paper tasks, their label variants, and the toy world's reviews) score their
label words after the prompt's opening quote (`mlalign eval --label-scoring`).

- ``paper`` (the default of ``mlalign eval`` and ``mlalign run``): the papers' scoring. One forward per item; the
  softmax over the vocabulary at the last prompt position; each label's probability is the sum over its token
  set (`mlalign_tasks.label_tokens.paper_token_set`); the largest sum wins; exact ties are broken by a seeded
  random choice. Each task's token sets are recorded in its results config (``metadata.label_token_sets``).
- ``first-token``: the probability of each label's first token after the quote. Each choice becomes the text of
  that one token, so lm-eval scores one-token continuations and, through its logits cache, runs one forward per
  item; ties go to the first label (lm-eval's argmax).
- ``label`` (the tasks' YAML, and what plain ``lm_eval`` runs): the log-likelihood of the whole label word, one
  forward per label.

`apply_scoring` prepares the loaded lm-eval tasks for the chosen scoring before the model is loaded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from mlalign_tasks import label_tokens
from mlalign_tasks.errors import MlalignError


class Scoring(StrEnum):
    """The label scorings (values as given on the command line)."""

    paper = "paper"
    first_token = "first-token"
    label = "label"


SCORINGS = tuple(s.value for s in Scoring)


def check_scoring(scoring: str) -> Scoring:
    try:
        return Scoring(scoring)
    except ValueError:
        raise MlalignError(f"unknown label scoring {scoring!r}; choose one of {', '.join(SCORINGS)}") from None


def paper_families() -> set[str]:
    """The task families whose label words this module rescores (the paper tasks, their label variants, and the
    toy world's reviews)."""
    from mlalign_tasks.paper_prompts import label_families
    from mlalign_tasks.toy_tasks import SENTIMENT_FAMILY

    return {*label_families(), SENTIMENT_FAMILY}


def first_token_choices(tokenizer, prompt: str, labels: list[str]) -> list[str]:
    """The text of each label's first token after `prompt`, as lm-eval splits prompt + label into tokens.

    Raises when a label's first token cannot be isolated (the prompt's last token merges with the label) or
    when two labels share their first token (their scores would tie).
    """
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    choices = []
    for label in labels:
        first = label_tokens.first_token_id(tokenizer, prompt, label)
        text = tokenizer.decode([first])
        if not text or tokenizer(prompt + text, add_special_tokens=False)["input_ids"] != [*context, first]:
            raise MlalignError(
                f"cannot isolate the first token of label {label!r} after the prompt with this tokenizer "
                f"(it merges with the prompt's end); use --label-scoring label"
            )
        choices.append(text)
    if len(set(choices)) < len(choices):
        raise MlalignError(
            f"labels {labels} share a first token ({choices}) with this tokenizer, so first-token scoring cannot "
            "tell them apart; use --label-scoring label"
        )
    return choices


@dataclass(frozen=True)
class SeededArgmax:
    """A paper task's `process_results` under paper scoring: is the most probable label the gold one?

    Exact ties are broken by ``random.Random(f"{seed}:{idx}")``: one draw per item, whatever order items run in.
    """

    seed: int

    def __call__(self, doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
        scores = [float(ll) for ll, _ in results]
        tied = [i for i, s in enumerate(scores) if s == max(scores)]
        pick = tied[0] if len(tied) == 1 else random.Random(f"{self.seed}:{doc['idx']}").choice(tied)
        return {"acc": float(pick == doc["label"])}


def _paper_labels(task) -> list[str]:
    """The words the papers' scripts score in a loaded paper task (the same for all its items).

    Where they differ from the whole label words (the Thai native-label case), each item's prompt is extended by
    its ``paper_suffix`` and its choices become its ``paper_choices``.
    """
    split = task.config.test_split
    docs = task.dataset[split]
    labels = {tuple(doc["paper_choices"]) for doc in docs}
    if len(labels) != 1:
        raise MlalignError(f"{task.config.task}: items have different label words {sorted(labels)}")
    if any(doc["paper_suffix"] or doc["paper_choices"] != doc["choices"] for doc in docs):
        task.dataset[split] = _map_quietly(
            docs, lambda d: {"prompt": d["prompt"] + d["paper_suffix"], "choices": d["paper_choices"]}
        )
    return list(labels.pop())


def apply_scoring(tasks: dict, tokenizer, scoring: Scoring, seed: int) -> dict[str, dict[str, list[int]]]:
    """Prepare the loaded paper tasks (lm-eval task objects by name) for `scoring`.

    Every paper task records ``label_scoring`` in its config metadata (so the results file says how it was scored);
    under ``paper`` also ``label_token_sets`` (label -> vocabulary entries) and the seeded tie-breaking
    `process_results`. Returns, for ``paper``, task name -> label word -> token ids (what `TokenSetLM` sums over).
    """
    families = paper_families()
    names = [name for name in tasks if name.rpartition("_")[0] in families]
    token_sets: dict[str, dict[str, list[int]]] = {}
    if scoring is Scoring.first_token:
        _rewrite_first_token([tasks[n] for n in names], tokenizer)
    for name in names:
        task = tasks[name]
        metadata = {"label_scoring": scoring.value}
        if scoring is Scoring.paper:
            labels = _paper_labels(task)
            sets = label_tokens.paper_token_sets(tokenizer, labels, what=name)
            token_sets[name] = dict(zip(labels, sets, strict=True))
            metadata["label_token_sets"] = {
                w: label_tokens.token_strings(tokenizer, ids) for w, ids in token_sets[name].items()
            }
            task.config.process_results = SeededArgmax(seed)
        task.config.metadata = {**(task.config.metadata or {}), **metadata}
    return token_sets


def _rewrite_first_token(tasks: list, tokenizer) -> None:
    """Replace each item's choices by the text of the labels' first tokens after its prompt."""
    cache: dict[tuple[str, tuple[str, ...]], list[str]] = {}

    def rewrite(doc: dict) -> dict:
        # Where the label's first token starts depends only on the prompt's last line (the query template's
        # 'Answer: "'; tokenizers split at newlines), so each distinct last line is worked out once.
        key = (doc["prompt"].rpartition("\n")[2], tuple(doc["choices"]))
        if key not in cache:
            cache[key] = first_token_choices(tokenizer, doc["prompt"], doc["choices"])
        return {"choices": cache[key]}

    for task in tasks:
        split = task.config.test_split
        task.dataset[split] = _map_quietly(task.dataset[split], rewrite)


def _map_quietly(dataset, fn):
    """`dataset.map(fn)` without a progress bar and without datasets' cache."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    bars = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        return dataset.map(fn, load_from_cache_file=False)
    finally:
        if bars:
            enable_progress_bar()

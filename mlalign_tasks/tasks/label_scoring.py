"""How the paper-format tasks (the paper tasks, their label variants, and the toy world's reviews) score their
label words after the prompt's opening quote (`mlalign eval --label-scoring`).

- ``paper`` (the default of ``mlalign eval`` and ``mlalign run``): the papers' scoring. One forward per item; the
  softmax over the vocabulary at the last prompt position; each label's probability is the sum over its token
  set (`mlalign_tasks.tasks.label_tokens.paper_token_set`), even where two labels' sets share tokens; the largest sum
  wins; exact ties as upstream breaks them (`UpstreamTies`). Each task's token sets are recorded in its results
  config (``metadata.label_token_sets``), with the tokens labels share (``metadata.label_token_overlap``).
  Thai's native labels as upstream: the prompt's ids, then the ids of ``tokenizer("เชิง")`` on its own (with the
  BOS and the word-start marker the tokenizer adds), and ``บวก`` vs ``ลบ`` scored.
- ``token-sets``: mlalign's variant of ``paper``: the generic token sets (`label_tokens.generic_token_set`),
  labels sharing a token refused, exact ties broken per item (`SeededArgmax`), so an item's result does not depend
  on the items before it; Thai's ``เชิง`` is appended to the prompt text.
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

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.tasks import label_tokens


class Scoring(StrEnum):
    """The label scorings (values as given on the command line)."""

    paper = "paper"
    token_sets = "token-sets"
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
    from mlalign_tasks.tasks.paper_prompts import label_families
    from mlalign_tasks.tasks.toy_tasks import SENTIMENT_FAMILY

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


class Gold(StrEnum):
    """Which label an item's prediction is compared with (`mlalign eval --gold`)."""

    english = "english"  # the English file's label, by index (the test sets are parallel)
    upstream = "upstream"  # the scripts' rule: the data's answer in X against their label words (the item's
    # ``upstream_gold``, -1 where no word matches: SNLI ja and bn); the toy world has no such rule


def _gold(doc: dict, gold: Gold) -> int:
    return doc.get("upstream_gold", doc["label"]) if gold is Gold.upstream else doc["label"]


@dataclass(frozen=True)
class SeededArgmax:
    """A paper task's `process_results`: is the most probable label the gold one?

    Exact ties are broken by ``random.Random(f"{seed}:{idx}")``: one draw per item, whatever order items run in.
    """

    seed: int
    gold: Gold = Gold.english
    rule = "per item: random.Random(f'{seed}:{idx}').choice(tied)"

    def __call__(self, doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
        scores = [float(ll) for ll, _ in results]
        tied = [i for i, s in enumerate(scores) if s == max(scores)]
        pick = tied[0] if len(tied) == 1 else random.Random(f"{self.seed}:{doc['idx']}").choice(tied)
        return {"acc": float(pick == _gold(doc, self.gold))}


class UpstreamTies:
    """A paper task's `process_results` that breaks exact ties as the papers' scripts do.

    Each script run (one task in one language) calls ``set_seed(0)`` once, and every tie draws
    ``random.randint(0, 1)`` from that one stream, in item order: 1 picks the first tied label, 0 the last. So an SNLI
    three-way tie picks entailment or contradiction, never neutral. Items must come in order (lm-eval scores them so).
    """

    rule = "upstream: one random.Random(0) per task; each tie in item order: randint(0, 1) == 1 -> first tied label"

    def __init__(self, gold: Gold = Gold.english) -> None:
        self.gold = gold
        self._random = random.Random(0)
        self._last = -1

    def pick(self, idx: int, scores: list[float]) -> int:
        """The predicted label of item `idx` (items in increasing order) from its labels' scores."""
        if idx <= self._last:
            raise MlalignError(f"item {idx} scored after item {self._last}: upstream's ties need item order")
        self._last = idx
        tied = [i for i, s in enumerate(scores) if s == max(scores)]
        return tied[0] if len(tied) == 1 or self._random.randint(0, 1) == 1 else tied[-1]

    def __call__(self, doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
        pick = self.pick(doc["idx"], [float(ll) for ll, _ in results])
        return {"acc": float(pick == _gold(doc, self.gold))}


class FirstArgmax:
    """A paper task's `process_results` for the other scorings with ``--gold upstream``: lm-eval's argmax (ties to
    the first label) against the chosen gold."""

    rule = "the first of the tied labels (lm-eval's argmax)"

    def __init__(self, gold: Gold) -> None:
        self.gold = gold

    def __call__(self, doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
        scores = [float(ll) for ll, _ in results]
        return {"acc": float(scores.index(max(scores)) == _gold(doc, self.gold))}


def _paper_labels(task, scoring: Scoring) -> tuple[list[str], str]:
    """The words the papers' scripts score in a loaded paper task, and the text they append to its prompts first
    ("" but in the Thai native-label case), both the same for all its items.

    Where the words differ from the whole label words, each item's choices become its ``paper_choices``; under
    ``token-sets`` each prompt is also extended by the item's ``paper_suffix`` as text (``paper`` appends the
    suffix's own encoding instead: `TaskTokenSets.tail`).
    """
    split = task.config.test_split
    docs = task.dataset[split]
    labels = {(tuple(doc["paper_choices"]), doc["paper_suffix"]) for doc in docs}
    if len(labels) != 1:
        raise MlalignError(f"{task.config.task}: items have different label words {sorted(labels)}")
    words, suffix = labels.pop()
    if suffix or list(words) != docs[0]["choices"]:
        text = "" if scoring is Scoring.paper else suffix
        task.dataset[split] = _map_quietly(
            docs, lambda d: {"prompt": d["prompt"] + text, "choices": d["paper_choices"]}
        )
    return list(words), suffix


def apply_scoring(
    tasks: dict, tokenizer, scoring: Scoring, seed: int, gold: Gold = Gold.english
) -> dict[str, dict[str, list[int]]]:
    """Prepare the loaded paper tasks (lm-eval task objects by name) for `scoring` and the `gold` rule.

    Every paper task records ``label_scoring`` and ``gold`` in its config metadata (so the results file says how it
    was scored); under ``paper`` and ``token-sets`` also ``label_token_sets`` (label -> vocabulary entries), the
    ``tie_rule`` and its `process_results`, and where text is appended to the prompts (Thai's native labels) how
    (``prompt_suffix``); under ``paper`` the tokens labels share (``label_token_overlap``).
    Returns, for those two, task name -> its `TaskTokenSets` (what `TokenSetLM` sums over).
    """
    from mlalign_tasks.models.token_set_lm import TaskTokenSets

    families = paper_families()
    names = [name for name in tasks if name.rpartition("_")[0] in families]
    token_sets: dict[str, TaskTokenSets] = {}
    if scoring is Scoring.first_token:
        _rewrite_first_token([tasks[n] for n in names], tokenizer)
    for name in names:
        task = tasks[name]
        metadata = {"label_scoring": scoring.value, "gold": gold.value}
        if scoring in (Scoring.paper, Scoring.token_sets):
            labels, suffix = _paper_labels(task, scoring)
            sets = _token_sets(tokenizer, labels, scoring, name)
            tail = tuple(tokenizer(suffix)["input_ids"]) if suffix and scoring is Scoring.paper else ()
            token_sets[name] = TaskTokenSets(sets, tail)
            metadata["label_token_sets"] = {w: label_tokens.token_strings(tokenizer, ids) for w, ids in sets.items()}
            if suffix:
                metadata["prompt_suffix"] = _suffix_rule(tokenizer, suffix, tail)
            if scoring is Scoring.paper:
                overlap = label_tokens.shared_tokens(sets)
                metadata["label_token_overlap"] = {
                    p: label_tokens.token_strings(tokenizer, i) for p, i in overlap.items()
                }
            scorer = UpstreamTies(gold) if scoring is Scoring.paper else SeededArgmax(seed, gold)
            task.config.process_results = scorer
            metadata["tie_rule"] = scorer.rule
        elif gold is Gold.upstream:
            task.config.process_results = FirstArgmax(gold)
        task.config.metadata = {**(task.config.metadata or {}), **metadata}
    return token_sets


def _suffix_rule(tokenizer, suffix: str, tail: tuple[int, ...]) -> dict:
    """How `suffix` was appended to the prompts, for the results: as its own encoding (`tail`) or as text."""
    if not tail:
        return {"text": suffix, "rule": "appended to the prompt text, encoded with it"}
    return {
        "text": suffix,
        "rule": "upstream: tokenizer(prompt) ids, then tokenizer(suffix) ids (each with the tokenizer's defaults)",
        "tokens": label_tokens.token_strings(tokenizer, list(tail)),
    }


def _token_sets(tokenizer, labels: list[str], scoring: Scoring, name: str) -> dict[str, list[int]]:
    """The token set of each label of task `name` under `scoring` (``paper`` or ``token-sets``), checked."""
    from mlalign_tasks.tasks.paper_prompts import LABEL_VARIANTS, LabelWords

    if scoring is Scoring.paper:
        # upstream's irrelevant-label script drops the first-token rule
        first_tokens = LABEL_VARIANTS.get(name.rpartition("_")[0], ("", None))[1] is not LabelWords.irrelevant
        sets = {w: label_tokens.paper_token_set(tokenizer, w, first_tokens) for w in labels}
    else:
        sets = {w: label_tokens.generic_token_set(tokenizer, w) for w in labels}
    label_tokens.check_token_sets(tokenizer, sets, name, strict=scoring is Scoring.token_sets)
    return sets


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

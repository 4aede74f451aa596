"""How the paper tasks (SNLI, PAWS, sentiment) score their English label words after the prompt's opening quote.

- ``label`` (the tasks' YAML, and what plain ``lm_eval`` runs): the log-likelihood of the whole label word.
- ``first-token`` (the paper's scripts): the probability of each label's first token after the quote. Each choice
  becomes the text of that one token, so lm-eval scores one-token continuations and, through its logits cache,
  runs one forward per item instead of one per label.

The first token depends on the tokenizer, so `mlalign eval --label-scoring first-token` rewrites the loaded
tasks' choices for the model's tokenizer before evaluating.
"""

from __future__ import annotations

from enum import StrEnum

from mlalign_tasks.errors import MlalignError


class Scoring(StrEnum):
    """The label scorings (values as given on the command line)."""

    label = "label"
    first_token = "first-token"


SCORINGS = tuple(s.value for s in Scoring)


def check_scoring(scoring: str) -> str:
    if scoring not in SCORINGS:
        raise MlalignError(f"unknown label scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")
    return scoring


def paper_families() -> set[str]:
    """The task families whose label words this module rescores."""
    from mlalign_tasks.paper_prompts import PAPER_TASKS

    return set(PAPER_TASKS.values())


def first_token_choices(tokenizer, prompt: str, labels: list[str]) -> list[str]:
    """The text of each label's first token after `prompt`, as lm-eval splits prompt + label into tokens.

    Raises when a label's first token cannot be isolated (the prompt's last token merges with the label) or
    when two labels share their first token (the paper's comparison would be a tie).
    """
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    choices = []
    for label in labels:
        whole = tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
        first = whole[len(context)] if len(whole) > len(context) and whole[: len(context)] == context else None
        text = tokenizer.decode([first]) if first is not None else ""
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


def apply_first_token(tasks: dict, tokenizer) -> list[str]:
    """Rewrite the choices of every loaded paper task (lm-eval task objects by name); returns their names.

    Each task's config metadata records ``label_scoring: first-token``, so the results file says how it was scored.
    """
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    families = paper_families()
    names = [name for name in tasks if name.rpartition("_")[0] in families]
    cache: dict[tuple[str, tuple[str, ...]], list[str]] = {}

    def rewrite(doc: dict) -> dict:
        # Where the label's first token starts depends only on the prompt's last line (the query template's
        # 'Answer: "'; tokenizers split at newlines), so each distinct last line is worked out once.
        key = (doc["prompt"].rpartition("\n")[2], tuple(doc["choices"]))
        if key not in cache:
            cache[key] = first_token_choices(tokenizer, doc["prompt"], doc["choices"])
        return {"choices": cache[key]}

    bars = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        for name in names:
            task = tasks[name]
            split = task.config.test_split
            task.dataset[split] = task.dataset[split].map(rewrite, load_from_cache_file=False)
            task.config.metadata = {**(task.config.metadata or {}), "label_scoring": "first-token"}
    finally:
        if bars:
            enable_progress_bar()
    return names

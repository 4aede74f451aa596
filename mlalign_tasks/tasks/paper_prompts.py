"""The paper's three classification tasks (SNLI, PAWS, Amazon-polarity sentiment): prompts, items, gold labels.

Facts from the original "enout" evaluation scripts of Zhang et al. (2024), kept as data in
``paper_tasks/prompts.json`` (shipped in the package, ``resources/paper_prompts.json``; provenance in the data
registry): the prompt of an item is the few-shot prefix in language X followed
directly by the query template filled with the item (the template starts with the newline that
separates it from the prefix and ends with the opening quote of the answer). The few-shot answers
are the English label words, and the model is scored on the label word that follows the quote.

The test sets are parallel across languages: item ``i`` of every language translates item ``i`` of
English, so the gold label of every item is read from the English file by index (the data's own
label words in language X do not always equal the scripts' words, e.g. SNLI ja and bn). The scripts' own rule
(`upstream_gold`) is kept beside it, for reproducing a published number (`mlalign eval --gold upstream`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data
from mlalign_tasks.tasks.languages import PAPER_LANGS, check_lang

PROMPTS_FILE = "paper_tasks/prompts.json"

# task key (as in prompts.json) -> lm-eval task family
PAPER_TASKS: dict[str, str] = {"snli": "snli_aligned", "paws": "paws_aligned", "sentiment": "sentiment_aligned"}

# prompts.json label keys, in the order of the label indices.
_LABEL_KEYS = ("positive_answers", "neutral_answers", "negative_answers")


class LabelWords(StrEnum):
    """Which words the few-shot answers and the scored labels are (the papers' evaluation variants)."""

    english = "english"  # the English label words in every language (the "enout" scripts)
    native = "native"  # language X's own label words (emotion_eval_2shot.py)
    irrelevant = "irrelevant"  # "ox" and "horse" in every language (emotion_eval_2shot_irrelative.py)


# The variant task families: family -> (task, label words). Upstream has them for the sentiment task only.
LABEL_VARIANTS: dict[str, tuple[str, LabelWords]] = {
    "sentiment_native_aligned": ("sentiment", LabelWords.native),
    "sentiment_irrelevant_aligned": ("sentiment", LabelWords.irrelevant),
}
# emotion_eval_2shot_irrelative.py (LML @ 5605459): the shots answer "ox" (positive) and "horse" (negative).
IRRELEVANT_WORDS = ("ox", "horse")
# emotion_eval_2shot.py: Thai's native labels เชิงบวก / เชิงลบ share their start, so "เชิง" is appended to the
# prompt and the rest, "บวก" vs "ลบ", is scored. It appends tokenizer("เชิง") to the prompt's ids: a BOS and, for
# SentencePiece, a word-start marker inside the prompt (label_scoring's paper scoring does the same).
THAI_NATIVE_SUFFIX, THAI_NATIVE_LABELS = "เชิง", ("บวก", "ลบ")


@dataclass(frozen=True)
class _Spec:
    """Where a task's test set lives and which item fields fill which template slot."""

    file: str  # registry name with {lang}
    fields: dict[str, str]  # template slot -> data field


_SPECS: dict[str, _Spec] = {
    "snli": _Spec("paper_tasks/snli/snli_{lang}600_test.json", {"p": "premise", "h": "hypothesis"}),
    "paws": _Spec("paper_tasks/paws/paws_{lang}500_test.json", {"s1": "sentence1", "s2": "sentence2"}),
    "sentiment": _Spec("paper_tasks/ap_emotion/emotion_{lang}500_test.json", {"i": "input"}),
}
DataDir = str | os.PathLike | None


def label_families() -> tuple[str, ...]:
    """Every lm-eval family whose items are paper prompts scored over label words (`--label-scoring` applies)."""
    return (*PAPER_TASKS.values(), *LABEL_VARIANTS)


def check_task(task: str) -> str:
    """Return `task` if it is one of PAPER_TASKS, else raise with the valid names."""
    if task not in PAPER_TASKS:
        raise MlalignError(f"unknown paper task {task!r}; valid tasks: {', '.join(PAPER_TASKS)}")
    return task


def _task_prompts(task: str, data_dir: DataDir = None) -> dict[str, Any]:
    check_task(task)
    prompts = data.read_registry_json(PROMPTS_FILE, data_dir=data_dir)
    entry = prompts.get(task) if isinstance(prompts, dict) else None
    if not isinstance(entry, dict) or not all(k in entry for k in ("fewshot_prefix", "query_template", "labels")):
        raise DataError(
            f"{PROMPTS_FILE} has no valid entry for {task!r} (needs fewshot_prefix, query_template, labels); "
            "restore the file (or reinstall mlalign)"
        )
    return entry


def english_labels(task: str, data_dir: DataDir = None) -> list[str]:
    """The English label words of `task`; a gold label is an index into this list."""
    labels = _task_prompts(task, data_dir)["labels"]
    words = [labels[k].get("en", "") for k in _LABEL_KEYS if k in labels]
    if len(words) < 2 or not all(isinstance(w, str) and w for w in words):
        raise DataError(f"{PROMPTS_FILE}: {task} needs at least two English label words, got {words}")
    return words


def native_labels(task: str, lang: str, data_dir: DataDir = None) -> list[str]:
    """The scripts' label words of `task` in `lang` ("" where the scripts have none, e.g. PAWS)."""
    check_lang(lang, PAPER_LANGS, what=f"{task} language")
    labels = _task_prompts(task, data_dir)["labels"]
    return [labels[k].get(lang, "") for k in _LABEL_KEYS if k in labels]


@dataclass(frozen=True)
class Variant:
    """One language's label words in a variant: the shots' answers (the whole labels), and what the papers' scripts
    score: `paper_labels` after `paper_suffix` is appended to the prompt (the Thai native case; else the labels)."""

    shots: list[str]
    paper_labels: list[str]
    paper_suffix: str = ""


def variant(task: str, lang: str, words: LabelWords, data_dir: DataDir = None) -> Variant:
    """The label words of `task` in `lang` for the variant `words` (see LabelWords)."""
    english = english_labels(task, data_dir)
    if words is LabelWords.english:
        return Variant(english, english)
    if words is LabelWords.irrelevant:
        return Variant(list(IRRELEVANT_WORDS), list(IRRELEVANT_WORDS))
    native = native_labels(task, lang, data_dir)
    if not all(native):
        raise DataError(f"{PROMPTS_FILE} has no {task} label words in {lang!r}: the native-label variant needs them")
    if lang == "th":
        return Variant(native, list(THAI_NATIVE_LABELS), THAI_NATIVE_SUFFIX)
    return Variant(native, native)


def _shots_answering(prefix: str, english: list[str], shots: list[str], where: str) -> str:
    """`prefix` with every quoted English label word ("positive") replaced by the variant's word ("ox")."""
    for old, new in zip(english, shots, strict=True):
        if f'"{old}"' not in prefix:
            raise DataError(f"{PROMPTS_FILE}: the few-shot prefix of {where} has no answer {old!r}; restore the file")
        prefix = prefix.replace(f'"{old}"', f'"{new}"')
    return prefix


def _read_rows(task: str, lang: str, data_dir: DataDir) -> list[dict]:
    spec = _SPECS[task]
    name = spec.file.format(lang=lang)
    rows = data.read_registry_json(name, data_dir=data_dir)
    needed = (*spec.fields.values(), "answer")
    if not isinstance(rows, list):
        raise DataError(f"{name} must be a JSON list of items; restore it with `mlalign data fetch {name}`")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(f), str) for f in needed):
            raise DataError(
                f"{name} item {i} lacks string fields {', '.join(needed)}; restore it with `mlalign data fetch {name}`"
            )
    return rows


def gold_labels(task: str, lang: str = "en", data_dir: DataDir = None) -> list[int]:
    """Gold label indices of every item, taken from the English file and checked against `lang`'s file.

    Raises DataError when an English answer is not an English label word, when the files differ in
    length, or when the answers of `lang` do not map one-to-one onto the English labels by index
    (a sign that the files are not parallel).
    """
    return _gold_and_rows(task, lang, data_dir)[0]


def test_rows(task: str, lang: str, data_dir: DataDir = None) -> list[dict]:
    """The raw test items of `task` in `lang`, checked to be parallel to English."""
    return _gold_and_rows(task, lang, data_dir)[1]


def sentence_field(task: str) -> str:
    """The item field that holds the task's main sentence (premise, sentence1, review)."""
    return next(iter(_SPECS[check_task(task)].fields.values()))


def _gold_and_rows(task: str, lang: str, data_dir: DataDir) -> tuple[list[int], list[dict]]:
    check_task(task)
    check_lang(lang, PAPER_LANGS, what=f"{task} language")
    words = english_labels(task, data_dir)
    english = _read_rows(task, "en", data_dir)
    name_en = _SPECS[task].file.format(lang="en")
    gold = []
    for i, row in enumerate(english):
        if row["answer"] not in words:
            raise DataError(
                f"{name_en} item {i} has answer {row['answer']!r}, not one of the English labels {words}; "
                f"restore it with `mlalign data fetch {name_en}`"
            )
        gold.append(words.index(row["answer"]))
    if lang == "en":
        return gold, english
    rows = _read_rows(task, lang, data_dir)
    _check_parallel(task, lang, gold, rows)
    return gold, rows


def _check_parallel(task: str, lang: str, gold: list[int], rows: list[dict]) -> None:
    name = _SPECS[task].file.format(lang=lang)
    if len(rows) != len(gold):
        raise DataError(
            f"{name} has {len(rows)} items but the English file has {len(gold)}; the test sets must be parallel "
            f"(item i translates English item i): restore it with `mlalign data fetch {name}`"
        )
    seen: dict[str, int] = {}
    for i, (row, g) in enumerate(zip(rows, gold, strict=True)):
        first = seen.setdefault(row["answer"], g)
        if first != g:
            raise DataError(
                f"{name} item {i}: answer {row['answer']!r} stands for English label {first} elsewhere but for {g} "
                f"here; the file is not parallel to English: restore it with `mlalign data fetch {name}`"
            )


def upstream_gold(task: str, lang: str, words: LabelWords, data_dir: DataDir = None) -> list[int]:
    """Each item's gold label index as the scripts decide it, -1 where no label can count as correct.

    The scripts compare the item's answer in `lang` with their label words: PAWS with the English words; SNLI and
    sentiment with the words of `lang` (equal to the answer; the native-label script: the predicted word starts
    with the answer). Where the data's answers are other words (SNLI ja ``中性``, bn ``ধারণ করে``), that class is
    never right.
    """
    rows = _read_rows(task, lang, data_dir)
    script = english_labels(task, data_dir) if task == "paws" else native_labels(task, lang, data_dir)
    if words is LabelWords.native:
        matches = [[i for i, w in enumerate(script) if w and w.startswith(row["answer"])] for row in rows]
    else:
        matches = [[i for i, w in enumerate(script) if w == row["answer"]] for row in rows]
    return [m[0] if m else -1 for m in matches]


def _fill(entry: dict[str, Any], task: str, lang: str, row: dict) -> str:
    """The paper's prompt for one item: few-shot prefix in `lang` + filled query template (ends with '"')."""
    try:
        prefix, template = entry["fewshot_prefix"][lang], entry["query_template"][lang]
    except KeyError:
        raise DataError(f"{PROMPTS_FILE} has no {task} prompt for {lang!r}; restore the file") from None
    try:
        return prefix + template.format(**{slot: row[field] for slot, field in _SPECS[task].fields.items()})
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(
            f"{PROMPTS_FILE}: the {task} query template for {lang!r} has an unexpected placeholder ({e}); "
            f"it may only use {', '.join('{' + s + '}' for s in _SPECS[task].fields)}"
        ) from None


def load_items(
    task: str,
    lang: str,
    data_dir: DataDir = None,
    limit: int | None = None,
    words: LabelWords = LabelWords.english,
) -> list[dict]:
    """Items of `task` in `lang`: {"idx", "prompt", "label"} with the gold label from English by index.

    With `words` other than English the shots answer with that variant's words (see `variant`).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise MlalignError(f"limit must be a positive integer or None, got {limit!r}")
    gold, rows = _gold_and_rows(task, lang, data_dir)
    entry = dict(_task_prompts(task, data_dir))
    labels = variant(task, lang, words, data_dir)
    if words is not LabelWords.english:
        prefix = entry["fewshot_prefix"].get(lang, "")
        shots = _shots_answering(prefix, english_labels(task, data_dir), labels.shots, f"{task} {lang}")
        entry["fewshot_prefix"] = {lang: shots}
    n = len(rows) if limit is None else min(limit, len(rows))
    return [{"idx": i, "prompt": _fill(entry, task, lang, rows[i]), "label": gold[i]} for i in range(n)]


def dataset(task: str, lang: str, data_dir: DataDir = None, words: LabelWords = LabelWords.english):
    """The items as a `datasets.DatasetDict` with one `test` split, for lm-eval's custom_dataset hook.

    Each row also carries ``choices`` (the whole label words), read by the task's ``doc_to_choice``, and
    ``paper_suffix`` / ``paper_choices``: what `--label-scoring paper` scores instead (see `Variant`), and
    ``upstream_gold`` (`--gold upstream`).
    """
    import datasets

    labels = variant(task, lang, words, data_dir)
    extra = {"choices": labels.shots, "paper_suffix": labels.paper_suffix, "paper_choices": labels.paper_labels}
    upstream = upstream_gold(task, lang, words, data_dir)
    items = [
        {**item, **extra, "upstream_gold": upstream[item["idx"]]}
        for item in load_items(task, lang, data_dir, words=words)
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(items)})

"""Stage-II data (QAlign's response alignment): English questions with their answers, as prompt/completion rows.

Sources: ``metamathqa``, the hub dataset ``meta-math/MetaMathQA`` (395k pairs, QAlign's) at a pinned revision,
loaded through ``datasets`` (offline, or without the network, a one-line error); ``gsm8k``, the GSM8K training set
pinned in the data registry (``gsm8k/train_en.jsonl``, 7473 problems whose answers end with ``#### N``), offline;
``gsm8kinstruct``, QAlign's multilingual-SFT baseline: GSM8KInstruct's question-answer pairs in its ten languages
(``gsm8k/train_{lang}.jsonl``, English mirrored, the other nine downloaded and checked by git blob id); ``toy``, the
toy world's English items of both tasks with their answers, in the tasks' own formats (`toy_tasks.answered`), and
``toy_math``, its word problems alone (math only, as QAlign's stage II).
"""

from __future__ import annotations

import random

from mlalign_trainer.choices import ResponseSource
from mlalign_trainer.prompts import response_row
from mlalign_trainer.qt_data import LangStats, QTBuild, content_hash

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data

GSM8K_FILE = "gsm8k/train_en.jsonl"
METAMATHQA = "meta-math/MetaMathQA"
METAMATHQA_REVISION = "aa4f34d3d2d3231299b5b03d9b3e5a20da45aa18"  # the hub's main as of 2026-08-11
# QAlign's gsm8kinstruct.py ("all"): these languages, in this order
GSM8KINSTRUCT_LANGS = ("sw", "en", "zh", "bn", "de", "es", "fr", "ja", "ru", "th")
SOURCES = tuple(ResponseSource)
TOY_SOURCES = (ResponseSource.toy, ResponseSource.toy_math)  # the toy world's items, in their tasks' own prompts


def gsm8k_pairs(data_dir=None, lang: str = "en") -> list[tuple[str, str]]:
    """(question, answer) of the pinned GSM8K training set (GSM8KInstruct's, in `lang`)."""
    name = f"gsm8k/train_{lang}.jsonl"
    rows = data.read_registry_jsonl(name, data_dir=data_dir)
    try:
        return [(str(r["question"]), str(r["answer"])) for r in rows]
    except (KeyError, TypeError):
        raise DataError(f"{name} should hold JSON lines with question and answer") from None


def metamathqa_pairs() -> list[tuple[str, str]]:
    """(query, response) of MetaMathQA's training split, from the hub (or the `datasets` cache)."""
    from datasets import load_dataset

    try:
        rows = load_dataset(METAMATHQA, split="train", revision=METAMATHQA_REVISION)
    except (OSError, ValueError) as e:  # offline, no network, not found
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"cannot load the hub dataset {METAMATHQA} ({reason}); it needs the network once (then the datasets "
            "cache), or train stage II on the pinned GSM8K set: --response_source gsm8k"
        ) from None
    return [(str(q), str(a)) for q, a in zip(rows["query"], rows["response"], strict=True)]


def build_response_dataset(
    source: str, examples: int | None, seed: int = 0, fmt: str = "qalign", data_dir=None
) -> QTBuild:
    """`examples` pairs of `source` (None: all; ``gsm8kinstruct``: a language), sampled and shuffled with `seed`,
    with their provenance."""
    from datasets import Dataset

    if source not in SOURCES:
        raise MlalignError(f"unknown response source {source!r}; choose one of {', '.join(SOURCES)}")
    if source in TOY_SOURCES and fmt != "plain":
        raise MlalignError(
            f"--prompt_format {fmt}: the toy items carry their tasks' own prompts; train them with --prompt_format plain"
        )
    if source not in TOY_SOURCES:
        response_row("", "", fmt)  # a format stage II cannot write is refused before the data is read
    if source == "gsm8kinstruct":
        by_lang = {lang: gsm8k_pairs(data_dir, lang) for lang in GSM8KINSTRUCT_LANGS}
    elif source in TOY_SOURCES:  # the toy world's answered English items (`toy_math`: the word problems alone)
        from mlalign_tasks.tasks import toy_tasks

        by_lang = {"en": toy_tasks.answered(math_only=source == ResponseSource.toy_math)}
    else:
        by_lang = {"en": gsm8k_pairs(data_dir) if source == "gsm8k" else metamathqa_pairs()}
    rows, stats = [], {}
    for lang, pairs in by_lang.items():
        n = len(pairs) if examples is None else examples
        if n > len(pairs):
            raise DataError(f"{source} {lang}: only {len(pairs)} question-answer pairs, asked for {n}")
        chosen = random.Random(f"{seed}:{lang}").sample(pairs, n)
        # the toy items as their tasks write them
        rows += [
            {**({"prompt": q, "completion": a} if source in TOY_SOURCES else response_row(q, a, fmt)), "lang": lang}
            for q, a in chosen
        ]
        stats[lang] = LangStats(read=len(pairs), usable=len(pairs), selected=n)
    return QTBuild(
        dataset=Dataset.from_list(rows),
        source=source,
        languages=list(by_lang),
        examples_per_language=examples,
        seed=seed,
        fmt=fmt,
        data_hash=content_hash(rows),
        clean=False,
        stats=stats,
    )

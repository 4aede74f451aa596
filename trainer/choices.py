"""The trainer's choices as enums, importable without torch or TRL (the `mlalign` CLI's options use them)."""

from __future__ import annotations

import enum


class Stage(enum.StrEnum):
    """What a run trains on."""

    question = "question"  # question translation (the paper's training; QAlign's stage I)
    response = "response"  # English question-answer pairs, continuing a stage-I model (QAlign's stage II)


class PromptFormat(enum.StrEnum):
    """How an example is written (see `mlalign_trainer.prompts`)."""

    plain = "plain"  # the question, then the paper's instruction line: "{question}\nTranslate the input from German to English:\n"
    qalign = "qalign"  # QAlign: the instruction in the Alpaca no-input template
    chat = "chat"  # the model's chat template around the plain text (stage I) or the question (stage II)


class Overlong(enum.StrEnum):
    """What happens to a sequence longer than ``max_length``."""

    drop = "drop"  # mlalign's default: every trained example keeps its EOS
    truncate = "truncate"  # both papers' code: the end is cut off


class QTSource(enum.StrEnum):
    """Built-in question-translation sources (`mlalign_trainer.qt_data`)."""

    gsm8k = "gsm8k"  # QAlign's GSM8K question translations
    snli = "snli"  # the paper's task items, translated
    paws = "paws"
    sentiment = "sentiment"  # Amazon polarity
    toy = "toy"  # the toy world's questions (generated)


class ResponseSource(enum.StrEnum):
    """Stage-II data (`mlalign_trainer.response_data`)."""

    gsm8k = "gsm8k"  # the pinned GSM8K training set (offline)
    gsm8kinstruct = "gsm8kinstruct"  # GSM8KInstruct in QAlign's ten languages (its multilingual-SFT baseline)
    metamathqa = "metamathqa"  # the hub dataset meta-math/MetaMathQA (QAlign's)
    toy = "toy"  # the toy world's answered English items of both tasks
    toy_math = "toy_math"  # its word problems alone, with their worked solutions (as QAlign's stage II: math only)


class BuildSource(enum.StrEnum):
    """What `mlalign data build-qt` builds from: a built-in source, or the user's own parallel files."""

    gsm8k = QTSource.gsm8k.value
    snli = QTSource.snli.value
    paws = QTSource.paws.value
    sentiment = QTSource.sentiment.value
    toy = QTSource.toy.value
    files = "files"  # --src-file/--tgt-file or --jsonl

"""The one table of languages and task families that everything else reads."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from mlalign_tasks.errors import MlalignError


@dataclass(frozen=True)
class Language:
    """A benchmark language: ISO 639-1 code and English name."""

    code: str
    name: str


@dataclass(frozen=True)
class ToyLanguage(Language):
    """A synthetic language of the toy world (`mlalign_tasks.tasks.toy_world`), coded in ISO 639-2's local-use range
    qaa-qtz so that no code names a real language. Languages of one family share part of their words."""

    family: str
    script: str = "latin"  # the letters its words are written in (toy_world.SCRIPTS)
    digits: str = "ascii"  # the digits its numbers are written with (toy_world.DIGITS)
    reverse: bool = False  # each sentence's words in reverse order


TOY_LANGUAGES: dict[str, ToyLanguage] = {
    lang.code: lang
    for lang in (
        ToyLanguage("qaa", "Alvi", "alvic"),
        ToyLanguage("qab", "Belvi", "alvic", digits="devanagari"),
        ToyLanguage("qac", "Celvi", "alvic"),
        ToyLanguage("qba", "Borin", "borish", script="cyrillic"),
        ToyLanguage("qbb", "Barin", "borish", script="cyrillic", digits="arabic"),
        ToyLanguage("qca", "Corin", "corian", script="greek", reverse=True),
        ToyLanguage("qcb", "Curin", "corian", script="greek", reverse=True, digits="devanagari"),
    )
}

LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "English"),
        Language("zh", "Chinese"),
        Language("de", "German"),
        Language("fr", "French"),
        Language("es", "Spanish"),
        Language("it", "Italian"),
        Language("nl", "Dutch"),
        Language("ja", "Japanese"),
        Language("ru", "Russian"),
        Language("sv", "Swedish"),
        Language("sl", "Slovenian"),
        Language("pl", "Polish"),
        Language("bg", "Bulgarian"),
        Language("no", "Norwegian"),
        Language("ms", "Malay"),
        Language("is", "Icelandic"),
        Language("hi", "Hindi"),
        Language("th", "Thai"),
        Language("sw", "Swahili"),
        Language("bn", "Bengali"),
        Language("te", "Telugu"),
    )
} | TOY_LANGUAGES

MGSM_LANGS = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
MSVAMP_LANGS = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "th", "zh")
QALIGN_MGSM_LANGS = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "th", "zh")  # QAlign's MGSM: no te
PAPER_LANGS = (
    "en", "zh", "de", "fr", "es", "it", "nl", "ja", "ru", "sv",
    "sl", "pl", "bg", "no", "ms", "is", "hi", "th", "sw", "bn",
)  # fmt: skip
GSM8K_QT_LANGS = ("bn", "de", "es", "fr", "ja", "ru", "sw", "th", "zh")  # QAlign's 9 (bn, th: downloaded)
# The paper's question-translation files of its task items (besides its two-language mixtures); bn and hi of SNLI,
# and all of PAWS and Amazon polarity, are downloaded (pinned by git blob id).
SNLI_QT_LANGS = ("bn", "de", "es", "hi", "it", "sw", "zh")
PAWS_QT_LANGS = ("de", "es", "hi", "it", "sw", "zh")
SENTIMENT_QT_LANGS = ("bn", "de", "es", "hi", "it", "ja", "ru", "sv", "sw", "th", "zh")
TOY_LANGS = ("en", *TOY_LANGUAGES)  # the toy world's English and its synthetic languages

# lm-eval task family (group name) -> languages it covers; tasks are named f"{family}_{code}".
BENCHMARK_FAMILIES: dict[str, tuple[str, ...]] = {
    "mgsm_aligned": MGSM_LANGS,
    "msvamp_aligned": MSVAMP_LANGS,
    "snli_aligned": PAPER_LANGS,
    "paws_aligned": PAPER_LANGS,
    "sentiment_aligned": PAPER_LANGS,
    # the papers' evaluation variants (mlalign_tasks.tasks.paper_prompts.LABEL_VARIANTS)
    "sentiment_native_aligned": PAPER_LANGS,
    "sentiment_irrelevant_aligned": PAPER_LANGS,
    # QAlign's MGSM / MSVAMP protocol, and its cross mode (the English question in every language)
    "qalign_mgsm": QALIGN_MGSM_LANGS,
    "qalign_msvamp": MSVAMP_LANGS,
    "qalign_mgsm_cross": QALIGN_MGSM_LANGS,
    "qalign_msvamp_cross": MSVAMP_LANGS,
}
TOY_FAMILIES: dict[str, tuple[str, ...]] = {
    "toy_sentiment_aligned": TOY_LANGS,  # the paper tasks' format (mlalign_tasks.tasks.toy_tasks)
    "toy_math_aligned": TOY_LANGS,  # MGSM's format
}
FAMILIES: dict[str, tuple[str, ...]] = BENCHMARK_FAMILIES | TOY_FAMILIES
# What `mlalign eval` runs without --tasks: our task families, not the protocol variants beside them.
DEFAULT_FAMILIES = ("mgsm_aligned", "msvamp_aligned", "snli_aligned", "paws_aligned", "sentiment_aligned")
# Groups over families.
SUPER_GROUPS: dict[str, tuple[str, ...]] = {
    "paper_aligned": ("snli_aligned", "paws_aligned", "sentiment_aligned"),
    "toy_aligned": tuple(TOY_FAMILIES),
}


class UnknownLanguageError(MlalignError, ValueError):
    """A language code that is not in the table (or not covered by a task family)."""


def check_lang(code: str, allowed: tuple[str, ...] | None = None, what: str = "language") -> str:
    """Return `code` if known (and in `allowed`), else raise with the valid codes and a suggestion."""
    valid = allowed if allowed is not None else tuple(LANGUAGES)
    if code in valid:
        return code
    hint = difflib.get_close_matches(code, valid, n=1)
    suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
    raise UnknownLanguageError(f"unknown {what} code {code!r}.{suggestion} Valid codes: {', '.join(valid)}")


def parse_langs(spec: str | list[str], allowed: tuple[str, ...] | None = None) -> list[str]:
    """Parse 'de,fr, sw' (or a list) into checked, de-duplicated codes in the given order."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    codes = [c.strip() for c in items if c.strip()]
    if not codes:
        raise UnknownLanguageError("no language codes given (expected e.g. 'de,fr,sw')")
    return list(dict.fromkeys(check_lang(c, allowed) for c in codes))


def task_name(family: str, code: str) -> str:
    """lm-eval task name of one language of a family, e.g. mgsm_aligned_de."""
    return f"{family}_{code}"

"""Question-translation SFT data: a question in language X -> the same question in English, or in another target
language (no answers).

Sources: the GSM8K question translations of QAlign (``question_translation/gsm8k/{lang}-en``); the paper's
translations of its task items, SNLI, PAWS and Amazon-polarity sentiment (``paper_tasks/{snli,paws,ap_emotion}/``:
one file a language, and the paper's two- and three-language mixtures), each item ending with the instruction line
that names its languages; the toy world's questions (``toy``: both toy tasks' questions, generated, without
the test items); or the user's own parallel files (two line-aligned text files, or JSON lines with
source/target fields). The result is a ``datasets`` prompt/completion dataset written in one of the formats of
`mlalign_trainer.prompts`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlalign_trainer.prompts import translation_row

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data
from mlalign_tasks.files.atomic import atomic_dir, write_json_atomic
from mlalign_tasks.files.output_dirs import check_replaceable
from mlalign_tasks.tasks.languages import (
    GSM8K_QT_LANGS,
    LANGUAGES,
    PAWS_QT_LANGS,
    SENTIMENT_QT_LANGS,
    SNLI_QT_LANGS,
    TOY_LANGUAGES,
    UnknownLanguageError,
    check_lang,
    parse_langs,
)

SOURCES: dict[str, tuple[str, ...]] = {
    "gsm8k": GSM8K_QT_LANGS,
    "snli": SNLI_QT_LANGS,
    "paws": PAWS_QT_LANGS,
    "sentiment": SENTIMENT_QT_LANGS,
    "toy": tuple(TOY_LANGUAGES),
}
# The paper's files of a source: name prefix, then the suffix of a one-language file and of a mixture file.
PAPER_FILES = {
    "snli": ("paper_tasks/snli/snli_", "10k_train_question.json", "10k_question.json"),
    "paws": ("paper_tasks/paws/paws_", "10k_train_question.json", "10k_question.json"),
    "sentiment": ("paper_tasks/ap_emotion/emotion_", "10k_question.json", "10k_question.json"),
}
FORMATS = ("plain", "qalign", "chat")
_INSTRUCTION = re.compile(r"\n?Translate the input from (?P<source>[A-Za-z ]+) to (?P<target>[A-Za-z ]+):\n?$")
_CODE_OF = {lang.name: code for code, lang in LANGUAGES.items()}
# A pair whose length ratio is this many times above or below its language's median ratio is misaligned.
MISALIGNED_RATIO = 3.0
BUILD_INFO = "qt_build.json"


@dataclass
class LangStats:
    """What happened to the pairs of one language."""

    read: int = 0
    empty: int = 0
    duplicate: int = 0
    untranslated: int = 0
    misaligned: int = 0
    usable: int = 0
    selected: int = 0


@dataclass
class QTBuild:
    """A built training set (question translations, or stage II's question-answer pairs) with its provenance."""

    dataset: object  # datasets.Dataset
    source: str
    languages: list[str]
    examples_per_language: int | None
    seed: int
    fmt: str
    data_hash: str
    clean: bool = True
    target: str = "en"
    mixture: str | None = None
    stats: dict[str, LangStats] = field(default_factory=dict)

    def info(self) -> dict:
        """JSON-serialisable description (written next to a saved dataset)."""
        return {
            "source": self.source,
            "languages": self.languages,
            "target_language": self.target,
            "mixture": self.mixture,
            "examples_per_language": self.examples_per_language,
            "seed": self.seed,
            "format": self.fmt,
            "clean": self.clean,
            "data_hash": self.data_hash,
            "num_rows": len(self.dataset),
            "stats": {lang: asdict(s) for lang, s in self.stats.items()},
        }


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _aligned_lines(src: Path, tgt: Path) -> list[tuple[str, str]]:
    a, b = _lines(src), _lines(tgt)
    if len(a) != len(b):
        raise DataError(
            f"line counts differ: {src} has {len(a)} lines, {tgt} has {len(b)}; the files must be line-aligned "
            f"translations (line i of one is the translation of line i of the other)"
        )
    return list(zip(a, b, strict=True))


def gsm8k_pairs(lang: str, data_dir=None) -> list[tuple[str, str]]:
    """(question in `lang`, English question) from the GSM8K question translations."""
    check_lang(lang, GSM8K_QT_LANGS, what="GSM8K question-translation language")
    base = f"question_translation/gsm8k/{lang}-en/train"
    return _aligned_lines(data.resolve(f"{base}.{lang}", data_dir), data.resolve(f"{base}.en", data_dir))


def paper_file(source: str, name: str) -> str:
    """The registry name of the paper's file `name` of `source`: a language code, or a mixture (e.g. 'swhi')."""
    prefix, single, mixed = PAPER_FILES[source]
    return f"{prefix}{name}{single if name in LANGUAGES else mixed}"


def mixtures(source: str) -> list[str]:
    """The paper's files of a source that --langs cannot select, by name ('swhi', 'en2zhja2zh', and 'en' for the
    sentiment questions in English), as the data registry pins them."""
    prefix, _, mixed = PAPER_FILES[source]
    names = (n.removeprefix(prefix).removesuffix(mixed) for n in data.registry() if n.startswith(prefix))
    return sorted(
        n for n in names if n.isalnum() and n not in SOURCES[source] and paper_file(source, n) in data.registry()
    )


def paper_rows(name: str, data_dir=None) -> list[tuple[str, str, str | None, str | None]]:
    """(item, answer, source code, target code) of each row of a paper file; the instruction line is stripped from
    the item and read for the two languages (None where an item has none)."""
    rows = data.read_registry_json(name, data_dir=data_dir)
    if not isinstance(rows, list):
        raise DataError(f"{name} should hold a JSON list of {{input, answer}} objects")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{name} item {i} is not an {{input, answer}} object")
        text, answer = str(row.get("input", "")), str(row.get("answer", ""))
        m = _INSTRUCTION.search(text)
        if m is None:
            out.append((text, answer, None, None))
            continue
        codes = (_CODE_OF.get(m["source"]), _CODE_OF.get(m["target"]))
        if None in codes:
            raise DataError(f"{name} item {i}: a language of its instruction is unknown ({m.group(0).strip()!r})")
        out.append((text[: m.start()], answer, *codes))
    return out


def paper_pairs(source: str, lang: str, data_dir=None) -> list[tuple[str, str]]:
    """(task item in `lang`, English item) from the paper's one-language file of `source`."""
    check_lang(lang, SOURCES[source], what=f"{source} question-translation language")
    name = paper_file(source, lang)
    pairs = []
    for i, (item, answer, src, tgt) in enumerate(paper_rows(name, data_dir)):
        if src is not None and (src, tgt) != (lang, "en"):
            raise DataError(
                f"{name} item {i} translates from {LANGUAGES[src].name} to {LANGUAGES[tgt].name}, expected "
                f"{LANGUAGES[lang].name} to English"
            )
        pairs.append((item, answer))
    return pairs


def toy_pairs(lang: str) -> list[tuple[str, str]]:
    """(question in toy language `lang`, toy English question) for the toy world's questions."""
    from mlalign_tasks.tasks import toy_tasks

    check_lang(lang, SOURCES["toy"], what="toy question-translation language")
    world = toy_tasks.DEFAULT_WORLD
    return [(world.translate(question, lang), question) for question in toy_tasks.questions()]


def mixture_pairs(source: str, mixture: str, data_dir=None) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The pairs of one of the paper's mixture files, by (source, target) language as each item's instruction says."""
    if source not in PAPER_FILES or mixture not in mixtures(source):
        known = "; ".join(f"{s}: {', '.join(mixtures(s))}" for s in PAPER_FILES)
        raise MlalignError(f"no {source} mixture {mixture!r}; the paper's mixtures are {known}")
    name = paper_file(source, mixture)
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for i, (item, answer, src, tgt) in enumerate(paper_rows(name, data_dir)):
        if src is None:
            raise DataError(f"{name} item {i} has no instruction line naming its languages")
        groups.setdefault((src, tgt), []).append((item, answer))
    return groups


def english_pairs(source: str, lang: str, data_dir=None) -> list[tuple[str, str]]:
    """(question in `lang`, English question) of a built-in source."""
    if source == "toy":
        return toy_pairs(lang)
    return gsm8k_pairs(lang, data_dir) if source == "gsm8k" else paper_pairs(source, lang, data_dir)


def pivot_pairs(source: str, lang: str, target: str, data_dir=None) -> list[tuple[str, str]]:
    """(question in `lang`, the same question in `target`): the two languages' pairs joined on their English side.

    With ``target='en'`` the source's pairs as they are; with ``lang='en'`` the target's pairs reversed.
    """
    if target == "en":
        return english_pairs(source, lang, data_dir)
    to_target = english_pairs(source, target, data_dir)
    if lang == "en":
        return [(en, t) for t, en in to_target]
    by_english: dict[str, str] = {}
    for t, en in to_target:
        by_english.setdefault(en.strip(), t)
    return [(x, by_english[en.strip()]) for x, en in english_pairs(source, lang, data_dir) if en.strip() in by_english]


def file_pairs(
    src_file: str | Path | None = None,
    tgt_file: str | Path | None = None,
    jsonl: str | Path | None = None,
    source_field: str = "source",
    target_field: str = "target",
) -> list[tuple[str, str]]:
    """The user's own pairs: two line-aligned text files, or JSON lines with source/target fields."""
    if jsonl is not None:
        if src_file or tgt_file:
            raise MlalignError("give either --jsonl or --src-file/--tgt-file, not both")
        path = Path(jsonl)
        if not path.is_file():
            raise DataError(f"JSON-lines file {path} not found")
        pairs = []
        for i, line in enumerate(_lines(path), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {i} is not valid JSON ({e})") from None
            if not isinstance(row, dict) or source_field not in row or target_field not in row:
                raise DataError(
                    f"{path} line {i} lacks the fields {source_field!r} and {target_field!r}; "
                    f"name them with --source-field/--target-field"
                )
            pairs.append((str(row[source_field]), str(row[target_field])))
        return pairs
    if not (src_file and tgt_file):
        raise MlalignError("the 'files' source needs --src-file and --tgt-file (line-aligned) or --jsonl")
    for p in (src_file, tgt_file):
        if not Path(p).is_file():
            raise DataError(f"parallel text file {p} not found")
    return _aligned_lines(Path(src_file), Path(tgt_file))


def clean_pairs(pairs: Iterable[tuple[str, str]], stats: LangStats) -> list[tuple[str, str]]:
    """Strip, then drop empty, duplicate, untranslated and misaligned pairs, counting each in `stats`."""
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    for src, tgt in pairs:
        stats.read += 1
        src, tgt = src.strip(), tgt.strip()
        if not src or not tgt:
            stats.empty += 1
        elif src in seen:
            stats.duplicate += 1
        elif src == tgt:
            stats.untranslated += 1
        else:
            seen.add(src)
            kept.append((src, tgt))
    if kept:
        median = statistics.median(len(s) / len(t) for s, t in kept)
        aligned = [(s, t) for s, t in kept if median / MISALIGNED_RATIO <= len(s) / len(t) <= median * MISALIGNED_RATIO]
        stats.misaligned = len(kept) - len(aligned)
        kept = aligned
    stats.usable = len(kept)
    return kept


def content_hash(rows: list[dict]) -> str:
    """sha256 over the rows' canonical JSON, in order."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def build_qt_dataset(
    source: str,
    languages: str | list[str] | None,
    examples_per_language: int | None,
    seed: int = 0,
    fmt: str = "plain",
    data_dir=None,
    src_file: str | Path | None = None,
    tgt_file: str | Path | None = None,
    jsonl: str | Path | None = None,
    source_field: str = "source",
    target_field: str = "target",
    clean: bool = True,
    target: str = "en",
    mixture: str | None = None,
) -> QTBuild:
    """Build the prompt/completion dataset: `examples_per_language` pairs per language (None: all), shuffled.

    Each language is sampled with its own seeded generator, so adding a language leaves the others' samples as
    they were. ``source='files'`` takes exactly one language: the language of the user's source side. `clean`
    drops bad pairs (`clean_pairs`); without it the pairs are trained as the files hold them. `target` is the
    language questions are translated into: English, or any language of the source (the pairs are then joined on
    their English side, and English may be a source language), or for ``files`` the language of the target side.
    `mixture` names one of the paper's mixture files of `source` instead of `languages`: its items' instructions
    give their languages, and its target is its own.
    """
    from datasets import Dataset

    if fmt not in FORMATS:
        raise MlalignError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if examples_per_language is not None and examples_per_language <= 0:
        raise MlalignError(f"examples per language must be positive, got {examples_per_language}")
    target = check_lang(target, what="target language")
    groups = mixture_pairs(source, mixture, data_dir) if mixture else None
    if groups is not None:
        targets = sorted({t for _, t in groups})
        if len(targets) != 1 or target not in ("en", targets[0]):
            raise MlalignError(f"mixture {mixture} translates into {', '.join(targets)}, not {target}")
        target, langs = targets[0], list(dict.fromkeys(s for s, _ in groups))
        if languages and set(parse_langs(languages)) != set(langs):
            raise MlalignError(f"mixture {mixture} holds {','.join(langs)}: drop the languages, or give exactly those")
    elif not languages:
        raise MlalignError("no languages: give the languages to translate from (e.g. de,fr), or one of the mixtures")
    elif source == "files":
        langs = parse_langs(languages)
        if len(langs) != 1 or langs[0] == target:
            raise MlalignError(
                f"the 'files' source takes exactly one --langs code other than the target ({target}): the source language"
            )
    elif source in SOURCES:
        langs = parse_langs(languages)
        available = SOURCES[source] + (("en",) if target != "en" else ())
        if target != "en" and target not in SOURCES[source]:
            raise UnknownLanguageError(
                f"no {source} question translations into {target}; targets: en, {', '.join(SOURCES[source])}"
            )
        if target in langs:
            raise MlalignError(f"{target} is the target language; the languages to translate from are the others")
        if missing := [c for c in langs if c not in available]:
            raise UnknownLanguageError(
                f"no {source} question translations for {', '.join(missing)}; available: {', '.join(available)}"
            )
    else:
        raise MlalignError(f"unknown question-translation source {source!r}; choose one of {', '.join(SOURCES)}, files")

    rows: list[dict] = []
    stats: dict[str, LangStats] = {}
    for lang in langs:
        if groups is not None:
            raw = groups[(lang, target)]
        elif source == "files":
            raw = file_pairs(src_file, tgt_file, jsonl, source_field, target_field)
        else:
            raw = pivot_pairs(source, lang, target, data_dir)
        stats[lang] = LangStats()
        pairs = clean_pairs(raw, stats[lang]) if clean else raw
        if not clean:
            stats[lang].read = stats[lang].usable = len(raw)
        n = len(pairs) if examples_per_language is None else examples_per_language
        if n > len(pairs):
            raise DataError(
                f"{lang}: only {len(pairs)} usable pairs (of {stats[lang].read} read), asked for {n}; "
                f"lower the number of examples per language"
            )
        chosen = random.Random(f"{seed}:{lang}").sample(pairs, n)
        stats[lang].selected = n
        rows.extend({**translation_row(s, t, lang, target, fmt), "lang": lang} for s, t in chosen)
    random.Random(seed).shuffle(rows)
    return QTBuild(
        dataset=Dataset.from_list(rows),
        source=source,
        languages=langs,
        examples_per_language=examples_per_language,
        seed=seed,
        fmt=fmt,
        data_hash=content_hash(rows),
        clean=clean,
        target=target,
        mixture=mixture,
        stats=stats,
    )


def save_build(build: QTBuild, out: str | Path) -> Path:
    """Write the dataset (``save_to_disk``) and its ``qt_build.json`` to `out` atomically (temp dir + rename)."""
    out = Path(out)
    check_replaceable(out, "--out")
    with atomic_dir(out) as tmp:
        build.dataset.save_to_disk(str(tmp / "dataset"))
        write_json_atomic(tmp / BUILD_INFO, build.info())
    return out


def load_build(path: str | Path) -> tuple[object, dict]:
    """A dataset saved by `save_build` and its build info."""
    from datasets import load_from_disk

    path = Path(path)
    info_file = path / BUILD_INFO
    if not info_file.is_file():
        raise DataError(f"{path} is not a dataset built by `mlalign data build-qt` (no {BUILD_INFO}); build one first")
    info = json.loads(info_file.read_text(encoding="utf-8"))
    # In memory, so that what the trainer derives from it (filtered, tokenized) is not cached into `path`.
    return load_from_disk(str(path / "dataset"), keep_in_memory=True), info


def stats_table(build: QTBuild):
    """A rich table of what was read, dropped and selected per language."""
    from rich.table import Table

    table = Table("lang", "read", "empty", "duplicate", "untranslated", "misaligned", "usable", "selected")
    for lang, s in build.stats.items():
        table.add_row(lang, *(str(v) for v in asdict(s).values()))
    return table

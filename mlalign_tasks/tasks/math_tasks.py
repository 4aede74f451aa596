"""MGSM and MSVAMP for lm-eval: dataset loaders, few-shot exemplars, answer filters and metric.

The prompt itself (QAlign's Alpaca-style instruction prompt) lives in ``tasks_yaml/mgsm_aligned/_template_yaml``
and ``tasks_yaml/qalign_mgsm/_template_yaml``; the hooks in ``mlalign_tasks/tasks/task_hooks.py`` call this module.

QAlign's protocol families (``qalign_*``) score every generation twice, once per filter: ``qalign`` (QAlign's
``extract_last_num``, `qalign_last_number`) and ``last_number`` (mlalign's extraction). Their gold numbers are
the same under both rules on every MGSM and MSVAMP row (a test checks it), so one metric function serves both.
The cross families ask the English question in every language (QAlign's "Cross" strategy).

Few-shot: ``--num_fewshot k`` (k <= 8) prepends the first k native chain-of-thought exemplars of
MGSM (``mgsm/exemplars.json``) in the task's language, each as an instruction/response pair whose
question has its "Question:" label removed. MSVAMP has no exemplars of its own; its languages are all
MGSM languages, so it uses the same MGSM exemplars in the same language.
"""

from __future__ import annotations

import re
from typing import Any

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data
from mlalign_tasks.tasks.answer_extraction import (
    extract_answer,
    format_number,
    is_correct,
    parse_gold,
    qalign_last_number,
)
from mlalign_tasks.tasks.languages import FAMILIES, LANGUAGES, check_lang

MAX_FEWSHOT = 8
MATH_FAMILIES = ("mgsm_aligned", "msvamp_aligned")
# QAlign's zero-shot protocol: family -> (benchmark, the English question in every language)
QALIGN_FAMILIES = {
    "qalign_mgsm": ("mgsm", False),
    "qalign_msvamp": ("msvamp", False),
    "qalign_mgsm_cross": ("mgsm", True),
    "qalign_msvamp_cross": ("msvamp", True),
}
FEWSHOT_SOURCE = "mgsm/exemplars.json"
_QUESTION_LABEL = re.compile(r"^[^:：\n]{1,30}[:：]\s*")


def mgsm_file(lang: str) -> str:
    return f"mgsm/mgsm_{lang}.tsv"


def msvamp_file(lang: str) -> str:
    return f"msvamp/test_{LANGUAGES[lang].name}.json"


def load_mgsm(lang: str, data_dir: str | None = None) -> list[dict[str, str]]:
    """MGSM test rows of `lang`: {"question", "answer"} (answer as written in the TSV, e.g. '2,125')."""
    check_lang(lang, FAMILIES["mgsm_aligned"], what="MGSM language")
    name = mgsm_file(lang)
    rows = []
    text = data.resolve(name, data_dir=data_dir).read_text(encoding="utf-8")
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        question, sep, answer = line.rpartition("\t")
        if not sep or not question.strip():
            raise DataError(
                f"{name} line {i} is not 'question<TAB>answer'; delete it and run `mlalign data fetch {name}`"
            )
        rows.append({"question": question.strip(), "answer": answer.strip()})
    return rows


def load_msvamp(lang: str, data_dir: str | None = None) -> list[dict[str, str]]:
    """MSVAMP test rows of `lang`: {"question": m_query, "answer": response}; m_query as is (leading spaces and
    all), as QAlign's svamp_test.py puts it in the prompt."""
    check_lang(lang, FAMILIES["msvamp_aligned"], what="MSVAMP language")
    name = msvamp_file(lang)
    rows = data.read_registry_jsonl(name, data_dir=data_dir)
    try:
        return [{"question": r["m_query"], "answer": str(r["response"]).strip()} for r in rows]
    except (KeyError, AttributeError) as e:
        raise DataError(f"{name} rows lack field {e}; delete it and run `mlalign data fetch {name}`") from None


def _exemplars_json(data_dir: str | None) -> dict[str, Any]:
    raw = data.read_registry_json(FEWSHOT_SOURCE, data_dir=data_dir)
    if not isinstance(raw, dict) or "exemplars" not in raw:
        raise DataError(
            f"{FEWSHOT_SOURCE} has no 'exemplars' key; delete it and run `mlalign data fetch {FEWSHOT_SOURCE}`"
        )
    return raw


def exemplars(lang: str, data_dir: str | None = None) -> list[dict[str, str]]:
    """The 8 native chain-of-thought exemplars of `lang`: {"question", "answer", "solution"}."""
    check_lang(lang, FAMILIES["mgsm_aligned"], what="few-shot exemplar language")
    raw = _exemplars_json(data_dir)
    shots = raw["exemplars"].get(lang, {})
    answers = raw.get("number_answers", [])
    out = []
    for i in range(1, MAX_FEWSHOT + 1):
        shot = shots.get(str(i))
        if not shot or i > len(answers):
            raise DataError(f"{FEWSHOT_SOURCE} lacks exemplar {i} of {lang!r}; run `mlalign data verify`")
        out.append(
            {
                "question": _QUESTION_LABEL.sub("", shot["q"].strip(), count=1),
                "answer": str(answers[i - 1]),
                "solution": shot["a"].strip(),
            }
        )
    return out


def load_dataset(family: str, lang: str, data_dir: str | None = None):
    """The lm-eval dataset of one task: split "test" (and, for our families, "fewshot")."""
    import datasets

    if family in QALIGN_FAMILIES:
        benchmark, cross = QALIGN_FAMILIES[family]
        check_lang(lang, FAMILIES[family], what=f"{family} language")
        source = "en" if cross else lang
        rows = load_mgsm(source, data_dir) if benchmark == "mgsm" else load_msvamp(source, data_dir)
        for row in rows:
            parse_gold(row["answer"])
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
    if family not in MATH_FAMILIES:
        valid = ", ".join([*MATH_FAMILIES, *QALIGN_FAMILIES])
        raise MlalignError(f"unknown math task family {family!r}; valid: {valid}")
    rows = load_mgsm(lang, data_dir) if family == "mgsm_aligned" else load_msvamp(lang, data_dir)
    for row in rows:
        parse_gold(row["answer"])  # fail early on a corrupt gold answer
    return datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_list(rows),
            "fewshot": datasets.Dataset.from_list(exemplars(lang, data_dir)),
        }
    )


def extract_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval `custom` filter: each generation -> its extracted number as a string ('' if none)."""
    return [[format_number(extract_answer(r)) for r in doc_resps] for doc_resps in resps]


def qalign_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval `custom` filter: each generation -> the number QAlign's rule reads ('0' when there is none)."""
    return [[format_number(qalign_last_number(r)) for r in doc_resps] for doc_resps in resps]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """exact_match: 1.0 if the extracted number equals the gold number within 1e-3."""
    pred = float(results[0]) if results and results[0] else None
    return {"exact_match": float(is_correct(pred, parse_gold(doc["answer"])))}

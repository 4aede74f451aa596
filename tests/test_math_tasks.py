"""MGSM/MSVAMP loaders, prompts and few-shot; generated task files; every task builds and validates."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlalign_trainer.prompts import ALPACA_NO_INPUT

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data
from mlalign_tasks.pipeline.evaluate import EvalRequest, Selection, _check_fewshot, parse_tasks, tasks_dir
from mlalign_tasks.tasks import math_tasks
from mlalign_tasks.tasks.answer_extraction import extract_answer, parse_gold, qalign_last_number
from mlalign_tasks.tasks.languages import (
    FAMILIES,
    MGSM_LANGS,
    MSVAMP_LANGS,
    SUPER_GROUPS,
    UnknownLanguageError,
    task_name,
)

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "generate_tasks.py"
QALIGN_PROMPT = ALPACA_NO_INPUT.replace("{instruction}", "{query}")  # the trainer's stage-I/II template is the eval's
ALL_NAMES = [task_name(f, lang) for f, langs in FAMILIES.items() for lang in langs] + [*FAMILIES, *SUPER_GROUPS]


@pytest.fixture(scope="module")
def manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks_dir()), include_defaults=False)


@pytest.fixture(scope="module")
def math_tasks_loaded(manager):
    return manager.load(["mgsm_aligned", "msvamp_aligned"])["tasks"]


# ----------------------------------------------------------------------------- data


def test_mgsm_is_parallel_with_numeric_gold() -> None:
    en = math_tasks.load_mgsm("en")
    assert len(en) == 250
    assert en[0]["question"].startswith("Janet") and en[0]["answer"] == "18"
    for lang in MGSM_LANGS:
        rows = math_tasks.load_mgsm(lang)
        assert [parse_gold(r["answer"]) for r in rows] == [parse_gold(r["answer"]) for r in en], lang
    assert parse_gold(en[[r["answer"] for r in en].index("2,125")]["answer"]) == 2125


def test_msvamp_rows() -> None:
    unstripped = 0
    for lang in MSVAMP_LANGS:
        rows = math_tasks.load_msvamp(lang)
        assert len(rows) == 1000, lang
        assert all(r["question"] and isinstance(parse_gold(r["answer"]), float) for r in rows)
        raw = data.read_registry_jsonl(math_tasks.msvamp_file(lang))
        assert [r["question"] for r in rows] == [r["m_query"] for r in raw]  # as QAlign's prompt has it: unstripped
        unstripped += sum(r["question"] != r["question"].strip() for r in rows)
    assert unstripped == 494  # all in the non-English files
    assert math_tasks.load_msvamp("de")[0] == {
        "question": "Julia spielte am Montag mit 18 Kindern Fangen. Sie spielte am Dienstag mit 10 Kindern "
        "Fangen. Mit wie vielen Kindern hat sie am Montag mehr gespielt als am Dienstag?",
        "answer": "8.0",
    }


def test_unknown_language_is_a_clear_error() -> None:
    with pytest.raises(UnknownLanguageError, match="te.*Valid codes: bn, de, en"):
        math_tasks.load_msvamp("te")  # MGSM has Telugu, MSVAMP does not
    with pytest.raises(UnknownLanguageError, match="'xx'"):
        math_tasks.load_dataset("mgsm_aligned", "xx")


def test_exemplars_are_native_and_solved(shared_data: Path) -> None:
    for lang in MGSM_LANGS:
        shots = math_tasks.exemplars(lang)
        assert len(shots) == math_tasks.MAX_FEWSHOT
        for shot in shots:
            # the "Question:" label is removed; the solution ends with the answer sentence whose
            # last number (in any language) is the exemplar's answer
            assert ":" not in shot["question"][:12] and "：" not in shot["question"][:6], shot["question"]
            assert extract_answer(shot["solution"]) == float(shot["answer"]), (lang, shot["solution"][-40:])
    assert math_tasks.exemplars("de")[0]["question"].startswith("Roger hat 5 Tennisbälle.")
    assert math_tasks.exemplars("fr")[0]["question"].startswith("Roger a 5 balles")
    assert math_tasks.exemplars("ja")[0]["question"].startswith("ロジャーは")


def test_corrupt_data_file_is_reported(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "mgsm").mkdir()
    broken = (shared_data / "mgsm" / "mgsm_de.tsv").read_text(encoding="utf-8").replace("18", "19", 1)
    (tmp_path / "mgsm" / "mgsm_de.tsv").write_text(broken, encoding="utf-8")
    with pytest.raises(DataError, match="checksum mismatch for mgsm/mgsm_de.tsv"):
        math_tasks.load_mgsm("de", data_dir=str(tmp_path))


# ----------------------------------------------------------------------------- prompts and scoring


def test_zero_shot_prompt_is_qaligns(math_tasks_loaded) -> None:
    for name in ("mgsm_aligned_de", "msvamp_aligned_zh"):
        task = math_tasks_loaded[name]
        doc = task.test_docs()[0]
        assert task.fewshot_context(doc, 0) == QALIGN_PROMPT.format(query=doc["question"])
    doc = math_tasks_loaded["mgsm_aligned_de"].test_docs()[0]
    assert doc["question"].startswith("Janets Enten legen 16 Eier pro Tag.")


@pytest.mark.parametrize(("name", "k"), [("mgsm_aligned_de", 8), ("mgsm_aligned_th", 3), ("msvamp_aligned_bn", 2)])
def test_fewshot_uses_native_exemplars_in_order(math_tasks_loaded, name: str, k: int) -> None:
    task = math_tasks_loaded[name]
    lang = name.rsplit("_", 1)[1]
    doc = task.test_docs()[1]
    shots = "".join(
        f"### Instruction:\n{s['question']}\n\n### Response: {s['solution']}\n\n"
        for s in math_tasks.exemplars(lang)[:k]
    )
    head, _, _ = QALIGN_PROMPT.partition("### Instruction:")
    expected = head + shots + f"### Instruction:\n{doc['question']}\n\n### Response:"
    task.set_fewshot_seed(1234)
    assert task.fewshot_context(doc, k) == expected


def test_fewshot_above_eight_is_refused() -> None:
    with pytest.raises(MlalignError, match="at most 8"):
        _check_fewshot(EvalRequest(model="m", tasks=parse_tasks("msvamp_aligned:de"), num_fewshot=9))
    _check_fewshot(EvalRequest(model="m", tasks=parse_tasks("mgsm_aligned:de"), num_fewshot=8))


def test_generation_settings(math_tasks_loaded) -> None:
    gen = math_tasks_loaded["msvamp_aligned_fr"].config.generation_kwargs
    assert gen["do_sample"] is False and gen["max_gen_toks"] == 600
    assert "### Instruction:" in gen["until"]
    assert "\n" not in gen["until"] and "\n\n" not in gen["until"]  # multi-line reasoning is allowed


def test_filter_and_metric(math_tasks_loaded) -> None:
    task = math_tasks_loaded["mgsm_aligned_es"]
    doc = {"question": "q", "answer": "2,125"}
    resps = [["Paso a paso: 2.000 + 125 = 2.125. La respuesta es 2.125.", "no sé"]]
    assert math_tasks.extract_filter(resps, [doc]) == [["2125", ""]]
    assert task.process_results(doc, ["2125"]) == {"exact_match": 1.0}
    assert task.process_results(doc, ["2125.0009"]) == {"exact_match": 1.0}
    assert task.process_results(doc, ["2126"]) == {"exact_match": 0.0}
    assert task.process_results(doc, [""]) == {"exact_match": 0.0}


# ----------------------------------------------------------------------------- generated files and validation


def _generator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True, check=False)


def test_generated_files_are_current() -> None:
    result = _generator("--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_detects_outdated_missing_and_stale(tmp_path: Path) -> None:
    copy = tmp_path / "tasks_yaml"
    shutil.copytree(tasks_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "mgsm_aligned" / "mgsm_aligned_de.yaml").write_text("task: mgsm_aligned_de\n", encoding="utf-8")
    (copy / "msvamp_aligned" / "msvamp_aligned_sw.yaml").unlink()
    (copy / "snli_aligned" / "snli_aligned_xx.yaml").write_text("task: snli_aligned_xx\n", encoding="utf-8")
    result = _generator("--check", "--tasks-dir", str(copy))
    assert result.returncode == 1
    assert "outdated: mgsm_aligned/mgsm_aligned_de.yaml" in result.stdout
    assert "outdated: msvamp_aligned/msvamp_aligned_sw.yaml" in result.stdout
    assert "stale: snli_aligned/snli_aligned_xx.yaml" in result.stdout
    assert _generator("--tasks-dir", str(copy)).returncode == 0
    assert _generator("--check", "--tasks-dir", str(copy)).returncode == 0
    assert not (copy / "snli_aligned" / "snli_aligned_xx.yaml").exists()


def test_every_task_builds_and_renders(manager) -> None:
    loaded = manager.load(list(FAMILIES))
    expected = {task_name(f, lang) for f, langs in FAMILIES.items() for lang in langs}
    assert set(loaded["tasks"]) == expected
    assert set(loaded["groups"]) == set(FAMILIES)
    for name, task in loaded["tasks"].items():
        doc = task.test_docs()[0]
        prompt = task.fewshot_context(doc, 0)
        assert isinstance(prompt, str) and len(prompt) > 20, name
        assert task.doc_to_target(doc) is not None, name
    super_group = manager.load(list(SUPER_GROUPS))
    assert set(super_group["groups"]) == {*SUPER_GROUPS, *[f for fs in SUPER_GROUPS.values() for f in fs]}


def test_group_means_are_unweighted_over_languages(manager) -> None:
    group = manager.load(["mgsm_aligned"])["groups"]["mgsm_aligned"]
    (agg,) = group.aggregate_metric_list
    assert (agg.metric, agg.aggregation, agg.weight_by_size, agg.filter_list) == (
        "exact_match",
        "mean",
        False,
        ["last_number"],
    )


@pytest.mark.slow
def test_lm_eval_validate_and_no_builtin_collision(monkeypatch, capsys, caplog) -> None:
    """`lm-eval validate` (in-process, one index of built-ins + ours) accepts every task and group, and
    indexing ours next to the built-ins overrides none of them (lm-eval warns on every name collision)."""
    from lm_eval._cli.harness import HarnessCLI

    names = [*ALL_NAMES, "mgsm_direct_de"]  # a built-in: proves the built-in tasks were indexed too
    monkeypatch.setattr(
        sys, "argv", ["lm-eval", "validate", "--tasks", ",".join(names), "--include_path", str(tasks_dir())]
    )
    caplog.set_level(logging.WARNING, logger="lm_eval")
    cli = HarnessCLI()
    cli.execute(cli.parse_args())  # exits 1 if a task is missing
    assert "All tasks found and valid" in capsys.readouterr().out
    collisions = [r.getMessage() for r in caplog.records if "overrides existing task" in r.getMessage()]
    assert not collisions


def test_selection_is_per_language_table_order() -> None:
    sel = Selection()
    sel.add("mgsm_aligned", ["de", "en"])
    sel.add("mgsm_aligned", ["en", "fr"])
    assert sel.langs == {"mgsm_aligned": ["de", "en", "fr"]}
    assert sel.lm_eval_tasks() == ["mgsm_aligned_de", "mgsm_aligned_en", "mgsm_aligned_fr"]


# ----------------------------------------------------------------------------- QAlign's protocol


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("So 3 + 4 = 7. The answer is 7.", 7.0),
        ("1,234.5 then 1,2,3", 3.0),  # one left-to-right pass: '1,2,3' -> '12,3'; the last match is 3
        ("12,5", 125.0),  # a decimal comma is removed (mlalign reads 12.5)
        ("-5", 5.0),  # no sign
        ("3.5.7", 7.0),  # matches '3.5' and '7'
        ("জবাব ৪২", 42.0),  # Python's \d and float() take Bengali digits
        ("no number at all", 0.0),  # counts as 0 (mlalign: no answer)
    ],
)
def test_qaligns_extraction_by_hand(text: str, number: float) -> None:
    assert qalign_last_number(text) == number


def test_gold_numbers_agree_under_both_rules() -> None:
    """One metric function serves both filters because QAlign's rule reads every gold answer as mlalign does."""
    for lang in MGSM_LANGS:
        assert all(qalign_last_number(r["answer"]) == parse_gold(r["answer"]) for r in math_tasks.load_mgsm(lang))
    for lang in MSVAMP_LANGS:
        assert all(qalign_last_number(r["answer"]) == parse_gold(r["answer"]) for r in math_tasks.load_msvamp(lang))


def test_qalign_families_prompt_languages_and_generation(manager) -> None:
    assert FAMILIES["qalign_mgsm"] == ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "th", "zh")  # no te
    loaded = manager.load(["qalign_mgsm_de", "qalign_msvamp_sw", "qalign_mgsm_cross_ja", "qalign_msvamp_cross_bn"])
    tasks = loaded["tasks"]
    for name, tokens in (("qalign_mgsm_de", 600), ("qalign_msvamp_sw", 300), ("qalign_msvamp_cross_bn", 300)):
        task = tasks[name]
        doc = task.test_docs()[0]
        assert task.fewshot_context(doc, 0) == QALIGN_PROMPT.format(query=doc["question"])
        assert task.config.generation_kwargs == {"until": [], "do_sample": False, "max_gen_toks": tokens}
        assert [f.name for f in task._filters] == ["qalign", "last_number"]
    assert tasks["qalign_mgsm_de"].test_docs()[0]["question"].startswith("Janets Enten")
    english = math_tasks.load_mgsm("en")
    assert list(tasks["qalign_mgsm_cross_ja"].test_docs()) == english  # cross: the English question, every language
    assert tasks["qalign_msvamp_cross_bn"].test_docs()[0]["question"].startswith("julia played tag with 18 kids")
    with pytest.raises(MlalignError, match="follow QAlign's zero-shot protocol"):
        _check_fewshot(EvalRequest(model="m", tasks=parse_tasks("qalign_msvamp:de"), num_fewshot=1))


@pytest.mark.slow
def test_one_generation_scored_twice_in_a_real_run(tmp_path, tiny_model_dir) -> None:
    import json

    from mlalign_tasks.pipeline import evaluate

    req = EvalRequest(
        model=str(tiny_model_dir), tasks=parse_tasks("qalign_mgsm:de,en,qalign_msvamp_cross:sw"), limit=3,
        device="cpu", gen_kwargs={"max_gen_toks": 24}, output_path=tmp_path / "out",
    )  # fmt: skip
    results = evaluate.run(req)
    for name in ("qalign_mgsm_de", "qalign_mgsm_en", "qalign_msvamp_cross_sw"):
        (path,) = (tmp_path / "out").glob(f"*/samples_{name}_*.jsonl")
        samples = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        by_filter = {f: [s for s in samples if s["filter"] == f] for f in ("qalign", "last_number")}
        assert [len(v) for v in by_filter.values()] == [3, 3]
        for q, ours in zip(by_filter["qalign"], by_filter["last_number"], strict=True):
            assert q["resps"] == ours["resps"]  # one generation pass, two metrics
            text, gold = q["resps"][0][0], parse_gold(q["doc"]["answer"])
            assert q["exact_match"] == float(abs(qalign_last_number(text) - gold) < 1e-3)
            mine = extract_answer(text)
            assert ours["exact_match"] == float(mine is not None and abs(mine - gold) < 1e-3)
        for f, rows in by_filter.items():
            assert results["results"][name][f"exact_match,{f}"] == pytest.approx(
                sum(s["exact_match"] for s in rows) / 3
            )
    table = str(evaluate.score_table(results, req.tasks).columns[1].header)
    assert table == "qalign_mgsm (qalign)"

"""The pipeline improves a model: `mlalign run` in the toy world (its default, QAlign's two stages; evaluation reduced
to the two toy tasks; the demo's own) makes the seen languages and the unseen one of their family significantly
better at both tasks, keeps English, and leaves the other families where they were, family by family: the demo
board's targets (README, "The toy world").

Everything is real: the packaged toy model, the `toy` question translations and answered items, the trainer (LoRA),
lm-eval with the paper's label scoring and greedy generation, the board's exact McNemar tests. A regression anywhere
in data -> train -> eval -> board that stops the model from learning, or from keeping its English, fails here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlalign_tasks.cli import app
from mlalign_tasks.leaderboard.stats import mcnemar_exact

pytestmark = pytest.mark.slow

SEEN = ("qaa", "qab")
# The other families, one by one and together: no words in common with the seen languages.
OTHER = {"borish": ("qba", "qbb"), "corian": ("qca", "qcb"), "both": ("qba", "qbb", "qca", "qcb")}
ARGS = ["--tasks", "toy_sentiment_aligned,toy_math_aligned", "--analysis-limit", "8"]
ALIGNED, STAGE_ONE = "toy-aligned", "toy-aligned (stage I)"  # stage I + II, and stage I's adapter alone


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("toy-study")
    args = ["run", *ARGS, "--out", str(tmp / "runs"), "--board", str(tmp / "board")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return tmp


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _comparisons(study: Path, aligned: str, family: str) -> dict[str, dict]:
    rows = _rows(study / "board" / "comparisons.csv")
    return {r["language"]: r for r in rows if r["aligned"] == aligned and r["family"] == family}


def _unchanged(comparisons: dict[str, dict], langs) -> float:
    """The exact McNemar p of `langs`' items pooled (the other families' target: p >= 0.01)."""
    rows = [comparisons[lang] for lang in langs]
    assert all(row["split"] == "unseen" for row in rows)
    return mcnemar_exact(*(sum(int(row[side]) for row in rows) for side in ("only_base", "only_aligned")))


def test_seen_and_sister_languages_gain_english_and_the_other_families_are_kept(study):
    for aligned in (STAGE_ONE, ALIGNED):
        comparisons = _comparisons(study, aligned, "toy_sentiment_aligned")
        english = comparisons["en"]
        assert float(english["base_value"]) >= 0.9  # the model knows the task in English
        for lang in SEEN:
            row = comparisons[lang]
            assert row["split"] == "seen" and int(row["n_paired"]) == 200  # both models on the same items
            assert float(row["base_value"]) <= float(english["base_value"]) - 0.2  # and far less in these languages
            assert float(row["delta_pp"]) >= 10 and float(row["p_value"]) < 0.01, row
        family = comparisons["qac"]  # unseen, of the seen languages' family: shares part of their words
        assert family["split"] == "unseen", family  # better (README: 57.5 -> 64, p 0.007; after stage II 73.5, 2e-8)
        assert float(family["delta_pp"]) > 0 and float(family["p_value"]) < 0.01, family
        for name, langs in OTHER.items():  # README: p 0.077, 0.17, 0.73
            assert _unchanged(comparisons, langs) >= 0.01, (aligned, name)
    for family in ("toy_sentiment_aligned", "toy_math_aligned"):  # stage II keeps English, worked solutions included
        english = _comparisons(study, ALIGNED, family)["en"]
        assert float(english["base_value"]) >= 0.9 and round(abs(float(english["delta_pp"])), 6) <= 2, english
    math_stage_one = _comparisons(study, STAGE_ONE, "toy_math_aligned")["en"]
    assert float(math_stage_one["delta_pp"]) <= -20, math_stage_one  # what stage I alone costs, and stage II restores
    math = _comparisons(study, ALIGNED, "toy_math_aligned")  # the worked solutions, now for the seen family's questions
    for lang in SEEN:
        assert float(math[lang]["delta_pp"]) >= 30 and float(math[lang]["p_value"]) < 0.01, math[lang]
    assert float(math["qac"]["delta_pp"]) > 0 and float(math["qac"]["p_value"]) < 0.01, math["qac"]  # 34 -> 42
    for name, langs in OTHER.items():  # back where they were (stage I: near 0)
        assert _unchanged(math, langs) >= 0.01, name  # README: p 0.098, 0.25, 0.042


def test_the_run_records_what_it_did(study):
    runs = study / "runs"
    meta = json.loads((runs / "train" / "adapter" / "mlalign_training.json").read_text())
    assert meta["languages"] == list(SEEN) and meta["data_source"]["source"] == "toy"
    response = json.loads((runs / "train-response" / "adapter" / "mlalign_training.json").read_text())
    assert [s["stage"] for s in response["stages"]] == ["question", "response"]
    assert response["hyperparameters"]["merge_init_from"] and response["data_source"]["source"] == "toy"
    adapter = json.loads((runs / "train-response" / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((runs / "train-response" / "init-merged").resolve())
    (results,) = (runs / "eval-aligned").glob("*/results_*.json")
    assert json.loads(results.read_text())["mlalign"]["label_scoring"] == "paper"
    lens = json.loads((runs / "logit-lens" / "logit_lens.json").read_text())
    assert lens["task"] == "toy_sentiment" and lens["english_labels"] == ["positive", "negative"]
    assert (study / "board" / "README.md").read_text().count("toy") > 3

"""The pipeline improves a model: `mlalign run` in the toy world (its default, QAlign's two stages; evaluation reduced
to the sentiment task in English, the two seen languages, an unseen one of their family and one of another family,
and the math task in English and the seen family's languages) makes the seen languages significantly better at both
tasks and keeps English.

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

pytestmark = pytest.mark.slow

SEEN = ("qaa", "qab")
ARGS = ["--tasks", "toy_sentiment_aligned:en,qaa,qab,qac,qba,toy_math_aligned:en,qaa,qab,qac", "--analysis-limit", "8"]
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


def test_seen_languages_gain_significantly_and_english_is_kept(study):
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
        assert family["split"] == "unseen", family
        if aligned == STAGE_ONE:  # stage I: better (README: 57.5 -> 64, p 0.007)
            assert float(family["delta_pp"]) > 0 and float(family["p_value"]) < 0.01, family
        else:  # stage II gives that back (README: 58, p 1), no worse than the base
            assert float(family["delta_pp"]) > 0 or float(family["p_value"]) > 0.05, family
        other = comparisons["qba"]  # another family: no words in common with the seen languages
        assert other["split"] == "unseen" and float(other["p_value"]) > 0.05, other
    for family in ("toy_sentiment_aligned", "toy_math_aligned"):  # stage II keeps English, worked solutions included
        english = _comparisons(study, ALIGNED, family)["en"]
        assert float(english["base_value"]) >= 0.9 and round(abs(float(english["delta_pp"])), 6) <= 2, english
    math_stage_one = _comparisons(study, STAGE_ONE, "toy_math_aligned")["en"]
    assert float(math_stage_one["delta_pp"]) <= -20, math_stage_one  # what stage I alone costs, and stage II restores
    math = _comparisons(study, ALIGNED, "toy_math_aligned")  # the worked solutions, now for the seen family's questions
    for lang in SEEN:
        assert float(math[lang]["delta_pp"]) >= 30 and float(math[lang]["p_value"]) < 0.01, math[lang]
    assert float(math["qac"]["delta_pp"]) > 0 or float(math["qac"]["p_value"]) > 0.05, math["qac"]  # no worse


def test_the_run_records_what_it_did(study):
    runs = study / "runs"
    meta = json.loads((runs / "train" / "adapter" / "mlalign_training.json").read_text())
    assert meta["languages"] == list(SEEN) and meta["data_source"]["source"] == "toy"
    response = json.loads((runs / "train-response" / "adapter" / "mlalign_training.json").read_text())
    assert [s["stage"] for s in response["stages"]] == ["question", "response"]
    (results,) = (runs / "eval-aligned").glob("*/results_*.json")
    assert json.loads(results.read_text())["mlalign"]["label_scoring"] == "paper"
    lens = json.loads((runs / "logit-lens" / "logit_lens.json").read_text())
    assert lens["task"] == "toy_sentiment" and lens["english_labels"] == ["positive", "negative"]
    assert (study / "board" / "README.md").read_text().count("toy") > 3

"""The pipeline improves a model: `mlalign run` in the toy world (its default; evaluation reduced to the sentiment
task in English, the two seen languages and an unseen one) makes the seen languages significantly better.

Everything is real: the packaged toy model, the `toy` question translations, the trainer (LoRA), lm-eval with the
paper's label scoring, the board's exact McNemar tests. A regression anywhere in data -> train -> eval -> board that
stops the model from learning fails here.
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
ARGS = ["--tasks", "toy_sentiment_aligned:en,qaa,qab,qac,qba", "--analysis-limit", "8"]


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


def test_seen_languages_gain_significantly(study):
    comparisons = {r["language"]: r for r in _rows(study / "board" / "comparisons.csv")}
    english = comparisons["en"]
    assert float(english["base_value"]) >= 0.9  # the model knows the task in English
    for lang in SEEN:
        row = comparisons[lang]
        assert row["split"] == "seen" and int(row["n_paired"]) == 200
        assert float(row["base_value"]) <= float(english["base_value"]) - 0.2  # and far less in these languages
        assert float(row["delta_pp"]) >= 10 and float(row["p_value"]) < 0.01, row
    assert float(english["aligned_value"]) >= 0.9  # English kept
    family = comparisons["qac"]  # unseen, of the seen languages' family: shares part of their words
    assert family["split"] == "unseen" and float(family["delta_pp"]) > 0 and float(family["p_value"]) < 0.01, family
    other = comparisons["qba"]  # another family: no words in common with the seen languages
    assert other["split"] == "unseen" and float(other["p_value"]) > 0.05, other


def test_the_run_records_what_it_did(study):
    runs = study / "runs"
    meta = json.loads((runs / "train" / "adapter" / "mlalign_training.json").read_text())
    assert meta["languages"] == list(SEEN) and meta["data_source"]["source"] == "toy"
    (results,) = (runs / "eval-aligned").glob("*/results_*.json")
    assert json.loads(results.read_text())["mlalign"]["label_scoring"] == "paper"
    lens = json.loads((runs / "logit-lens" / "logit_lens.json").read_text())
    assert lens["task"] == "toy_sentiment" and lens["english_labels"] == ["positive", "negative"]
    assert (study / "board" / "README.md").read_text().count("toy") > 3

"""The pipeline improves a model: `mlalign run --model toy` (reduced) makes the seen languages significantly better.

Opt-in (``MLALIGN_TOY_STUDY=1``): the model stage pretrains the toy model, which takes 15 minutes and more on two
shared CPU cores, and in the measured toy worlds question alignment does not yet give a significant gain
(README, "The toy world"), so this test fails today; it is the check that the toy world works once it does.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlalign_tasks.cli import app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MLALIGN_TOY_STUDY") != "1", reason="opt-in: MLALIGN_TOY_STUDY=1"),
]

SEEN = ("qaa", "qab")
ARGS = [
    "--model", "toy",
    "--tasks", "toy_sentiment_aligned:en,qaa,qab",
    "--limit", "200",
    "--analysis-limit", "8",
]  # fmt: skip


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


def test_the_run_records_what_it_did(study):
    runs = study / "runs"
    meta = json.loads((runs / "train" / "adapter" / "mlalign_training.json").read_text())
    assert meta["languages"] == list(SEEN) and meta["data_source"]["source"] == "toy"
    (results,) = (runs / "eval-aligned").glob("*/results_*.json")
    assert json.loads(results.read_text())["mlalign"]["label_scoring"] == "paper"
    lens = json.loads((runs / "logit-lens" / "logit_lens.json").read_text())
    assert lens["task"] == "toy_sentiment" and lens["english_labels"] == ["positive", "negative"]
    assert (study / "board" / "README.md").read_text().count("toy") > 3

"""`mlalign run` end to end on the embedded default (reduced limits): artefacts, consistency, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlalign_tasks.cli import app

pytestmark = pytest.mark.slow

ARGS = [
    "--tasks", "mgsm_aligned:en,de,sw,paper_aligned:en,de,sw",
    "--limit", "3",
    "--max-gen-toks", "8",
    "--examples-per-language", "8",
    "--train-flag=--max_steps=4",
    "--train-flag=--save_steps=2",
    "--analysis-limit", "4",
]  # fmt: skip
STAGES = ["model", "data", "train", "eval-base", "eval-aligned", "leaderboard", "logit-lens", "pca"]


def run(tmp: Path) -> dict[str, str]:
    result = CliRunner().invoke(app, ["run", *ARGS, "--out", str(tmp / "runs"), "--board", str(tmp / "board")])
    assert result.exit_code == 0, result.output
    statuses = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 2 and cells[0] in STAGES:
            statuses[cells[0]] = cells[1]
    assert list(statuses) == STAGES, result.output
    return statuses


def results_json(stage_dir: Path) -> dict:
    (path,) = stage_dir.glob("*/results_*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("study")
    assert set(run(tmp).values()) == {"ran"}
    return tmp


def test_every_artefact_exists(study):
    runs = study / "runs"
    assert (runs / "model" / "config.json").is_file()
    assert (runs / "data" / "qt_build.json").is_file()
    assert (runs / "train" / "adapter" / "adapter_model.safetensors").is_file()
    for name in ("index.html", "README.md", "results.csv", "results.json"):
        assert (study / "board" / name).is_file()
    assert (runs / "logit-lens" / "logit_lens.json").is_file() and (runs / "pca" / "pca.json").is_file()


def test_leaderboard_numbers_equal_the_evaluations(study):
    expected = {}
    for stage, model in (("eval-base", "tiny-base"), ("eval-aligned", "tiny-aligned")):
        for task, metrics in results_json(study / "runs" / stage)["results"].items():
            for metric, value in metrics.items():
                if isinstance(value, float) and "stderr" not in metric and task.count("_") == 2:
                    expected[(model, task, metric)] = value
    with open(study / "board" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = {(r["model"], r["task"], r["metric"]): float(r["value"]) for r in rows}
    assert len(expected) == 2 * 9 + 2 * 3 and expected == got  # acc for 9 paper tasks (paper scoring), mgsm x3


def test_training_languages_are_seen(study):
    meta = json.loads((study / "runs" / "train" / "adapter" / "mlalign_training.json").read_text())
    assert meta["languages"] == ["de", "zh"]
    with open(study / "board" / "results.csv", newline="") as f:
        splits = {(r["model"], r["language"]): r["split"] for r in csv.DictReader(f)}
    assert splits[("tiny-aligned", "de")] == "seen"
    assert splits[("tiny-aligned", "sw")] == "unseen"
    assert splits[("tiny-aligned", "en")] == "english"


def test_rerun_skips_and_corruption_reruns_one_stage(study):
    assert set(run(study).values()) == {"skipped"}
    pca = study / "runs" / "pca" / "pca.json"
    before = pca.read_text()
    pca.write_text("{}")
    statuses = run(study)
    assert [s for s, v in statuses.items() if v == "ran"] == ["pca"]
    assert json.loads(pca.read_text()) == json.loads(before)

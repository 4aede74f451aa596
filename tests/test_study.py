"""`mlalign run` end to end on the tiny random-weight model (reduced limits): artefacts, consistency, resume."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlalign_tasks.cli import app
from mlalign_tasks.errors import Interrupted
from mlalign_tasks.files.output_dirs import exclusive
from mlalign_tasks.models.hf_lm import BatchAnswers

pytestmark = pytest.mark.slow

ARGS = [
    "--model", "tiny",
    "--tasks", "mgsm_aligned:en,de,sw,paper_aligned:en,de,sw",
    "--limit", "3",
    "--max-gen-toks", "8",
    "--examples-per-language", "8",
    "--train-flag=--max_steps=4",
    "--train-flag=--save_steps=2",
    "--analysis-limit", "4",
]  # fmt: skip
STAGES = ["model", "data", "train", "eval-base", "eval-aligned", "leaderboard", "logit-lens", "pca"]


def error_line(stderr: str) -> str:
    """The one `error:` line a refused command ends with (library warnings may come before it)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.strip().endswith(errors[0]), stderr
    return errors[0]


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


def test_a_changed_evaluation_republishes_the_board(study):
    """eval-base re-runs when its results file changed on disk; the board then re-runs from the new results and
    names the folders they are in (lm-eval's dated file names are kept out of the board), each holding one."""
    (results_file,) = (study / "runs" / "eval-base").glob("*/results_*.json")
    results_file.write_text(
        results_file.read_text().replace('"lm_eval_version"', '"edited_by_hand": 1, "lm_eval_version"')
    )
    statuses = run(study)
    assert [s for s, v in statuses.items() if v == "ran"] == ["eval-base", "leaderboard"]
    board = json.loads((study / "board" / "results.json").read_text())
    sources = [name for m in board["models"] for name in m["sources"]]
    assert len(sources) == 2 and all(len(list((study / "runs").glob(f"eval-*/{name}/results_*.json"))) == 1
                                     for name in sources)  # fmt: skip
    assert results_file.parent.name in sources and not results_file.exists()  # re-run: a new dated file


def test_another_configuration_is_refused_and_nothing_is_written(study):
    """A run folder or board holding one configuration's results is not taken over by another (here fewer items),
    into either folder; the error names the difference and the flag that would replace them."""
    files = {p: p.read_bytes() for p in sorted(study.rglob("*")) if p.is_file()}
    cmd = [sys.executable, "-m", "mlalign_tasks.cli", "run", *ARGS, "--limit", "2", "--board", str(study / "board")]
    for out, flag in ((study / "runs", "--out"), (study / "other", "--board")):
        result = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
        line = error_line(result.stderr)
        assert result.returncode == 2 and line.startswith(f"error: {flag} ") and "evaluation.limit 3 -> 2" in line
        assert "nothing was written: add --replace to replace them" in line
    assert {p: p.read_bytes() for p in sorted(study.rglob("*")) if p.is_file()} == files


def test_the_users_folders_are_never_replaced(tmp_path):
    """`mlalign run --out proj` where proj holds the user's own `data` folder: refused before any stage, one line."""
    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "data" / "important.txt").write_text("x")
    cmd = [sys.executable, "-m", "mlalign_tasks.cli", "run", *ARGS]
    result = subprocess.run([*cmd, "--out", str(tmp_path / "proj"), "--board", str(tmp_path / "proj_board")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "is not empty and not an `mlalign run` folder" in error_line(result.stderr)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "proj", "proj/data", "proj/data/important.txt"
    ]  # fmt: skip
    assert (tmp_path / "proj" / "data" / "important.txt").read_text() == "x"


def test_one_run_at_a_time_per_out(tmp_path):
    """A second `mlalign run` on the --out of a running one stops at once and writes nothing; a killed run's lock
    is gone with it."""
    out = tmp_path / "runs"
    flags = [*ARGS[:8], "--train-flag=--max_steps=100000", *ARGS[-2:]]  # training for hours: still running when asked
    cmd = [sys.executable, "-m", "mlalign_tasks.cli", "run", *flags, "--out", str(out), "--board", str(tmp_path / "b")]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while not (out / "model" / "stage.json").is_file():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start its stages"
            time.sleep(0.05)
        before = (out / "study.json").stat().st_mtime_ns
        second = subprocess.run([*cmd[:-2], "--board", str(tmp_path / "other")], capture_output=True, text=True)
        assert second.returncode == 2 and f"--out {out} is in use by another running process" in error_line(
            second.stderr
        )
        assert (out / "study.json").stat().st_mtime_ns == before and not (tmp_path / "other").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with exclusive(out / ".mlalign-run.lock", "the run folder"):
        pass


def test_interrupted_run_says_rerun_to_resume(tmp_path):
    """Ctrl-C during training: the trainer saves a checkpoint, the run exits 130 saying how to resume."""
    out = tmp_path / "runs"
    flags = [*ARGS[:8], "--train-flag=--max_steps=100000", "--train-flag=--save_steps=2", *ARGS[-2:]]
    cmd = [sys.executable, "-m", "mlalign_tasks.cli", "run", *flags, "--out", str(out), "--board", str(tmp_path / "b")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 900
        while not list(out.glob(".work/train-*/checkpoint-2/adapter_config.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not reach training"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.rstrip().endswith("interrupted: the stages that finished are kept; rerun the same command to resume")
    assert not (out / "train" / "stage.json").exists() and (out / "data" / "stage.json").is_file()


def test_an_interrupted_evaluation_stage_computes_only_the_unanswered_requests(study, tmp_path, monkeypatch):
    """Ctrl-C in eval-base in a batch past half of its requests: the rerun replays the whole batches answered before
    from the stage's request cache, computes only the rest and writes the bytes the uninterrupted run wrote; the cache
    goes once the stage ran."""
    reference = study / "runs" / "eval-base"
    total = sum(len(json.loads(line)["arguments"]) for p in reference.glob("*/samples_*.jsonl") for line in p.open())
    recorded, computed, stop = BatchAnswers.add_partial, [], [total // 2 + 1]  # after how many answers (None: never)

    def add_partial(hook, attr, req, res) -> None:
        recorded(hook, attr, req, res)
        if hook.dbdict is not None and "/.work/eval-base-" in hook.dbdict.filename:
            computed.append(req)
            if len(computed) == stop[0]:
                raise Interrupted

    monkeypatch.setattr(BatchAnswers, "add_partial", add_partial)
    with pytest.raises(Interrupted):
        run(tmp_path)
    runs = tmp_path / "runs"
    (db,) = runs.glob(".work/eval-base-*/requests_rank0.db")
    with sqlite3.connect(db) as conn:  # the batches answered before the interruption (not the one it cut)
        kept = conn.execute('SELECT COUNT(*) FROM "unnamed"').fetchone()[0]
    assert not (runs / "eval-base").exists() and 0 < kept < stop[0]
    computed.clear()
    stop[0] = None
    statuses = run(tmp_path)
    assert [s for s, v in statuses.items() if v == "skipped"] == ["model", "data", "train"]
    assert total > 20 and len(computed) == total - kept
    assert results_json(runs / "eval-base")["results"] == results_json(reference)["results"]
    for path in reference.glob("*/samples_*.jsonl"):
        (again,) = runs.glob(f"eval-base/*/{path.name.rpartition('_')[0]}_*.jsonl")
        assert again.read_bytes() == path.read_bytes()  # the same batches: the same answers to the last bit
    assert not list(runs.glob(".work/eval-*"))  # the evaluation stages' caches went when they finished


def test_qalign_two_stage_recipe_runs_both_stages_resumably(tmp_path):
    args = [
        "run", "--recipe", "qalign-cpu-smoke", "--langs", "de,fr", "--tasks", "mgsm_aligned:en,de,sw", "--limit", "2",
        "--max-gen-toks", "4", "--examples-per-language", "8", "--train-flag=--max_steps=2",
        "--train-flag=--examples_per_language=8", "--analysis-limit", "2",
        "--out", str(tmp_path / "runs"), "--board", str(tmp_path / "board"),
    ]  # fmt: skip
    stages = [
        "model",
        "data",
        "train",
        "train-response",
        "eval-base",
        "eval-aligned",
        "eval-question",
        "leaderboard",
        "logit-lens",
        "pca",
    ]
    for expected in ("ran", "skipped"):  # the second run finds every stage's outputs current
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = [[c.strip() for c in line.split("│") if c.strip()] for line in result.output.splitlines()]
        assert {r[0]: r[1] for r in rows if len(r) >= 2 and r[0] in stages} == dict.fromkeys(stages, expected)
    first = json.loads((tmp_path / "runs" / "train" / "adapter" / "mlalign_training.json").read_text())
    meta = json.loads((tmp_path / "runs" / "train-response" / "adapter" / "mlalign_training.json").read_text())
    assert first["data_source"]["format"] == "qalign" and first["languages"] == ["de", "fr"]
    assert meta["init_from"]["path"] == str((tmp_path / "runs" / "train" / "adapter").resolve())
    assert [s["stage"] for s in meta["stages"]] == ["question", "response"] and meta["seen_languages"] == ["de", "fr"]
    with open(tmp_path / "board" / "results.csv", newline="") as f:
        splits = {(r["model"], r["language"]): r["split"] for r in csv.DictReader(f)}
    assert splits[("tiny-aligned", "de")] == "seen" and splits[("tiny-aligned", "sw")] == "unseen"
    assert splits[("tiny-aligned (stage I)", "de")] == "seen"  # stage I's adapter alone, beside stage I + II


def test_stage_two_on_stage_one_merged_is_evaluated_and_analysed_on_the_merge(tmp_path):
    from mlalign_trainer import recipes

    smoke = recipes.read_recipe(recipes.recipe_path("qalign-cpu-smoke"))
    smoke["stages"]["response"] |= {"merge_init_from": True, "lora_target_modules": ["q_proj", "k_proj"]}
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(smoke))
    runs = tmp_path / "runs"
    args = [
        "run", "--model", "tiny", "--recipe", str(tmp_path / "merge.yaml"), "--langs", "de", "--tasks",
        "mgsm_aligned:en,de", "--limit", "2", "--max-gen-toks", "4", "--examples-per-language", "8",
        "--train-flag=--max_steps=2", "--train-flag=--examples_per_language=8", "--analysis-limit", "2",
        "--out", str(runs), "--board", str(tmp_path / "board"),
    ]  # fmt: skip
    for expected in ("ran", "skipped"):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"train-response │ {expected}" in result.output
    merged = (runs / "train-response" / "init-merged").resolve()
    adapter = json.loads((runs / "train-response" / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(merged) and sorted(adapter["target_modules"]) == [
        "k_proj",
        "q_proj",
    ]
    (aligned,) = (runs / "eval-aligned").glob("*/results_*.json")
    assert f"pretrained={merged}," in json.loads(aligned.read_text())["config"]["model_args"]
    (question,) = (runs / "eval-question").glob("*/results_*.json")
    assert f"pretrained={(runs / 'model').resolve()}," in json.loads(question.read_text())["config"]["model_args"]
    assert json.loads((runs / "logit-lens" / "logit_lens.json").read_text())["model"] == str(merged)


def test_two_stage_toy_board_names_both_aligned_models_and_both_stages():
    from mlalign_tasks.pipeline import study
    from mlalign_tasks.pipeline.study_options import configure

    one = study.board_manifest(configure(), "runs/m", Path("runs/train/adapter"))
    two = study.board_manifest(
        configure(recipe="toy-world-qalign"), "runs/m", Path("runs/r/adapter"),
        study.StageTwo("toy", Path("runs/q/adapter"), merged=True),
    )  # fmt: skip
    assert [m["name"] for m in one["models"]] == ["toy-base", "toy-aligned"]
    assert [(m["name"], m["match"]) for m in two["models"]] == [
        ("toy-base", "runs/m"), ("toy-aligned (stage I)", "runs/q/adapter"), ("toy-aligned", "runs/r/adapter"),
    ]  # fmt: skip
    assert "question translation only (qaa,qab to English, no answers). Compare" in one["description"]
    assert (
        "(qaa,qab to English, no answers), then, merged into the model, a new adapter on English question-answer pairs (toy)"
        in two["description"]
    )
    assert two["description"].endswith("section The toy world.") and one["description"].endswith("The toy world.")
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert two["description"].startswith(study.DEMO_HEADLINE)  # the board's headline is the README's
    assert study.DEMO_HEADLINE.removesuffix(" (README).") in readme


def test_upstream_gold_is_recorded_scored_with_and_another_configuration(tmp_path):
    """`mlalign run --gold upstream` records the rule (a run at the default records no key, as runs did before the
    option, so their records stay equal), evaluates both models with it, and refuses a rerun at the default gold."""
    args = [
        "--model", "tiny", "--tasks", "snli_aligned:en,ja", "--limit", "2", "--examples-per-language", "8",
        "--train-flag=--max_steps=1", "--analysis-limit", "2", "--out", str(tmp_path / "runs"),
        "--board", str(tmp_path / "board"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, ["run", *args, "--gold", "upstream"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "runs" / "study.json").read_text())["computed"]
    assert recorded["evaluation"]["gold"] == "upstream"
    assert json.loads((tmp_path / "board" / "mlalign_study.json").read_text()) == recorded
    for stage in ("eval-base", "eval-aligned"):
        assert results_json(tmp_path / "runs" / stage)["mlalign"]["gold"] == "upstream"
    assert "gold upstream" in (tmp_path / "board" / "README.md").read_text()
    rerun = subprocess.run([sys.executable, "-m", "mlalign_tasks.cli", "run", *args], capture_output=True, text=True)
    line = error_line(rerun.stderr)
    assert rerun.returncode == 2 and "another configuration (evaluation.gold upstream -> " in line

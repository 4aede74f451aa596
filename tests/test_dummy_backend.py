"""Our task YAMLs through plain `lm_eval` with its `dummy` model, not `hf`: nothing in them depends on the HF
backend (the vLLM route of the README runs the same YAMLs), and the board reads what any backend writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlalign_tasks.leaderboard import make_leaderboard
from mlalign_tasks.pipeline.evaluate import tasks_dir
from mlalign_tasks.tasks.languages import FAMILIES, SUPER_GROUPS, task_name

LIMIT = 2
GROUPS = [*SUPER_GROUPS, *(f for f in FAMILIES if not any(f in members for members in SUPER_GROUPS.values()))]


@pytest.mark.slow
def test_every_task_runs_through_lm_evals_dummy_backend(shared_data: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "lm_eval", "--model", "dummy", "--model_args", "pretrained=dummy",
        "--tasks", ",".join(GROUPS), "--include_path", str(tasks_dir()), "--limit", str(LIMIT),
        "--output_path", str(tmp_path / "results"), "--log_samples",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = (tmp_path / "results").rglob("results_*.json")
    data = json.loads(results_file.read_text())
    assert data["config"]["model"] == "dummy"
    tasks = {task_name(f, lang) for f, langs in FAMILIES.items() for lang in langs}
    assert len(tasks) == 177  # 161 of the benchmarks, 16 of the toy world
    assert tasks <= set(data["results"]) and set(GROUPS) <= set(data["results"])
    assert all(data["n-samples"][t]["effective"] == LIMIT for t in tasks)
    kinds = {"generate_until": 0, "multiple_choice": 0}
    for task in sorted(tasks):
        output_type = data["configs"][task]["output_type"]
        kinds[output_type] += 1
        (samples_file,) = results_file.parent.glob(f"samples_{task}_*.jsonl")
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        assert sorted({s["doc_id"] for s in samples}) == list(range(LIMIT)), task
        for s in samples:
            requests = list(s["arguments"].values())
            if output_type == "generate_until":
                # one greedy request whose prompt holds the item's question; "lol" holds no number: scored 0
                (request,) = requests
                assert s["doc"]["question"] in request["arg_0"] and request["arg_1"]["do_sample"] is False, task
                assert s["resps"] == [["lol"]] and s["exact_match"] == 0.0, task
            else:
                # one log-likelihood request per label word, all after the same prompt
                assert {r["arg_0"] for r in requests} == {s["doc"]["prompt"]}, task
                assert [r["arg_1"] for r in requests] == s["doc"]["choices"] and len(requests) >= 2, task
                assert s["acc"] in (0.0, 1.0), task
        for key, value in data["results"][task].items():
            if key.startswith("exact_match,"):
                assert value == 0.0, (task, key)
    assert kinds == {"generate_until": 61 + 8, "multiple_choice": 100 + 8}  # the toy world: 8 of each
    board = make_leaderboard([tmp_path / "results"], tmp_path / "board")
    assert sorted(board.families) == sorted(FAMILIES)
    cells = {(f, lang) for (_, f, lang) in board.cells}
    assert cells == {(f, lang) for f, langs in FAMILIES.items() for lang in langs}

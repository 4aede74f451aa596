"""Resumable stages: skip current outputs, re-run only the stage whose output was corrupted or whose config changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlalign_tasks.stages import Stage, run_stages


def make_stages(calls: list[str], b_value: str = "b", fail_b: bool = False) -> list[Stage]:
    def writer(name: str, text: str):
        def run(out: Path, work: Path) -> None:
            calls.append(name)
            if fail_b and name == "b":
                (out / "partial.txt").write_text("half")
                raise RuntimeError("interrupted")
            (out / f"{name}.txt").write_text(text)

        return run

    return [
        Stage("a", {"v": "a"}, writer("a", "A")),
        Stage("b", {"v": b_value}, writer("b", b_value), deps=("a",)),
        Stage("c", {"v": "c"}, writer("c", "C"), deps=("b",)),
    ]


def test_rerun_skips_everything(tmp_path):
    calls: list[str] = []
    first = run_stages(make_stages(calls), tmp_path)
    assert [r.status for r in first] == ["ran"] * 3
    again = run_stages(make_stages(calls), tmp_path)
    assert [r.status for r in again] == ["skipped"] * 3
    assert calls == ["a", "b", "c"]


def test_corrupted_output_reruns_that_stage_only(tmp_path):
    calls: list[str] = []
    run_stages(make_stages(calls), tmp_path)
    (tmp_path / "b" / "b.txt").write_text("garbage")
    res = run_stages(make_stages(calls), tmp_path)
    assert [r.status for r in res] == ["skipped", "ran", "skipped"]
    assert res[1].reason == "b.txt changed"
    assert (tmp_path / "b" / "b.txt").read_text() == "b"


def test_config_change_reruns_dependents(tmp_path):
    calls: list[str] = []
    run_stages(make_stages(calls), tmp_path)
    res = run_stages(make_stages(calls, b_value="b2"), tmp_path)
    assert [r.status for r in res] == ["skipped", "ran", "ran"]


def test_failed_stage_keeps_previous_outputs_and_leaves_no_partial(tmp_path):
    calls: list[str] = []
    run_stages(make_stages(calls), tmp_path)
    with pytest.raises(RuntimeError):
        run_stages(make_stages(calls, b_value="b2", fail_b=True), tmp_path)
    assert (tmp_path / "b" / "b.txt").read_text() == "b"
    assert not (tmp_path / "b" / "partial.txt").exists()
    assert not list(tmp_path.glob(".b.tmp-*"))


def test_outputs_written_elsewhere_are_tracked(tmp_path):
    calls: list[str] = []
    board = tmp_path / "board"

    def publish(out: Path, work: Path) -> list[Path]:
        calls.append("publish")
        board.mkdir(exist_ok=True)
        (board / "index.html").write_text("<table></table>")
        return [board]

    def stages() -> list[Stage]:
        return [Stage("publish", {"v": 1}, publish)]

    run_stages(stages(), tmp_path / "runs")
    assert run_stages(stages(), tmp_path / "runs")[0].status == "skipped"
    (board / "index.html").write_text("broken")
    res = run_stages(stages(), tmp_path / "runs")
    assert res[0].status == "ran" and res[0].reason.endswith("index.html changed")
    assert (board / "index.html").read_text() == "<table></table>" and calls == ["publish"] * 2


def test_work_dir_is_per_configuration(tmp_path):
    seen: list[Path] = []

    def run(out: Path, work: Path) -> None:
        seen.append(work)
        (work / "checkpoint").write_text("state")
        (out / "x.txt").write_text("x")

    run_stages([Stage("train", {"steps": 1}, run)], tmp_path)
    run_stages([Stage("train", {"steps": 2}, run)], tmp_path)
    assert seen[0] != seen[1] and seen[0].name.startswith("train-")
    assert not seen[0].exists() and (seen[1] / "checkpoint").is_file()

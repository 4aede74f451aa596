"""Resumable stages: skip current outputs, re-run only the stage whose output was corrupted or whose config changed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlalign_tasks.pipeline.stages import Stage, run_stages


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


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    """A run killed inside a stage leaves its temporary folder; the next run removes it and finishes."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import time, sys\n"
        "from pathlib import Path\n"
        "from mlalign_tasks.pipeline.stages import Stage, run_stages\n"
        "def slow(out, work):\n"
        "    (out / 'b.txt').write_text('half'); time.sleep(600)\n"
        "run_stages([Stage('b', {'v': 'b'}, slow)], Path(sys.argv[1]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".b.tmp-*/b.txt")):
        assert proc.poll() is None and time.monotonic() < deadline, "the stage did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".b.tmp-*")), "the killed run should have left its temporary folder"
    calls: list[str] = []
    results = run_stages(make_stages(calls), tmp_path)
    assert [r.status for r in results] == ["ran"] * 3 and (tmp_path / "b" / "b.txt").read_text() == "b"
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_a_folder_no_stage_wrote_is_never_replaced(tmp_path):
    """A user's folder named like a stage, or a user's file inside a stage folder, stops the run before any stage."""
    from mlalign_tasks.errors import MlalignError

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "important.txt").write_text("mine")
    calls: list[str] = []
    with pytest.raises(MlalignError, match=r"stage folder .*b \(a folder\) exists and is not empty and not an output"):
        run_stages(make_stages(calls), tmp_path)
    assert calls == [] and (tmp_path / "b" / "important.txt").read_text() == "mine"
    (tmp_path / "b" / "important.txt").unlink()
    run_stages(make_stages(calls), tmp_path)
    (tmp_path / "b" / "notes.txt").write_text("mine too")
    with pytest.raises(MlalignError, match=r"b/notes.txt was not written by stage b.*move it out") as err:
        run_stages(make_stages(calls, b_value="b2"), tmp_path)
    assert "\n" not in str(err.value) and calls == ["a", "b", "c"]
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine too" and (tmp_path / "b" / "b.txt").read_text() == "b"


def test_dependents_rerun_when_a_stage_writes_other_files(tmp_path):
    """A stage re-run because its output changed on disk re-runs its dependents when it writes different files
    (lm-eval's results carry the time), and only then."""
    calls: list[str] = []

    def stages() -> list[Stage]:
        def evaluate(out: Path, work: Path) -> None:
            calls.append("eval")
            (out / "results.json").write_text(str(time.time_ns()))

        def publish(out: Path, work: Path) -> None:
            calls.append("board")
            (out / "board.txt").write_text("from the results")

        return [Stage("eval", {"v": 1}, evaluate), Stage("board", {"v": 1}, publish, deps=("eval",))]

    run_stages(stages(), tmp_path)
    assert [r.status for r in run_stages(stages(), tmp_path)] == ["skipped", "skipped"]
    (tmp_path / "eval" / "results.json").unlink()
    res = run_stages(stages(), tmp_path)
    assert [r.status for r in res] == ["ran", "ran"] and res[1].reason == "its configuration or its inputs changed"
    assert calls == ["eval", "board", "eval", "board"]


@pytest.mark.parametrize("fail", [False, True])
def test_an_atomic_writer_inside_a_stage_writes_in_place(tmp_path, fail):
    """A stage hands its fresh folder to a writer that is atomic itself (an analysis): that writer writes into it
    directly, with no temporary folder of its own; a failure still leaves neither a partial output nor a leftover."""
    from mlalign_tasks.files.atomic import atomic_dir

    handed: list[tuple[Path, Path, list[str]]] = []

    def analysis(out: Path, work: Path) -> None:
        with atomic_dir(out) as inner:
            handed.append((out, inner, sorted(p.name for p in tmp_path.iterdir())))
            (inner / "result.json").write_text("{}")
            if fail:
                raise RuntimeError("cut short")

    stages = [Stage("lens", {"v": 1}, analysis)]
    if fail:
        with pytest.raises(RuntimeError):
            run_stages(stages, tmp_path)
    else:
        run_stages(stages, tmp_path)
    ((out, inner, siblings),) = handed
    assert inner == out and [s for s in siblings if s.startswith(".lens.tmp-")] == [out.name]  # one staging folder
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert (tmp_path / "lens" / "result.json").is_file() != fail

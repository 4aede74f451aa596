"""`alongside`: one call in a forked process while this one works; what it raises or how it dies comes back here."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from mlalign_tasks.runtime import parallel
from mlalign_tasks.runtime.parallel import alongside

forked = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 cores"
)


def _write_pid(folder: Path) -> None:
    (folder / "pid.tmp").write_text(str(os.getpid()))
    (folder / "pid.tmp").replace(folder / "pid")


def _fail(message: str) -> None:
    raise ValueError(message)


def _hold(folder: Path) -> None:
    _write_pid(folder)
    threading.Event().wait()


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 300
    while not path.exists():
        assert time.monotonic() < deadline, "the forked call did not start"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@forked
def test_the_call_runs_in_another_process_during_the_block(tmp_path: Path) -> None:
    with alongside(_write_pid, tmp_path):
        _wait_for(tmp_path / "pid")  # written while the block still runs
    assert int((tmp_path / "pid").read_text()) != os.getpid()


@forked
def test_what_the_call_raises_is_raised_at_the_end_of_the_block(tmp_path: Path) -> None:
    done = []
    with pytest.raises(ValueError, match="plots failed"), alongside(_fail, "plots failed"):
        done.append(True)
    assert done == [True]


@forked
def test_a_call_that_dies_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="_exit died in a forked process"), alongside(os._exit, 3):
        pass


@forked
def test_a_block_that_raises_kills_the_call(tmp_path: Path) -> None:
    with pytest.raises(KeyError), alongside(_hold, tmp_path):
        _wait_for(tmp_path / "pid")
        raise KeyError("the block failed")
    assert not _alive(int((tmp_path / "pid").read_text()))


def test_with_one_core_the_call_runs_after_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_cores", lambda: 1)
    with alongside(_write_pid, tmp_path):
        assert not (tmp_path / "pid").exists()
    assert int((tmp_path / "pid").read_text()) == os.getpid()

"""The parsing workers: many results files or samples files parsed over the CPU cores (forked worker processes)."""

from __future__ import annotations

from pathlib import Path

from mlalign_tasks.leaderboard.items import Items
from mlalign_tasks.leaderboard.runs import Run, load_run
from mlalign_tasks.leaderboard.samples import load_samples
from mlalign_tasks.runtime.parallel import process_map

PARALLEL_MIN_FILES = 200  # below this a process pool costs more than it saves
PARALLEL_MIN_RUNS = 8


def _load_job(job: tuple[str, str]) -> Items:
    return load_samples(*job)


def load_all_samples(jobs: list[tuple[str, str]]) -> list[Items]:
    """`load_samples` for many (path, metric) jobs, in order; spread over the CPU cores when there are many."""
    return process_map(_load_job, jobs, PARALLEL_MIN_FILES)


def load_all_runs(paths: list[Path]) -> list[Run]:
    """`load_run` of many results files, in order; spread over the CPU cores when there are many."""
    return process_map(load_run, paths, PARALLEL_MIN_RUNS)

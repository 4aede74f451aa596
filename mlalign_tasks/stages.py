"""Resumable pipeline stages: each stage's outputs are skipped when they exist, verify, and match its config hash.

A stage writes into a fresh temporary directory that replaces its output directory only when the
stage finished; its marker (``stage.json``) records the configuration hash (the stage's own
configuration plus the hashes of the stages it depends on) and the sha256 of every file it wrote.
A stage may also write outside its directory (a leaderboard folder): `run` then returns those paths and
their files are recorded too. A stage whose marker is missing, whose hash differs, or one of whose
files is missing or changed, runs again; its dependents run again only when its configuration hash
changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlalign_tasks.atomic import atomic_dir
from mlalign_tasks.data import sha256_file

MARKER = "stage.json"


@dataclass
class Stage:
    """One step of a study. `run(out_dir, work_dir)` writes the outputs into `out_dir` (and returns the
    paths of any outputs it wrote elsewhere); `work_dir` persists across interrupted attempts."""

    name: str
    config: dict
    run: Callable[[Path, Path], list[Path] | None]
    deps: tuple[str, ...] = ()
    hash: str = field(default="", init=False)


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    path: Path
    reason: str


def config_hash(config: dict, dep_hashes: list[str]) -> str:
    """sha256 of the canonical JSON of the stage configuration and its dependencies' hashes."""
    blob = json.dumps({"config": config, "deps": dep_hashes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _file_hashes(root: Path, absolute: bool = False) -> dict[str, str]:
    """sha256 of every file under `root` (or of `root` itself), keyed by relative or absolute path."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER)
    return {(p.resolve().as_posix() if absolute else p.relative_to(root).as_posix()): sha256_file(p) for p in files}


def why_stale(out_dir: Path, expected_hash: str) -> str | None:
    """None when `out_dir` holds complete, unchanged outputs for `expected_hash`; else the reason."""
    marker = out_dir / MARKER
    if not marker.is_file():
        return "no outputs yet"
    try:
        meta = json.loads(marker.read_text())
        recorded_hash, files = meta["config_hash"], meta["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "its marker is unreadable"
    if recorded_hash != expected_hash:
        return "its configuration changed"
    for rel, digest in files.items():
        p = out_dir / rel  # an absolute (external) path replaces out_dir
        if not p.is_file():
            return f"{rel} is missing"
        if sha256_file(p) != digest:
            return f"{rel} changed"
    return None


def run_stages(
    stages: list[Stage], root: Path, on_start: Callable[[Stage, str], None] | None = None
) -> list[StageResult]:
    """Run `stages` (in dependency order) under `root`, skipping the ones whose outputs are current.

    Temporary folders that a killed earlier run left behind (``.<stage>.tmp-*`` / ``.<stage>.old-*``) are removed
    first: one run at a time owns a run directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        for pattern in (f".{stage.name}.tmp-*", f"..{stage.name}.tmp-*", f".{stage.name}.old-*"):
            for leftover in root.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)
    by_name: dict[str, Stage] = {}
    results = []
    for stage in stages:
        stage.hash = config_hash(stage.config, [by_name[d].hash for d in stage.deps])
        by_name[stage.name] = stage
        out_dir = root / stage.name
        reason = why_stale(out_dir, stage.hash)
        start = time.perf_counter()
        if reason is None:
            results.append(StageResult(stage.name, "skipped", 0.0, out_dir, "outputs current"))
            continue
        if on_start:
            on_start(stage, reason)
        work_dir = root / ".work" / f"{stage.name}-{stage.hash[:12]}"  # resumable state of this configuration
        work_dir.mkdir(parents=True, exist_ok=True)
        with atomic_dir(out_dir) as tmp:
            external = stage.run(tmp, work_dir) or []
            marker = {"stage": stage.name, "config_hash": stage.hash, "config": stage.config}
            marker["files"] = _file_hashes(tmp)
            for path in external:
                marker["files"].update(_file_hashes(path, absolute=True))
            (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True, default=str) + "\n")
        for stale in work_dir.parent.glob(f"{stage.name}-{'[0-9a-f]' * 12}"):
            if stale != work_dir:  # resumable state of an earlier configuration
                shutil.rmtree(stale, ignore_errors=True)
        results.append(StageResult(stage.name, "ran", time.perf_counter() - start, out_dir, reason))
    return results

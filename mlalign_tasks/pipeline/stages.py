"""How a stage of `mlalign run` decides to skip: its outputs exist, verify, and match its configuration hash.

The study (`mlalign_tasks.pipeline.study`) says what each stage runs and on which configuration; this module alone
decides whether it runs again. How training resumes inside its stage: `mlalign_trainer.resume` (from the last
checkpoint in the stage's work folder).

A stage writes into a fresh temporary directory that replaces its output directory only when the
stage finished; its marker (``stage.json``) records the configuration hash (the stage's own
configuration plus the sha256 of every file its dependencies wrote) and the sha256 of every file it
wrote. A stage may also write outside its directory (a leaderboard folder): `run` then returns those
paths and their files are recorded too. A stage whose marker is missing, whose hash differs, or one of
whose files is missing or changed, runs again; so do its dependents when its files came out different.
A folder that is not a stage's output (no marker), or a stage folder holding files the stage did not
write, is never replaced: the run stops first and says so.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.atomic import atomic_dir
from mlalign_tasks.files.data import sha256_file
from mlalign_tasks.files.output_dirs import check_replaceable, remove_leftovers

MARKER = "stage.json"


@dataclass
class Stage:
    """One step of a study. `run(out_dir, work_dir)` writes the outputs into `out_dir` (and returns the
    paths of any outputs it wrote elsewhere); `work_dir` persists across interrupted attempts (and after the stage
    finished, unless `keep_work` is False)."""

    name: str
    config: dict
    run: Callable[[Path, Path], list[Path] | None]
    deps: tuple[str, ...] = ()
    keep_work: bool = True  # False: `work_dir` is removed once the stage finished (state only a rerun reads)
    hash: str = field(default="", init=False)
    outputs: str = field(default="", init=False)  # sha256 of its recorded files: what its dependents read


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    path: Path
    reason: str


def digest(obj: object) -> str:
    """sha256 (hex) of a JSON value, its keys sorted."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def config_hash(config: dict, dep_outputs: list[str]) -> str:
    """sha256 of the canonical JSON of the stage configuration and the digests of its dependencies' files."""
    return digest({"config": config, "deps": dep_outputs})


def _file_hashes(root: Path, absolute: bool = False) -> dict[str, str]:
    """sha256 of every file under `root` (or of `root` itself), keyed by relative or absolute path."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER)
    return {(p.resolve().as_posix() if absolute else p.relative_to(root).as_posix()): sha256_file(p) for p in files}


def _read_marker(out_dir: Path) -> dict | None:
    """The marker of `out_dir` (config hash and recorded files: path -> sha256); None if absent or unreadable."""
    try:
        meta = json.loads((out_dir / MARKER).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    ok = isinstance(meta, dict) and isinstance(meta.get("files"), dict) and isinstance(meta.get("config_hash"), str)
    return meta if ok else None


def why_stale(out_dir: Path, expected_hash: str) -> str | None:
    """None when `out_dir` holds complete, unchanged outputs for `expected_hash`; else the reason."""
    if not (out_dir / MARKER).is_file():
        return "no outputs yet"
    meta = _read_marker(out_dir)
    if meta is None:
        return "its marker is unreadable"
    if meta["config_hash"] != expected_hash:
        return "its configuration or its inputs changed"
    for rel, digest in meta["files"].items():
        p = out_dir / rel  # an absolute (external) path replaces out_dir
        if not p.is_file():
            return f"{rel} is missing"
        if sha256_file(p) != digest:
            return f"{rel} changed"
    return None


def check_stage_dir(out_dir: Path) -> None:
    """Refuse to replace `out_dir` unless it is empty or a stage output holding only the files it recorded."""
    fix = f"move it out of {out_dir.parent}"
    check_replaceable(out_dir, "stage folder", (MARKER,), f"an output of stage {out_dir.name} (no {MARKER})", fix)
    recorded = (_read_marker(out_dir) or {}).get("files", {})
    extra = [
        rel
        for rel in (p.relative_to(out_dir).as_posix() for p in sorted(out_dir.rglob("*")) if p.is_file())
        if rel != MARKER and rel not in recorded
    ]
    if extra and (out_dir / MARKER).is_file():
        more = f" (and {len(extra) - 1} other file(s))" if len(extra) > 1 else ""
        raise MlalignError(
            f"{out_dir / extra[0]}{more} was not written by stage {out_dir.name}, whose folder is replaced when it "
            f"runs again; move it out of {out_dir}"
        )


def run_stages(
    stages: list[Stage], root: Path, on_start: Callable[[Stage, str], None] | None = None
) -> list[StageResult]:
    """Run `stages` (in dependency order) under `root`, skipping the ones whose outputs are current.

    Temporary folders that a killed earlier run left behind (``.<stage>.tmp-*`` / ``.<stage>.old-*``) are removed
    first; a folder in the way of a stage that is not that stage's output stops the run before any stage runs.
    """
    root.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        remove_leftovers(root, f".{stage.name}.tmp-*", f".{stage.name}.old-*")
        check_stage_dir(root / stage.name)
    by_name: dict[str, Stage] = {}
    results = []
    for stage in stages:
        stage.hash = config_hash(stage.config, [by_name[d].outputs for d in stage.deps])
        by_name[stage.name] = stage
        out_dir = root / stage.name
        reason = why_stale(out_dir, stage.hash)
        start = time.perf_counter()
        if reason is None:
            stage.outputs = digest(_read_marker(out_dir)["files"])
            results.append(StageResult(stage.name, "skipped", 0.0, out_dir, "outputs current"))
            continue
        if on_start:
            on_start(stage, reason)
        check_stage_dir(out_dir)  # an earlier stage may not create it, but a user may have meanwhile
        work_dir = root / ".work" / f"{stage.name}-{stage.hash[:12]}"  # resumable state of this configuration
        work_dir.mkdir(parents=True, exist_ok=True)
        with atomic_dir(out_dir) as tmp:
            external = stage.run(tmp, work_dir) or []
            marker = {"stage": stage.name, "config_hash": stage.hash, "config": stage.config}
            marker["files"] = _file_hashes(tmp)
            for path in external:
                marker["files"].update(_file_hashes(path, absolute=True))
            (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True, default=str) + "\n")
        stage.outputs = digest(marker["files"])
        for stale in work_dir.parent.glob(f"{stage.name}-{'[0-9a-f]' * 12}"):
            if stale != work_dir or not stage.keep_work:  # state of an earlier configuration, or of this finished one
                shutil.rmtree(stale, ignore_errors=True)
        results.append(StageResult(stage.name, "ran", time.perf_counter() - start, out_dir, reason))
    return results

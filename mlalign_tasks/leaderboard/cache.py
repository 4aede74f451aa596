"""A cache of parsed lm-eval output: a board built again (after a new run, with another option) parses only the
files that changed since.

One cache file per results file, named by the digest of its path: the parsed run, and the item columns of each
of its samples files per metric. Each is stamped with what identifies its file's content (size, modification and
change times, inode, device; for the run also its folder's, whose listing decides which samples files it has), and
a stamp that does not match the file now means the file is parsed again. A cache file that cannot be read counts
as absent and is rewritten; one that cannot be written is skipped with a warning. The board does not depend on
the cache: built with it or without it, its files are byte-identical.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path

import numpy as np

from mlalign_tasks import __version__
from mlalign_tasks.atomic import write_bytes_atomic
from mlalign_tasks.leaderboard.load import Items, Run, load_all_runs, load_all_samples

CACHE_ENV = "MLALIGN_BOARD_CACHE"
FORMAT = 1  # of the cache files; bump when Run, Items or the parsers change what they give
log = logging.getLogger(__name__)

Stamp = tuple[int, ...]


def default_folder() -> Path:
    """$MLALIGN_BOARD_CACHE, else $XDG_CACHE_HOME/mlalign/leaderboard, else ~/.cache/mlalign/leaderboard."""
    if folder := os.environ.get(CACHE_ENV):
        return Path(folder).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlalign" / "leaderboard"


def stamp(path: str | Path) -> Stamp | None:
    """What identifies the file's content without reading it; None if it cannot be stat'ed."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_dev)


class _Entry:
    """One results file's cache: its run and its samples files' item columns, keyed by (file path, metric)."""

    def __init__(
        self, run: Run, run_stamp: Stamp, items: dict[tuple[str, str], tuple[Stamp, Items]], changed: bool = False
    ) -> None:
        self.run, self.run_stamp, self.items, self.changed = run, run_stamp, items, changed

    def dump(self) -> bytes:
        keys = list(self.items)
        columns = [self.items[k][1] for k in keys]
        sizes = [c.size for c in columns]
        payload = {
            "format": FORMAT,
            "version": __version__,
            "run_stamp": self.run_stamp,
            "run": self.run,
            "files": [(name, metric, self.items[(name, metric)][0]) for name, metric in keys],
            "offsets": np.cumsum([0, *sizes]),
            **{
                field: np.concatenate([getattr(c, field) for c in columns]) if columns else np.zeros(0, dtype)
                for field, dtype in (("keys", np.int64), ("answers", np.int64), ("scores", np.float64))
            },
        }
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, data: bytes) -> _Entry | None:
        payload = pickle.loads(data)
        if not isinstance(payload, dict) or (payload.get("format"), payload.get("version")) != (FORMAT, __version__):
            return None
        offsets = payload["offsets"].tolist()
        keys, answers, scores = payload["keys"], payload["answers"], payload["scores"]
        items = {
            (name, metric): (file_stamp, Items(keys[a:b], answers[a:b], scores[a:b]))
            for (name, metric, file_stamp), a, b in zip(payload["files"], offsets[:-1], offsets[1:], strict=True)
        }
        return cls(payload["run"], tuple(payload["run_stamp"]), items)


class ParseCache:
    """`load_all_runs` and `load_all_samples` through the cache folder `folder` (None: no cache, everything parsed)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.entries: dict[str, _Entry] = {}  # results file -> its cache entry
        self.owner: dict[str, str] = {}  # samples file -> the results file that names it

    def _file(self, results: Path) -> Path:
        assert self.folder is not None
        return self.folder / f"{hashlib.sha256(str(results).encode()).hexdigest()[:32]}.pkl"

    def _read(self, results: Path) -> _Entry | None:
        try:
            return _Entry.load(self._file(results).read_bytes())
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 - a damaged or foreign cache file is parsed again, never trusted
            log.warning("ignoring unreadable board cache file %s (%s)", self._file(results), type(e).__name__)
            return None

    def runs(self, paths: list[Path]) -> list[Run]:
        """`load_run` of each results file, from the cache where the file and its folder are unchanged; the others
        read (in parallel: `load_all_runs`)."""
        entries: dict[Path, _Entry] = {}
        stale: dict[Path, dict[tuple[str, str], tuple[Stamp, Items]]] = {}  # a changed run's samples: still stamped
        stamps: dict[Path, Stamp] = {}
        for path in paths:
            stamps[path] = (*(stamp(path) or ()), *(stamp(path.parent) or ()))
            entry = self._read(path) if self.folder is not None else None
            if entry is not None and entry.run_stamp == stamps[path]:
                entries[path] = entry
            elif entry is not None:
                stale[path] = entry.items
        missing = [p for p in paths if p not in entries]
        for path, run in zip(missing, load_all_runs(missing), strict=True):
            entries[path] = _Entry(run, stamps[path], stale.get(path, {}), changed=True)
        for path, entry in entries.items():
            self.entries[str(path)] = entry
            for result in entry.run.tasks.values():
                for _, samples in result.samples:
                    self.owner[samples] = str(path)
        return [entries[p].run for p in paths]

    def samples(self, jobs: list[tuple[str, str]]) -> list[Items]:
        """`load_all_samples(jobs)`: the cached columns of the files unchanged, the others parsed (in parallel)."""
        if self.folder is None:
            return load_all_samples(jobs)
        out: list[Items | None] = []
        missing: list[int] = []
        stamps = []
        for path, metric in jobs:
            entry = self.entries.get(self.owner.get(path, ""))
            now = stamp(path)
            hit = entry.items.get((path, metric)) if entry is not None else None
            stamps.append(now)
            if hit is not None and now is not None and hit[0] == now:
                out.append(hit[1])
            else:
                out.append(None)
                missing.append(len(out) - 1)
        parsed = load_all_samples([jobs[i] for i in missing])
        for i, items in zip(missing, parsed, strict=True):
            out[i] = items
            path, metric = jobs[i]
            entry = self.entries.get(self.owner.get(path, ""))
            if entry is not None and stamps[i] is not None:
                entry.items[(path, metric)] = (stamps[i], items)
                entry.changed = True
        return out  # type: ignore[return-value]

    def save(self) -> None:
        """Write the cache files of the results files whose entries changed (atomically; a failure only warns)."""
        if self.folder is None:
            return
        for results, entry in self.entries.items():
            if entry.changed:
                try:
                    write_bytes_atomic(self._file(Path(results)), entry.dump())
                except OSError as e:
                    log.warning("board cache not written to %s: %s", self.folder, e)
                    return
                entry.changed = False

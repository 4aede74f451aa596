"""A cache of parsed lm-eval output: a board built again (after a new run, with another option) parses only the
files that changed since.

One cache file per results file, named by the digest of its path: the parsed run, and the item columns of each
of its samples files per metric, as a JSON header followed by raw little-endian arrays (nothing in it can run
code). Each part is tied to the content it was parsed from (an XXH3-128 digest of the file; for the run also its
folder's stamp, whose listing decides which samples files it has), and the whole file to the source of the
parsing code (`parser_key`): a different content or parser means the file is parsed again. The cache folder must
belong to the user and be writable by no one else (else anyone could plant entries), and only regular files owned
by the user are read from it. A cache file that cannot be read counts as absent and is rewritten; one that cannot
be written is skipped with a warning. The board does not depend on the cache: built with it or without it, its
files are byte-identical.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import stat
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xxhash

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.atomic import write_bytes_atomic
from mlalign_tasks.leaderboard import discover
from mlalign_tasks.leaderboard import items as items_module
from mlalign_tasks.leaderboard import runs as runs_module
from mlalign_tasks.leaderboard import samples as samples_module
from mlalign_tasks.leaderboard.items import Items
from mlalign_tasks.leaderboard.runs import Run, TaskResult
from mlalign_tasks.leaderboard.workers import load_all_runs, load_all_samples
from mlalign_tasks.tasks import languages, suites

CACHE_ENV = "MLALIGN_BOARD_CACHE"
SUFFIX = ".entry"
MAGIC = b"mlalign board cache\n"
_HEADER_SIZE = struct.Struct("<Q")
_CHUNK = 1 << 20  # bytes read at a time to hash a file (a samples file is mostly smaller)
_FILES_PER_THREAD = 256  # fewer files are hashed in this thread
_COLUMNS = (("keys", "<i8"), ("answers", "<i8"), ("scores", "<f8"))  # Items' columns as stored
log = logging.getLogger(__name__)

Stamp = tuple[int, ...]


@functools.cache
def parser_key() -> str:
    """A digest of the source of the modules whose code decides what a parse gives (and of this file's format)."""
    digest = hashlib.sha256()
    for module in (discover, runs_module, samples_module, items_module, suites, languages):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def default_folder() -> Path:
    """$MLALIGN_BOARD_CACHE, else $XDG_CACHE_HOME/mlalign/leaderboard, else ~/.cache/mlalign/leaderboard."""
    if folder := os.environ.get(CACHE_ENV):
        return Path(folder).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlalign" / "leaderboard"


def stamp(path: str | Path) -> Stamp | None:
    """What identifies a folder's listing without reading it; None if it cannot be stat'ed."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_dev)


def _open_regular(path: Path, owned: bool = False) -> int | None:
    """A read descriptor of `path` if it is a regular file (and, with `owned`, the user's); None otherwise. Opened
    without blocking, so that a FIFO planted there cannot hang the build."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (owned and info.st_uid != os.getuid()):
        os.close(fd)
        return None
    return fd


def content_digest(path: str | Path) -> str | None:
    """The XXH3-128 digest of a regular file's bytes (gigabytes of logs in well under a second); None when it is not
    a readable regular file."""
    fd = _open_regular(Path(path))
    if fd is None:
        return None
    digest = xxhash.xxh3_128()
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()


def content_digests(paths: list[str]) -> list[str | None]:
    """`content_digest` of each file, in order, on a thread per CPU core (reading and hashing release the GIL)."""
    workers = min(os.cpu_count() or 1, len(paths) // _FILES_PER_THREAD)
    if workers < 2:
        return [content_digest(path) for path in paths]
    size = -(-len(paths) // workers)
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(
            lambda part: [content_digest(path) for path in part],
            [paths[i : i + size] for i in range(0, len(paths), size)],
        )
        return [digest for part in parts for digest in part]


def check_folder(folder: Path) -> bool:
    """Create the cache folder (private to the user) if it is missing; refuse one that another user owns or can
    write to. False (with a warning) when it cannot be created: the board is then built without a cache."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(folder)
    except OSError as e:
        log.warning("board cache not written to %s: %s", folder, e)
        return False
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = (
            "belongs to another user"
            if info.st_uid != os.getuid()
            else f"is writable by others ({info.st_mode & 0o777:o})"
        )
        raise MlalignError(
            f"board cache folder {folder} {who}: others could plant entries there; use a folder of your own "
            f"(`chmod go-w {folder}`, or --cache-dir), or --no-cache"
        )
    return True


def _run_json(run: Run) -> dict:
    return dataclasses.asdict(run) | {"path": str(run.path)}


def _run_of(value: dict) -> Run:
    tasks = {
        name: TaskResult(**task | {"samples": [tuple(pair) for pair in task["samples"]]})
        for name, task in value.pop("tasks").items()
    }
    return Run(**value | {"path": Path(value["path"]), "tasks": tasks})


class _Entry:
    """One results file's cache: its run and its samples files' item columns, keyed by (file path, metric)."""

    def __init__(
        self, run: Run, run_key: list, items: dict[tuple[str, str], tuple[str, Items]], changed: bool = False
    ) -> None:
        self.run, self.run_key, self.items, self.changed = run, run_key, items, changed

    def dump(self) -> bytes:
        keys = list(self.items)
        columns = [self.items[k][1] for k in keys]
        header = {
            "parser": parser_key(),
            "run_key": self.run_key,
            "run": _run_json(self.run),
            "files": [
                [name, metric, self.items[(name, metric)][0], column.size]
                for (name, metric), column in zip(keys, columns, strict=True)
            ],
        }
        head = json.dumps(header).encode()
        arrays = [
            np.concatenate([getattr(c, field) for c in columns]).astype(dtype).tobytes() if columns else b""
            for field, dtype in _COLUMNS
        ]
        return b"".join([MAGIC, _HEADER_SIZE.pack(len(head)), head, *arrays])

    @classmethod
    def load(cls, data: bytearray) -> _Entry | None:
        """The entry in `data`; None if it was written by other parsing code. Raises on a damaged file."""
        if not data.startswith(MAGIC):
            raise ValueError("not a board cache file")
        (size,) = _HEADER_SIZE.unpack_from(data, len(MAGIC))
        start = len(MAGIC) + _HEADER_SIZE.size
        header = json.loads(data[start : start + size])
        if header["parser"] != parser_key():
            return None
        count = sum(n for *_, n in header["files"])
        offset, columns = start + size, {}
        for field, dtype in _COLUMNS:
            columns[field] = np.frombuffer(data, dtype=dtype, count=count, offset=offset)  # writable: a bytearray
            offset += columns[field].nbytes
        if offset != len(data):
            raise ValueError("trailing bytes")
        items, at = {}, 0
        for name, metric, digest, n in header["files"]:
            items[(name, metric)] = (digest, Items(*(columns[f][at : at + n] for f, _ in _COLUMNS)))
            at += n
        return cls(_run_of(header["run"]), header["run_key"], items)


class ParseCache:
    """`load_all_runs` and `load_all_samples` through the cache folder `folder` (None: no cache, everything parsed).

    Raises MlalignError when the folder belongs to another user or others can write to it (`check_folder`)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder if folder is not None and check_folder(folder) else None
        self.entries: dict[str, _Entry] = {}  # results file -> its cache entry
        self.owner: dict[str, str] = {}  # samples file -> the results file that names it

    def _file(self, results: Path) -> Path:
        assert self.folder is not None
        return self.folder / f"{hashlib.sha256(str(results).encode()).hexdigest()[:32]}{SUFFIX}"

    def _read(self, results: Path) -> _Entry | None:
        path = self._file(results)
        fd = _open_regular(path, owned=True)
        if fd is None:
            if path.exists() or path.is_symlink():
                log.warning("ignoring board cache file %s: not a regular file of yours", path)
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                return _Entry.load(bytearray(f.read()))
        except Exception as e:  # noqa: BLE001 - a damaged or foreign cache file is parsed again, never trusted
            log.warning("ignoring unreadable board cache file %s (%s)", path, type(e).__name__)
            return None

    def runs(self, paths: list[Path]) -> list[Run]:
        """`load_run` of each results file, from the cache where the file's content and its folder are unchanged;
        the others read (in parallel: `load_all_runs`)."""
        entries: dict[Path, _Entry] = {}
        stale: dict[Path, dict[tuple[str, str], tuple[str, Items]]] = {}  # a changed run's samples: still keyed
        keys: dict[Path, list] = {}
        for path in paths:
            if self.folder is None:
                continue
            keys[path] = [content_digest(path), *(stamp(path.parent) or [None])]  # as JSON gives it back
            entry = self._read(path)
            if entry is not None and entry.run_key == keys[path] and None not in keys[path]:
                entries[path] = entry
            elif entry is not None:
                stale[path] = entry.items
        missing = [p for p in paths if p not in entries]
        for path, run in zip(missing, load_all_runs(missing), strict=True):
            entries[path] = _Entry(run, keys.get(path, []), stale.get(path, {}), changed=True)
        for path, entry in entries.items():
            self.entries[str(path)] = entry
            for result in entry.run.tasks.values():
                for _, samples in result.samples:
                    self.owner[samples] = str(path)
        return [entries[p].run for p in paths]

    def samples(self, jobs: list[tuple[str, str]]) -> list[Items]:
        """`load_all_samples(jobs)`: the cached columns of the files whose content is unchanged, the others parsed
        (in parallel)."""
        if self.folder is None:
            return load_all_samples(jobs)
        files = list(dict.fromkeys(path for path, _ in jobs))
        digests = dict(zip(files, content_digests(files), strict=True))
        out: list[Items | None] = []
        missing: list[int] = []
        for path, metric in jobs:
            entry = self.entries.get(self.owner.get(path, ""))
            hit = entry.items.get((path, metric)) if entry is not None else None
            if hit is not None and digests[path] is not None and hit[0] == digests[path]:
                out.append(hit[1])
            else:
                out.append(None)
                missing.append(len(out) - 1)
        parsed = load_all_samples([jobs[i] for i in missing])
        for i, items in zip(missing, parsed, strict=True):
            out[i] = items
            path, metric = jobs[i]
            entry = self.entries.get(self.owner.get(path, ""))
            if entry is not None and digests[path] is not None:
                entry.items[(path, metric)] = (digests[path], items)
                entry.changed = True
        return out  # type: ignore[return-value]

    def save(self) -> None:
        """Write the cache files of the results files whose entries changed (atomically; a failure only warns)."""
        if self.folder is None:
            return
        for results, entry in self.entries.items():
            if entry.changed and None not in entry.run_key:
                try:
                    write_bytes_atomic(self._file(Path(results)), entry.dump())
                except OSError as e:
                    log.warning("board cache not written to %s: %s", self.folder, e)
                    return
                entry.changed = False

"""Data files: registry, resolution (explicit dir -> user cache -> package -> download) and verified downloads.

Every benchmark and training file the project reads is named by its path in the offline mirror
layout (e.g. ``mgsm/mgsm_de.tsv``) and pinned in ``data_registry.json`` to a canonical public
repository, commit, path and a checksum: the sha256 and size of the file, or, for files that are not in
the offline mirror, their git blob id (the SHA-1 git names a file's content by, read from the repository's
tree). ``resolve(name)`` returns a local, checksum-verified path. Small tables of facts extracted from
upstream scripts (the paper tasks' prompts) ship in the package (``resources/``, the registry's
``packaged``); the benchmark files themselves are downloaded.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mlalign_tasks.errors import DataError
from mlalign_tasks.files.output_dirs import remove_leftovers, try_lock

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
_REGISTRY_FILE = Path(__file__).parents[1] / "data_registry.json"
_RESOURCES = Path(__file__).parents[1] / "resources"
_CHUNK = 1 << 20
MIN_RATE = 64 << 10  # bytes per second: a download slower than this on average is given up
# A transformed file is pinned after the transform; its source may be this much larger (a Python module vs JSON).
SOURCE_SIZE_FACTOR, SOURCE_SIZE_SLACK = 4, 64 << 10
UNSIZED_LIMIT = 256 << 20  # a file pinned by its git blob id alone has no pinned size: it may have this many bytes


@dataclass(frozen=True)
class DataFile:
    """One pinned data file."""

    name: str
    repo: str
    commit: str
    path: str | None  # None: not a file in the repository (see extracted_from)
    sha256: str | None = None  # with size: the pin of a mirrored file
    size: int | None = None
    git_blob: str | None = None  # the pin of a file known only by its blob id
    transform: str | None = None
    extracted_from: tuple[str, ...] = ()  # the upstream scripts a packaged file's facts were read from
    packaged: str | None = None  # the file's name in the package's resources/, when it ships with mlalign

    def checksum(self) -> tuple[str, str]:
        """(kind, expected value): ("sha256", ...) or ("git blob", ...)."""
        return ("sha256", self.sha256) if self.sha256 else ("git blob", str(self.git_blob))

    def url(self, base_url: str | None = None) -> str | None:
        if self.path is None:
            return None
        base = (base_url or os.environ.get("MLALIGN_DATA_URL") or DEFAULT_BASE_URL).rstrip("/")
        return f"{base}/{self.repo}/{self.commit}/{self.path}"

    def source(self) -> str:
        """Where the file comes from: its download URL, or the upstream scripts it was extracted from."""
        if self.path is None:
            return f"extracted from {self.repo}@{self.commit[:7]}: {', '.join(self.extracted_from)}"
        return str(self.url()) + (" (converted to JSON)" if self.transform else "")

    def how_to_get(self) -> str:
        if self.path is None:
            return "it ships with mlalign: reinstall the package, or put the file into MLALIGN_DATA_DIR or --data-dir"
        fetches = f"downloads {self.url()}" + (" and converts it to JSON" if self.transform else "")
        return (
            f"run `mlalign data fetch {self.name}` with network access (it {fetches}), "
            f"or put {self.name} from a data mirror into a directory given by MLALIGN_DATA_DIR or --data-dir"
        )


@cache
def registry() -> dict[str, DataFile]:
    """All pinned files by name."""
    raw = json.loads(_REGISTRY_FILE.read_text(encoding="utf-8"))
    return {
        name: DataFile(name=name, **{**e, "extracted_from": tuple(e.get("extracted_from", ()))})
        for name, e in raw.items()
    }


def lookup(name: str) -> DataFile:
    """The registry entry for `name`, with a clear error for an unknown one."""
    try:
        return registry()[name]
    except KeyError:
        raise DataError(f"unknown data file {name!r}; `mlalign data list` shows the known files") from None


def select(patterns: list[str] | None) -> list[DataFile]:
    """Entries matching any of the glob patterns (all entries when none are given)."""
    if not patterns:
        return list(registry().values())
    chosen = [f for f in registry().values() if any(fnmatch.fnmatch(f.name, p) for p in patterns)]
    missing = [p for p in patterns if not any(fnmatch.fnmatch(f.name, p) for f in registry().values())]
    if missing:
        raise DataError(f"no data file matches {', '.join(missing)}; `mlalign data list` shows the known files")
    return chosen


def explicit_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The explicit data directory: the argument, else $MLALIGN_DATA_DIR; one that is not a folder is an error."""
    d = data_dir or os.environ.get("MLALIGN_DATA_DIR")
    if not d:
        return None
    path = Path(d).expanduser()
    if not path.is_dir():
        given = f"--data-dir {d}" if data_dir else f"MLALIGN_DATA_DIR={d}"
        raise DataError(
            f"{given} is not a directory; point it at a folder of data files, or leave it unset to use the cache "
            f"({cache_dir()}) and download what is missing"
        )
    return path


def cache_dir() -> Path:
    """The user cache: $MLALIGN_CACHE_DIR, else $XDG_CACHE_HOME/mlalign/data, else ~/.cache/mlalign/data."""
    if d := os.environ.get("MLALIGN_CACHE_DIR"):
        return Path(d).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "mlalign" / "data"


def offline_variable() -> str | None:
    """The variable that switches downloads off (MLALIGN_OFFLINE, or HF_HUB_OFFLINE), if one is set to true."""
    return next(
        (
            v
            for v in ("MLALIGN_OFFLINE", "HF_HUB_OFFLINE")
            if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        ),
        None,
    )


def is_offline() -> bool:
    """True when MLALIGN_OFFLINE (or HF_HUB_OFFLINE) is set to a true value."""
    return offline_variable() is not None


def _hash_file(h, path: Path) -> str:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    return _hash_file(hashlib.sha256(), path)


def git_blob_id(path: Path) -> str:
    """Git's name for a file's content, as `git hash-object` prints it: sha1(b"blob <size>\\0" + content)."""
    return _hash_file(hashlib.sha1(f"blob {path.stat().st_size}\0".encode()), path)


def file_checksum(entry: DataFile, path: Path) -> str:
    """The checksum of `path` of the kind that pins `entry`."""
    return sha256_file(path) if entry.sha256 else git_blob_id(path)


_verified: dict[tuple[str, int, int], bool] = {}
_FIXES = {
    "explicit dir": "delete it and restore it from the pinned source",
    "the cache": "delete it and run `mlalign data fetch`",
    "the package": "reinstall mlalign",
}


def _check(entry: DataFile, path: Path, where: str) -> Path:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        kind, expected = entry.checksum()
        digest = file_checksum(entry, path)
        if digest != expected:
            raise DataError(
                f"checksum mismatch for {entry.name} in {where} ({path}): expected {kind} {expected}, "
                f"got {digest}; the file is corrupt or a different version: {_FIXES.get(where, _FIXES['explicit dir'])}"
            )
        _verified[key] = True
    return path


def locate(entry: DataFile, data_dir: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """Where the file is present locally (path, 'explicit dir' | 'the cache' | 'the package'), without verifying it."""
    for base, where in ((explicit_dir(data_dir), "explicit dir"), (cache_dir(), "the cache")):
        if base is not None and (base / entry.name).is_file():
            return base / entry.name, where
    if entry.packaged and (_RESOURCES / entry.packaged).is_file():
        return _RESOURCES / entry.packaged, "the package"
    return None


def resolve(
    name: str,
    data_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    base_url: str | None = None,
) -> Path:
    """A verified local path for `name`: explicit dir, then cache, then the package, then a download unless offline."""
    entry = lookup(name)
    if found := locate(entry, data_dir):
        return _check(entry, *found)
    offline = is_offline() if offline is None else offline
    if offline or entry.path is None:
        reason = (
            f"offline mode is on ({offline_variable() or 'offline=True'})"
            if offline
            else "it cannot be downloaded as a file"
        )
        searched = ", ".join(str(d) for d in (explicit_dir(data_dir), cache_dir()) if d is not None)
        raise DataError(
            f"data file {name} not found in {searched} and {reason}: {entry.how_to_get()}{mirror_hint(data_dir)}"
        )
    try:
        return download(entry, base_url=base_url)
    except DataError as e:
        raise DataError(f"{e}{mirror_hint(data_dir)}") from None


def mirror_hint(data_dir: str | os.PathLike | None = None) -> str:
    """With no data folder set, and the offline mirror at ``../shared/data`` (where the Makefile finds it), how to
    use it; else ''."""
    mirror = Path.cwd().parent / "shared" / "data"
    if explicit_dir(data_dir) is not None or not mirror.is_dir():
        return ""
    return f" (a data mirror is beside this folder: `export MLALIGN_DATA_DIR={mirror.resolve()}` uses it)"


def _size_limit(entry: DataFile) -> int:
    """The most bytes a download of `entry` may have."""
    if entry.size is None:
        return UNSIZED_LIMIT
    return entry.size if entry.transform is None else entry.size * SOURCE_SIZE_FACTOR + SOURCE_SIZE_SLACK


def _receive(entry: DataFile, resp, out, url: str, timeout: float) -> None:
    """Copy the response body to `out`, stopping (with a DataError) past the pinned size or the time allowed."""
    limit = _size_limit(entry)
    pinned = entry.size if entry.size is not None else "none, pinned by git blob id"
    too_large = DataError(
        f"download of {entry.name} from {url} is larger than the {limit} bytes it may have (pinned size: {pinned}); "
        "nothing was kept: the source is not the pinned file"
    )
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    allowed = timeout + limit / MIN_RATE
    deadline, got = time.monotonic() + allowed, 0
    while chunk := resp.read1(_CHUNK):
        got += len(chunk)
        if got > limit:
            raise too_large
        try:
            out.write(chunk)
        except OSError as e:  # not the network's fault: said here, before the handler of network errors
            raise _cannot_write(entry, e) from None
        if time.monotonic() > deadline:
            raise DataError(
                f"download of {entry.name} from {url} took over {allowed:.0f} s ({got} bytes of at most {limit}); "
                f"nothing was kept, retry `mlalign data fetch {entry.name}` or set MLALIGN_DATA_DIR"
            )


def _cannot_write(entry: DataFile, error: OSError) -> DataError:
    return DataError(
        f"cannot write {entry.name} into the data cache {cache_dir()} ({error.strerror}); nothing was kept: free some "
        "space there, or set MLALIGN_CACHE_DIR to a folder with room"
    )


def download(entry: DataFile, base_url: str | None = None, timeout: float = 60.0) -> Path:
    """Download `entry` into the cache, verify its size (when pinned) and checksum, and move it into place atomically.

    No more than its pinned size (`UNSIZED_LIMIT` for a file pinned by blob id alone) is read, and no longer than
    `timeout` plus that size at `MIN_RATE`; the ``.part`` files of killed downloads are removed first (a live
    download holds a lock on its own).
    """
    url = entry.url(base_url)
    if url is None:
        raise DataError(f"data file {entry.name} cannot be downloaded as a file: {entry.how_to_get()}")
    target = cache_dir() / entry.name
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target.parent, f".{target.name}.*.part")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    lock = try_lock(tmp)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as resp:
                        _receive(entry, resp, out, url, timeout)
                except urllib.error.HTTPError as e:
                    raise DataError(f"download of {entry.name} failed: HTTP {e.code} from {url}; retry later") from None
                except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                    reason = getattr(e, "reason", e)
                    raise DataError(
                        f"download of {entry.name} failed ({reason}) from {url}; check the network or "
                        f"set MLALIGN_DATA_DIR to a directory that has the file"
                    ) from None
            if entry.transform == "python_literals_to_json":
                tmp.write_text(python_literals_to_json(tmp.read_text(encoding="utf-8")), encoding="utf-8")
        except OSError as e:  # the last buffered bytes, written as the file closes, or the converted file
            raise _cannot_write(entry, e) from None
        got = tmp.stat().st_size
        if entry.transform is None and entry.size is not None and got != entry.size:
            raise DataError(
                f"incomplete download of {entry.name} from {url}: got {got} of {entry.size} bytes; "
                f"nothing was kept, retry `mlalign data fetch {entry.name}`"
            )
        kind, expected = entry.checksum()
        digest = file_checksum(entry, tmp)
        if digest != expected:
            raise DataError(
                f"checksum mismatch for {entry.name} downloaded from {url} ({got} bytes): expected {kind} {expected}, "
                f"got {digest}; the source changed or the transfer was cut off or corrupted; nothing was kept, retry "
                f"`mlalign data fetch {entry.name}`"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        if lock is not None:
            os.close(lock)
    return target


def python_literals_to_json(source: str) -> str:
    """Convert a Python module of top-level literal assignments (QAlign's exemplars.py) to JSON.

    Names are lower-cased; the result is written as ``json.dumps(..., ensure_ascii=False, indent=1)``,
    the form pinned by the registry's sha256.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise DataError(f"downloaded exemplars are not valid Python ({e}); retry the download") from None
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id.lower()] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return json.dumps(out, ensure_ascii=False, indent=1)


def read_registry_json(name: str, **kw) -> object:
    """Parse the registry data file `name` (JSON), with a clear error if it is not valid JSON."""
    path = resolve(name, **kw)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e}); delete it and run `mlalign data fetch {name}`") from None


def read_registry_jsonl(name: str, **kw) -> list[dict]:
    """Parse the registry data file `name` (JSON lines)."""
    path = resolve(name, **kw)
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path} line {i} is not valid JSON ({e})") from None
    return rows

"""Atomic writes: a file or a whole directory appears complete or not at all, and a failure keeps the old one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlalign_tasks.output_dirs import remove_leftovers, try_lock


def replace_dir(new: Path, target: Path) -> None:
    """Move `new` into place as `target`; an old `target` is removed only once `new` is there."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old / target.name, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _replace_entries(new: Path, target: Path, owned: Collection[str]) -> None:
    """Move every entry of `new` into `target` (each one atomically) and remove the `owned` names it lacks."""
    remove_leftovers(target, *(f".{name}.old-*" for name in owned))
    written = sorted(new.iterdir())
    for entry in written:
        old = target / entry.name
        if entry.is_dir() or (old.is_dir() and not old.is_symlink()):
            replace_dir(entry, old)
        else:
            os.replace(entry, old)
    for name in set(owned) - {entry.name for entry in written}:
        stale = target / name
        if not (stale.exists() or stale.is_symlink()):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()


_STAGING: set[Path] = set()  # the temporary folders of this process's open `atomic_dir` blocks
_LOCKS: set[int] = set()  # the descriptors holding their locks


def _forget_locks() -> None:
    """In a forked child: close the inherited lock descriptors (the parent's stay open, so its locks hold), so
    that a child outliving a killed parent for a moment does not keep the parent's staging folder locked."""
    for fd in _LOCKS:
        os.close(fd)
    _LOCKS.clear()


os.register_at_fork(after_in_child=_forget_locks)


@contextmanager
def atomic_dir(out: str | Path, owned: Collection[str] | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; when the block succeeds it replaces `out`, else it is removed.

    With `owned` (every name this writer may put into `out`), an existing `out` is updated entry by entry
    instead: what the block wrote replaces the entries of the same names, owned names it did not write are
    removed, and anything else in `out` (a ``.git``, a user's file) is left alone. Temporary folders of a
    killed earlier writer of `out` are removed first (each live writer holds a lock on its own).

    When `out` is itself the temporary folder of an enclosing `atomic_dir` (a pipeline stage handing its fresh
    folder to an analysis), the block writes into it in place: the enclosing writer already makes it atomic.
    """
    out = Path(os.path.abspath(out))  # `.` has no name to put beside it
    if out in _STAGING:
        yield out
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out.parent, f".{out.name}.tmp-*", f".{out.name}.old-*")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    lock = try_lock(tmp)
    if lock is not None:
        _LOCKS.add(lock)
    _STAGING.add(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if owned is not None and out.is_dir():
            _replace_entries(tmp, out, owned)
        else:
            replace_dir(tmp, out)
    finally:
        _STAGING.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            _LOCKS.discard(lock)
            os.close(lock)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) through a temporary file in the same directory and ``os.replace``."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` through a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write `obj` as indented UTF-8 JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")

"""Atomic writes: a file or a whole directory appears complete or not at all, and a failure keeps the old one."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.output_dirs import remove_leftovers, try_lock, wait_for_lock


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


RENAME_EXCHANGE = 2  # renameat2(2): swap two paths in one step
AT_FDCWD = -100


def exchange_dirs(new: Path, target: Path) -> None:
    """Swap the folders `new` and `target` in one step (a reader sees the one or the other, never a mix or nothing);
    where the system cannot (not Linux, or a filesystem without it), `target` is replaced by two renames."""
    swap = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform.startswith("linux") else None
    if swap is not None:
        if swap(AT_FDCWD, os.fsencode(new), AT_FDCWD, os.fsencode(target), RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(target))
    replace_dir(new, target)


Owns = Callable[[PurePath, Path], bool]  # whether an entry of `out` (path relative to `out`, path) is the writer's


_HERE = PurePath()


def others(folder: Path, owns: Owns, relative: PurePath = _HERE) -> list[PurePath]:
    """The entries of `folder` that are not the writer's own, inside the writer's own folders too (relative paths)."""
    found: list[PurePath] = []
    for entry in sorted(folder.iterdir()):
        if not owns(relative / entry.name, entry):
            found.append(relative / entry.name)
        elif entry.is_dir() and not entry.is_symlink():
            found += others(entry, owns, relative / entry.name)
    return found


def move_entries(entries: list[PurePath], source: Path, dest: Path) -> None:
    """Move `entries` (relative paths) from `source` into the same places in `dest`: all of them, or none if one
    cannot be moved (one of its name already there is refused before anything moves)."""
    if taken := [rel for rel in entries if os.path.lexists(dest / rel)]:
        raise MlalignError(
            f"{source / taken[0]} is not a file this command writes, but it writes one of that name; move yours "
            "elsewhere and rerun"
        )
    moved: list[PurePath] = []
    try:
        for rel in entries:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(source / rel, dest / rel)
            moved.append(rel)
    except BaseException:
        for rel in reversed(moved):
            os.rename(dest / rel, source / rel)
        raise


def _publish(tmp: Path, out: Path, owns: Owns | None) -> None:
    """Put the finished `tmp` in place of `out`; with `owns`, others' entries of `out` are moved into it first, and the
    two folders are then swapped in one step."""
    lock = wait_for_lock(out) if owns is not None else None
    if lock is None:
        replace_dir(tmp, out)
        return
    try:
        kept = others(out, owns)
        move_entries(kept, out, tmp)
        try:
            os.chmod(tmp, stat.S_IMODE(os.fstat(lock).st_mode))
            exchange_dirs(tmp, out)
        except BaseException:
            move_entries(kept, tmp, out)
            raise
    finally:
        os.close(lock)


def _salvage(out: Path, owns: Owns) -> Callable[[Path], None]:
    """What to do with a killed writer's folder before it is removed: move others' entries it had taken from `out`
    (and not yet published) back."""

    def salvage(leftover: Path) -> None:
        root = leftover / out.name if leftover.name.startswith(f".{out.name}.old-") else leftover
        if not root.is_dir():
            return
        entries = [rel for rel in others(root, owns) if not os.path.lexists(out / rel)]
        if entries:
            out.mkdir(exist_ok=True)
            move_entries(entries, root, out)

    return salvage


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
def atomic_dir(out: str | Path, owns: Owns | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; when the block succeeds it replaces `out`, else it is removed.

    With `owns` (whether an entry of `out` is this writer's), the entries of an existing `out` that are not the
    writer's (a ``.git``, a user's file, also inside the writer's own folders) are moved into the new folder, which
    then takes `out`'s place in one step. Temporary folders of a killed earlier writer of `out` are removed first
    (each live writer holds a lock on its own), after moving back what it had taken from `out`.

    When `out` is itself the temporary folder of an enclosing `atomic_dir` (a pipeline stage handing its fresh
    folder to an analysis), the block writes into it in place: the enclosing writer already makes it atomic.
    """
    out = Path(os.path.abspath(out))  # `.` has no name to put beside it
    if out in _STAGING:
        yield out
        return
    if owns is not None:
        out = Path(os.path.realpath(out))  # a link to the folder stays a link; the folder it names is swapped
    out.parent.mkdir(parents=True, exist_ok=True)
    salvage = _salvage(out, owns) if owns is not None else None
    remove_leftovers(out.parent, f".{out.name}.tmp-*", f".{out.name}.old-*", salvage=salvage)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    lock = try_lock(tmp)
    if lock is not None:
        _LOCKS.add(lock)
    _STAGING.add(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _publish(tmp, out, owns)
    finally:
        _STAGING.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            _LOCKS.discard(lock)
            os.close(lock)


_SAFETENSORS_IO = re.compile(r"I/O error: (.+) \(os error (\d+)\)")


@contextmanager
def weights_written(out: Path) -> Iterator[None]:
    """Raise safetensors' failed write of weights into `out` (a full disk: a SafetensorError) as the OSError it is,
    which the CLI reports in one line."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        if (found := _SAFETENSORS_IO.search(str(e))) is None:
            raise
        raise OSError(int(found[2]), found[1], str(out)) from None


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

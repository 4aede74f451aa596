"""Output directories: which may be replaced, one writer at a time, and what a killed writer left behind.

One rule for every command that writes a folder: it may replace `out` only when `out` is absent, an
empty folder, or an earlier output of the same kind (a folder holding that kind's marker files).
Locks are ``flock`` locks: the kernel drops them when their process dies (SIGKILL included), so a
killed writer never blocks the next one, and a temporary file or folder nobody holds is a leftover.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlalign_tasks.errors import MlalignError


def check_replaceable(
    out: Path, flag: str, markers: tuple[str, ...] = (), kind: str = "", fix: str = "choose a new or empty folder"
) -> None:
    """Refuse (one line) unless `out` is absent, an empty folder, or an earlier output holding every marker."""
    if not out.exists() or (out.is_dir() and markers and all((out / name).is_file() for name in markers)):
        return
    if not out.is_dir() or any(out.iterdir()):
        raise MlalignError(
            f"{flag} {out} ({'a folder' if out.is_dir() else 'a file'}) exists and is not empty"
            f"{f' and not {kind}' if kind else ''}; refusing to replace it: {fix}"
        )


def try_lock(path: Path) -> int | None:
    """An open descriptor of `path` (a file or a folder) holding an exclusive lock, or None if another holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold `lock_file`'s lock for the block; while another process holds it, a one-line error names `what`."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock_file.touch()
    fd = try_lock(lock_file)
    if fd is None:
        raise MlalignError(f"{what} is in use by another running process; wait for it to finish or use another folder")
    try:
        yield
    finally:
        os.close(fd)


def remove_leftovers(folder: Path, *patterns: str) -> None:
    """Remove the entries of `folder` matching `patterns` that no live process holds locked (a killed writer's)."""
    for pattern in patterns:
        for path in folder.glob(pattern):
            try:
                fd = try_lock(path)
            except OSError:  # gone meanwhile, or a dangling link
                continue
            if fd is None:
                continue
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)

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
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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


def check_writable(out: Path, flag: str) -> None:
    """Refuse (one line) unless a folder can be made beside `out` (where its new version is written before it
    replaces `out`): a read-only filesystem or a folder without write permission fails here, before any work."""
    where = next(p for p in (out.parent, *out.parent.parents) if p.exists())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=where))
    except OSError as e:
        raise MlalignError(f"{flag} {out}: cannot write in {where} ({e.strerror}); choose a writable folder") from None


def try_lock(path: Path) -> int | None:
    """An open descriptor of `path` (a file or a folder) holding an exclusive lock, or None if another holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def lock_holder(path: Path) -> int | None:
    """The process holding a ``flock`` on `path`, as Linux's /proc/locks names it; None where it cannot say."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for fields in map(str.split, lines):
        # "1: FLOCK  ADVISORY  WRITE 4321 fe:00:2146711 0 EOF"; a waiting process's line has "->" before FLOCK
        if fields[1:2] == ["FLOCK"] and inode in fields[5:]:
            pid = int(fields[4])
            return pid if pid > 0 else None
    return None


def _in_use(path: Path, what: str) -> MlalignError:
    pid = lock_holder(path)
    return MlalignError(
        f"{what} is in use by another running process{f' (pid {pid})' if pid else ''}; wait for it to finish or use "
        "another folder"
    )


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold `lock_file`'s lock for the block; while another process holds it, a one-line error names `what`."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock_file.touch()
    fd = try_lock(lock_file)
    if fd is None:
        raise _in_use(lock_file, what)
    try:
        yield
    finally:
        os.close(fd)


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file or folder open as `fd`."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError:
        return False


def wait_for_lock(folder: Path) -> int | None:
    """A descriptor holding the lock of the folder at `folder` now, once its holder lets go (None if there is no such
    folder): a writer that replaced the folder while this one waited leaves the old one locked, so it locks again."""
    while True:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _names(folder, fd):
            return fd
        os.close(fd)


@contextmanager
def exclusive_folder(folder: Path, what: str) -> Iterator[None]:
    """Hold a lock on `folder` itself for the block (no lock file in it), creating it if absent; while another
    process holds it, a one-line error names `what` and the holder. A folder this call created is removed again
    if the block fails and leaves it empty."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = try_lock(folder)
    if fd is not None and not _names(folder, fd):  # a holder removed it (as below) between our open and lock
        os.close(fd)
        fd = None
    if fd is None:
        raise _in_use(folder, what)
    try:
        yield
    except BaseException:
        if created:
            with suppress(OSError):  # not empty: the block wrote something to keep
                folder.rmdir()
        raise
    finally:
        os.close(fd)


def remove_leftovers(folder: Path, *patterns: str, salvage: Callable[[Path], None] | None = None) -> None:
    """Remove the entries of `folder` matching `patterns` that no live process holds locked (a killed writer's),
    after `salvage(entry)` (under the entry's lock) where given."""
    for pattern in patterns:
        for path in folder.glob(pattern):
            try:
                fd = try_lock(path)
            except OSError:  # gone meanwhile, or a dangling link
                continue
            if fd is None:
                continue
            try:
                if salvage is not None:
                    salvage(path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)

"""Writing an analysis' outputs: all files into a temporary directory, renamed into place at the end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlalign_tasks.files.atomic import atomic_dir
from mlalign_tasks.files.output_dirs import check_replaceable


@contextmanager
def atomic_output_dir(out: str | Path, marker: str) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; on success it replaces `out`, on error it is removed.

    `out` may be new, empty, or an earlier output of the same analysis (it holds `marker`);
    anything else is refused so that no unrelated directory is overwritten.
    """
    check_replaceable(Path(out), "--out", (marker,), f"an earlier {marker} output")
    with atomic_dir(out) as tmp:
        yield tmp


VERSIONED = ("mlalign", "torch", "transformers", "peft")  # the libraries whose versions an analysis records

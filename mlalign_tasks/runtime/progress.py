"""Progress of long steps on stderr: a rich bar (done/total, elapsed, time left) in a terminal, plain lines elsewhere.

A log or a pipe cannot redraw a bar, so there a step prints a line every `PLAIN_EVERY` seconds and one when it
ends. lm-eval reports its requests through tqdm: `lm_eval_bars` shows those as the same bars while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY = 30.0  # seconds between two plain progress lines
console = Console(stderr=True, highlight=False)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class StepProgress:
    """One step's progress: `advance` as work is done, `describe` to rename it; a context manager."""

    def __init__(self, description: str, total: int, unit: str = "items") -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done, self.start, self.last_line = 0, time.monotonic(), time.monotonic()
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=console,
            )
            self.task = self.bar.add_task(description, total=total)

    def __enter__(self) -> StepProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif exc[0] is None:
            self._line(f"in {_clock(time.monotonic() - self.start)}")

    def describe(self, description: str) -> None:
        self.description = description
        if self.bar is not None:
            self.bar.update(self.task, description=description)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.advance(self.task, n)
            return
        now = time.monotonic()
        if now - self.last_line >= PLAIN_EVERY and 0 < self.done < self.total:  # nothing done yet: no estimate
            elapsed = now - self.start
            self._line(f"{_clock(elapsed)} elapsed, about {_clock(elapsed * (self.total / self.done - 1))} left")
            self.last_line = now

    def _line(self, when: str) -> None:
        console.print(f"{self.description}: {self.done}/{self.total} {self.unit}, {when}", soft_wrap=True)


class _LmEvalBar:
    """What lm-eval's HF model uses of tqdm, as a StepProgress for its request loops (other loops: no bar)."""

    SHOWN = {
        "Running loglikelihood requests": "scoring (lm-eval loglikelihood)",
        "Running generate_until requests": "generating (lm-eval generate_until)",
    }

    def __init__(self, iterable=None, total=None, desc=None, disable=False, **_) -> None:
        self.iterable = iterable
        label = None if disable else self.SHOWN.get(desc or "")
        self.step = StepProgress(label, total or 0, "requests").__enter__() if label and total else None

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n: int = 1) -> None:
        if self.step is not None:
            self.step.advance(n)

    def close(self) -> None:
        if self.step is not None:
            self.step.__exit__(None, None, None)
            self.step = None


@contextmanager
def lm_eval_bars() -> Iterator[None]:
    """Show lm-eval's request loops as StepProgress bars and silence its other tqdm bars, for the block."""
    import lm_eval.api.model
    import lm_eval.api.task
    import lm_eval.models.huggingface

    modules = (lm_eval.models.huggingface, lm_eval.api.model, lm_eval.api.task)
    saved = [m.tqdm for m in modules]
    for module in modules:
        module.tqdm = _LmEvalBar
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.tqdm = original

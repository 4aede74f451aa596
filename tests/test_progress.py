"""Progress of long steps: rich bars in a terminal; in a log, a line every PLAIN_EVERY seconds and one at the end."""

from __future__ import annotations

import re

from rich.console import Console

from mlalign_tasks.runtime import progress
from mlalign_tasks.runtime.progress import StepProgress


def test_a_log_gets_plain_lines_with_the_time_left(monkeypatch, capsys):
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    with StepProgress("scoring", 4, "prompts") as step:
        step.advance()
        step.describe("scoring de")
        step.advance(3)
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"scoring: 1/4 prompts, 0:00:\d\d elapsed, about 0:00:\d\d left", lines[0]), lines
    assert re.fullmatch(r"scoring de: 4/4 prompts, in 0:00:\d\d", lines[1]) and len(lines) == 2


def test_no_estimate_before_the_first_item(monkeypatch, capsys):
    """An advance by nothing (a batch of skipped items) before any item is done prints no time left."""
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    with StepProgress("lens", 4, "prompts") as step:
        step.advance(0)
        step.advance(4)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"lens: 4/4 prompts, in 0:00:\d\d", lines[0]), lines


def test_a_terminal_gets_a_bar(monkeypatch, capsys):
    monkeypatch.setattr(progress, "console", Console(stderr=True, force_terminal=True, width=100))
    with StepProgress("fetching", 2, "files") as step:
        step.advance(2)
    err = capsys.readouterr().err
    assert "fetching" in err and "2/2" in err and "files" in err and "━" in err

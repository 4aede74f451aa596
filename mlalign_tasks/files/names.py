"""Names that the user's files or command line give (models, adapters, tasks, metrics) and every output shows on one
line: one holding a control character, a line break or a lone surrogate is refused, never written."""

from __future__ import annotations

import re

from mlalign_tasks.errors import MlalignError

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # controls, line breaks, lone surrogates


def check_name(value: str, what: str) -> str:
    """`value` if it holds no control character, line break or lone surrogate; else an MlalignError naming `what`
    and the character."""
    if bad := _UNPRINTABLE.search(value):
        raise MlalignError(
            f"{what} {value!r} holds the character {bad.group()!r} (a control character, line break or lone "
            "surrogate): rename it without one"
        )
    return value

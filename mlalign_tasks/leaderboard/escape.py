"""Text from results files made inert where the board writes it: Markdown (README.md) and CSV cells.

Model paths, adapter, task and family names, versions and manifest text come from files anyone can
write. Names holding control characters, line separators or lone surrogates are refused (`names.check_name`). In
Markdown they must render as the same literal text in any renderer (GitHub, Python-Markdown / MkDocs, none of which
sanitise raw HTML); in a CSV cell they must not read as a spreadsheet formula nor split a row.
"""

from __future__ import annotations

import functools
import re

# Backslash-escaped: code spans, attribute lists ({: ...}), links and images ([...]), table cells (|), emphasis
# that could open (a `*` before a non-space, a `_` not inside a word); `<`, `>`, `&` become entities.
_INLINE = re.compile(r"[\\`{}\[\]|]|\*(?=\S)|(?<![^\W_])_|_(?![^\W_])")
_LINE_START = re.compile(r"^(?=[#+-])|^(\d+)(?=[.)])")  # headings, list items
_FORMULA_START = ("=", "+", "-", "@", "\t")  # a leading carriage return is escaped first
# In a CSV cell: a newline is quoted by the writer; a carriage return would not be (rows end in "\n"), nor is NUL
_CSV_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@functools.lru_cache(maxsize=1 << 16, typed=True)  # a board's cells repeat the same few thousand texts
def md_text(value: object) -> str:
    """`value` as literal text inside one Markdown line (a table cell, after a heading's or list item's marker)."""
    text = " ".join(str(value).split())  # a newline would end a table row or a list item
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _INLINE.sub(lambda m: "\\" + m.group(), text)


def md_block(value: object) -> str:
    """`value` as a literal block of text (a paragraph, a heading's or a list item's content): `md_text`, and a
    leading `#`, `-`, `+` or `1.` does not start a heading or a list."""
    return _LINE_START.sub(lambda m: (m.group(1) or "") + "\\", md_text(value), count=1)


def md_code_block(text: str, info: str = "") -> str:
    """A fenced code block holding `text` verbatim: the fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def md_code_span(text: str) -> str:
    """`text` as an inline code span: delimited by more backticks than any run inside it, on one line."""
    text = " ".join(text.split())
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def csv_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula gets a leading `'` (OWASP), control characters other
    than tab and newline are written as `\\xNN`; numbers stay numbers."""
    if not isinstance(value, str):
        return value
    if _CSV_CONTROL.search(value):
        value = _CSV_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return "'" + value if value.startswith(_FORMULA_START) else value

"""Numeric answer extraction for MGSM / MSVAMP generations (QAlign's rule, made script-aware).

QAlign scores a generation by its *last number*, compared with the gold number with tolerance 1e-3.
This module keeps that rule and makes the number reading robust to how models write numbers:

* digits of every script (Bengali, Devanagari, Thai, Arabic-Indic, full-width, ...) are read through
  ``unicodedata.decimal``, so no digit tables; other full-width forms (``．－＄``) are NFKC-normalised;
* thousands separators ``1,234`` / ``1.234.567`` / ``1 234`` (no-break or thin space) / ``1'234``;
  a single ``,`` or ``.`` followed by exactly three digits (and a first group 1-999) is a thousands
  separator (``2,125``, German ``80.000``); otherwise it is a decimal mark (``2.5``, ``12,5``, ``0.125``);
  both marks together: the last one is the decimal mark (``1,234.5``, ``1.234,5``);
* a minus sign (``-``, ``−``, ``－``) directly before the number (currency sign allowed between,
  ``-$5``) and not after a digit, Latin letter or closing bracket (so ``5-3`` is a subtraction);
* currency signs, units, percent signs and native sentence ends (``。``, ``।``, ``です``) around the
  number are ignored, so a trailing "The answer is N" in any language yields N.

Differences from QAlign's ``extract_last_num``: a generation without any number scores as wrong
(QAlign reads it as 0.0, which would match a gold 0), negatives keep their sign, and ``12,5`` is
12.5 rather than 125. Plain ASCII spaces never join digit groups (``1 000`` reads as two numbers);
number words (``eleven``, ``十一``) are not read. `qalign_last_number` is QAlign's rule itself, for the
QAlign protocol's second metric.
"""

from __future__ import annotations

import math
import re
import unicodedata

TOLERANCE = 1e-3

_GROUP_SPACES = "\u00a0\u202f\u2009"  # no-break, narrow no-break, thin space
_SEPARATORS = ",.'’" + _GROUP_SPACES
_NUMBER = re.compile(rf"[0-9]+(?:[{re.escape(_SEPARATORS)}][0-9]+)*")
_MINUS = "-\u2212"
_SEP_SPLIT = re.compile(rf"[{re.escape(_SEPARATORS)}]")


def normalize_digits(text: str) -> str:
    """Map decimal digits of every script to ASCII and NFKC-normalise full-width forms."""
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        digit = unicodedata.decimal(ch, None)
        if digit is not None:
            out.append(str(digit))
        elif "\uff01" <= ch <= "\uff5e":  # full-width ASCII variants
            out.append(unicodedata.normalize("NFKC", ch))
        else:
            out.append(ch)
    return "".join(out)


def _is_thousands(groups: list[str]) -> bool:
    """True if `groups` (split at one separator kind) read as d{1,3}(sep ddd)+ with no leading zero."""
    return (
        1 <= len(groups[0]) <= 3
        and not (groups[0].startswith("0") and len(groups) == 2)
        and all(len(g) == 3 for g in groups[1:])
    )


def _parse_span(span: str) -> list[float]:
    """Read one digit run with separators as one number, or as several if it is not a valid number."""
    seps = _SEP_SPLIT.findall(span)
    groups = _SEP_SPLIT.split(span)
    if not seps:
        return [float(span)]
    kinds = list(dict.fromkeys(seps))
    if len(kinds) == 1:
        kind = kinds[0]
        if _is_thousands(groups):
            return [float("".join(groups))]
        if len(seps) == 1 and kind in ",.":
            return [float(f"{groups[0]}.{groups[1]}")]
    elif (
        len(kinds) == 2
        and kinds[1] in ",."
        and seps[-1] == kinds[1]
        and seps.count(kinds[1]) == 1
        and _is_thousands(groups[:-1])
    ):
        # grouped integer part with one decimal mark of the other kind: 1,234.5 / 1.234,5 / 1 234,5
        return [float("".join(groups[:-1]) + "." + groups[-1])]
    # not a well-formed number (a list "5,6,7", a date "12.03.2024"): its groups are separate numbers
    return [float(g) for g in groups]


def _is_negative(text: str, start: int) -> bool:
    """True if the number starting at `start` carries a unary minus sign."""
    i = start - 1
    while i >= 0 and unicodedata.category(text[i]) == "Sc":
        i -= 1
    if i < 0 or text[i] not in _MINUS:
        return False
    before = text[i - 1] if i > 0 else " "
    # after a digit, a closing bracket or a Latin letter (a variable) it is a subtraction or a range;
    # after CJK text ("答案是-4") or punctuation it is a sign
    return not (before.isdigit() or before in ")]}" or (before.isascii() and before.isalpha()))


def find_numbers(text: str) -> list[float]:
    """All numbers in `text`, in order."""
    text = normalize_digits(text)
    numbers = []
    for m in _NUMBER.finditer(text):
        values = _parse_span(m.group())
        if _is_negative(text, m.start()):
            values[0] = -values[0]
        numbers.extend(values)
    return numbers


def extract_answer(text: str) -> float | None:
    """The last number of a generation (QAlign's rule), or None if it has none."""
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


_QALIGN_COMMA = re.compile(r"(\d),(\d)")
_QALIGN_NUMBER = re.compile(r"(\d+(\.\d+)?)")


def qalign_last_number(text: str) -> float:
    """QAlign's ``extract_last_num``, exactly: commas between two digits removed (one left-to-right pass, so
    ``1,2,3`` becomes ``12,3``), then the last match of ``\\d+(\\.\\d+)?`` read with ``float`` (Python's ``\\d``
    and ``float`` take any script's decimal digits); no sign; 0.0 when the text has no number."""
    found = _QALIGN_NUMBER.findall(_QALIGN_COMMA.sub(r"\g<1>\g<2>", text))
    return float(found[-1][0]) if found else 0.0


def parse_gold(answer: str | float | int) -> float:
    """The gold number of a dataset row (e.g. '2,125', '8.0', 18)."""
    if isinstance(answer, (int, float)):
        return float(answer)
    numbers = find_numbers(str(answer))
    if len(numbers) != 1:
        raise ValueError(f"gold answer {answer!r} is not a single number")
    return numbers[0]


def is_correct(prediction: float | None, gold: float) -> bool:
    """QAlign's comparison: |prediction - gold| < 1e-3; no prediction is wrong."""
    return prediction is not None and abs(prediction - gold) < TOLERANCE


def format_number(value: float | None) -> str:
    """A compact string that float() reads back: '18', '2.5', 'inf' (a huge digit run), '' for None."""
    if value is None:
        return ""
    return str(int(value)) if math.isfinite(value) and value == int(value) else repr(value)

"""Answer extraction on tricky generations: separators, signs, currencies, scripts, answer sentences."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from mlalign_tasks.tasks.answer_extraction import extract_answer, find_numbers, format_number, is_correct, parse_gold

CASES = [
    # QAlign's basic rule: the last number wins
    ("She has 5 apples and buys 6 more, so 5 + 6 = 11.", 11),
    ("Step 1: 16 - 3 - 4 = 9. Step 2: 9 * 2 = 18", 18),
    ("no digits at all", None),
    ("", None),
    # thousands separators
    ("The answer is 1,234.", 1234),
    ("Total: 1,234,567 people", 1234567),
    ("He pays $70,000 in total.", 70000),
    ("Die Antwort ist 80.000 US-Dollar.", 80000),
    ("Insgesamt 1.234.567 Euro", 1234567),
    ("Le total est 1\u202f234 euros.", 1234),
    ("Итого 12\u00a0500 рублей.", 12500),
    ("Das kostet 1'250 Franken.", 1250),
    ("1,000.50 dollars", 1000.5),
    ("La respuesta es 1.234,56 €.", 1234.56),
    # decimals
    ("It costs $2.50.", 2.5),
    ("Die Antwort ist 12,5 %.", 12.5),
    ("0.125 of the cake", 0.125),
    ("about 0,75 Liter", 0.75),
    ("3.14159", 3.14159),
    ("The answer is 11.5.", 11.5),
    # negatives vs subtraction and ranges
    ("The temperature is -5 degrees.", -5),
    ("x = -3", -3),
    ("So the change is −7.", -7),
    ("He lost -$20 that day", -20),
    ("10-4=6", 6),
    ("between 10-20", 20),
    ("(−2.5)", -2.5),
    ("5 - 3 = 2", 2),
    # currency signs and units around the number
    ("The answer is $18.", 18),
    ("Ответ: 18 ₽.", 18),
    ("合計は¥1,500です。", 1500),
    ("Jumla ni TSh 3,000.", 3000),
    ("It weighs 5 kg, i.e. 5000 g.", 5000),
    ("The area is 5 m².", 5),
    # native digits of many scripts and full-width forms
    ("উত্তর হল ১১।", 11),
    ("उत्तर है १,२३४।", 1234),
    ("คำตอบคือ ๑๘", 18),
    ("الجواب هو ١٢٣.", 123),
    ("جواب ۴۵ است", 45),
    ("సమాధానం ౧౮.", 18),
    ("答えは１８です。", 18),
    ("全角で１２，３４５．５円", 12345.5),
    ("答案是－４。", -4),
    # a trailing "The answer is N" in many languages, after other numbers
    ("5 + 6 = 11. The answer is 11.", 11),
    ("5 + 6 = 11. Die Antwort ist 11.", 11),
    ("5 + 6 = 11. La réponse est 11.", 11),
    ("5 + 6 = 11. La respuesta es 11.", 11),
    ("5 + 6 = 11. Ответ — 11.", 11),
    ("5 + 6 = 11. Jibu ni 11.", 11),
    ("5+6=11。答えは11です。", 11),
    ("5 + 6 = 11。答案是 11。", 11),
    ("5 + 6 = 11 คำตอบคือ 11", 11),
    ("৫ + ৬ = ১১। উত্তর হল ১১টি।", 11),
    # not numbers, or several numbers glued by separators
    ("lists 5,6,7", 7),
    ("on 12.03.2024", 2024),
    ("version 1.2.3", 3),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_extract_answer(text: str, expected: float | None) -> None:
    got = extract_answer(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-9)


def test_table_is_large() -> None:
    assert len(CASES) >= 40


def _zero_digits() -> list[str]:
    """The zero digit of every script that has decimal digits (from unicodedata, all planes)."""
    return [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.decimal(chr(c), None) == 0]


def test_digits_of_every_script() -> None:
    zeros = _zero_digits()
    assert len(zeros) > 50  # Bengali, Devanagari, Thai, Arabic-Indic, full-width, Myanmar, ...
    for zero in zeros:
        digits = "".join(chr(ord(zero) + d) for d in (2, 0, 2, 5))
        assert extract_answer(f"answer: {digits}.") == 2025, (hex(ord(zero)), digits)


def test_find_numbers_keeps_order_and_signs() -> None:
    assert find_numbers("from -3 to 4, then 1,500.25 and ٧") == [-3, 4, 1500.25, 7]


@pytest.mark.parametrize(
    ("gold", "value"), [("18", 18), ("2,125", 2125), ("276,000", 276000), ("8.0", 8), (5, 5), (2.5, 2.5)]
)
def test_parse_gold(gold: str | float, value: float) -> None:
    assert parse_gold(gold) == value


@pytest.mark.parametrize("gold", ["", "n/a", "3 or 4"])
def test_parse_gold_rejects_non_numbers(gold: str) -> None:
    with pytest.raises(ValueError, match="not a single number"):
        parse_gold(gold)


def test_tolerance_is_qaligns() -> None:
    assert is_correct(18.0, 18)
    assert is_correct(18.0009, 18)
    assert not is_correct(18.002, 18)
    assert not is_correct(None, 0)  # QAlign read "no number" as 0.0; we score it as wrong


@pytest.mark.parametrize(
    ("value", "text"), [(18.0, "18"), (-4.0, "-4"), (2.5, "2.5"), (None, ""), (float("inf"), "inf")]
)
def test_format_number_round_trips(value: float | None, text: str) -> None:
    assert format_number(value) == text
    if value is not None:
        assert float(text) == value


def test_degenerate_digit_run_scores_as_wrong() -> None:
    """A model that repeats a digit 400 times gives a number beyond float range: scored, not a crash."""
    from mlalign_tasks.tasks.math_tasks import extract_filter, process_results

    text = "The answer is " + "1" * 400
    assert extract_answer(text) == float("inf")
    assert extract_filter([[text]], [{}]) == [["inf"]]
    assert process_results({"answer": "18"}, ["inf"]) == {"exact_match": 0.0}

"""Paired significance (exact McNemar), Wilson intervals, multiple-comparison corrections and cross-lingual
consistency.

Why McNemar's exact test rather than a paired bootstrap: every metric on these boards (accuracy,
exact match) is a 0/1 outcome per item and both models answer the same items, so the whole paired
information is the 2x2 table of (base right/wrong) x (aligned right/wrong). The exact test on its
discordant cells is valid at any sample size (boards built with `--limit` have few items), is
deterministic (a board regenerates to the same p-values, no resampling seed) and costs O(n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlalign_tasks.leaderboard.load import Sample
from mlalign_tasks.leaderboard.options import Correction

SIGNIFICANCE = 0.05  # the level at which boards mark a delta as significant
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals


@dataclass(frozen=True)
class PairedTest:
    """McNemar table of items scored by both models, and the exact two-sided p-value."""

    n: int
    both_right: int
    only_base: int
    only_aligned: int
    both_wrong: int
    p_value: float


@dataclass(frozen=True)
class Consistency:
    """Agreement of a model's answers in language X with its answers on the same items in English."""

    n: int
    same_answer: float
    both_correct: float


def mcnemar_exact(only_base: int, only_aligned: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts; 1.0 if there are none.

    It is the two-sided binomial test of min(b, c) successes in b + c trials at p = 1/2 (what
    `scipy.stats.binomtest(c, b + c).pvalue` gives); Binomial(n, 1/2) is symmetric, so the p-value is
    2 * P(X <= min(b, c)), capped at 1, computed here in exact integer arithmetic (fast, no rounding).
    """
    n, k = only_base + only_aligned, min(only_base, only_aligned)
    if n == 0 or 2 * k == n:
        return 1.0
    tail = sum(math.comb(n, j) for j in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def _binary(score: float | None) -> bool | None:
    return None if score not in (0.0, 1.0) else score == 1.0


def paired_test(base: dict[int, Sample], aligned: dict[int, Sample]) -> PairedTest | None:
    """Paired test on the items both models were scored on; None if none or a score is not 0/1."""
    cells = [0, 0, 0, 0]  # both right, only base, both wrong, only aligned
    for doc_id in base.keys() & aligned.keys():
        b, a = _binary(base[doc_id].score), _binary(aligned[doc_id].score)
        if b is None or a is None:
            return None
        cells[(0 if b else 2) + (0 if a == b else 1)] += 1
    both_right, only_base, both_wrong, only_aligned = cells
    n = sum(cells)
    if n == 0:
        return None
    return PairedTest(n, both_right, only_base, only_aligned, both_wrong, mcnemar_exact(only_base, only_aligned))


def consistency(lang: dict[int, Sample], english: dict[int, Sample]) -> Consistency | None:
    """Share of items answered the same in X and English (no answer never agrees) and share right in both."""
    common = lang.keys() & english.keys()
    if not common:
        return None
    same = sum(1 for i in common if lang[i].answer is not None and lang[i].answer == english[i].answer)
    right = sum(1 for i in common if lang[i].score == 1.0 and english[i].score == 1.0)
    return Consistency(len(common), same / len(common), right / len(common))


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion with `k` successes in `n` trials (95% by default)."""
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_row(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """The Wilson interval of a board row whose value is a share of its `n` items (value * n whole), else Nones."""
    n, value = row["n"], row["value"]
    if not n:
        return None, None
    k = round(value * n)
    return wilson(k, n) if abs(value * n - k) < 1e-6 else (None, None)


def adjust(p_values: list[float | None], correction: Correction) -> list[float | None]:
    """p-values adjusted for multiple comparisons (Holm step-down or Benjamini-Hochberg step-up) over the given
    family of tests; None stays None (no test), and with no correction every value is None."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    m = len(tested)
    if correction is Correction.none or not m:
        return out
    if correction is Correction.holm:
        running = 0.0
        for rank, (p, i) in enumerate(tested):
            running = max(running, min(1.0, (m - rank) * p))
            out[i] = running
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):
            p, i = tested[rank]
            running = min(running, m * p / (rank + 1))
            out[i] = running
    return out

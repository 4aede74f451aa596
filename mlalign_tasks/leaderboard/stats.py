"""Paired significance (exact McNemar), Wilson intervals, multiple-comparison corrections and cross-lingual
consistency.

Why McNemar's exact test rather than a paired bootstrap: every metric on these boards (accuracy,
exact match) is a 0/1 outcome per item and both models answer the same items, so the whole paired
information is the 2x2 table of (base right/wrong) x (aligned right/wrong). The exact test on its
discordant cells is valid at any sample size (boards built with `--limit` have few items), is
deterministic (a board regenerates to the same p-values, no resampling seed) and costs O(n).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlalign_tasks.leaderboard.items import NO_ANSWER, Items
from mlalign_tasks.leaderboard.options import Correction

SIGNIFICANCE = 0.05  # the level at which boards mark a delta as significant
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals


def significant(c: dict[str, Any]) -> bool:
    """Whether a comparison's (adjusted, when a correction is chosen) p-value is below the significance level."""
    p = c["p_adjusted"] if c.get("p_adjusted") is not None else c["p_value"]
    return p is not None and p < SIGNIFICANCE


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


@functools.cache
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


def common_items(x: Items, y: Items) -> tuple[Any, Any]:
    """Indices into `x` and into `y` of the items both have (both sorted by key)."""
    if x.keys.tobytes() == y.keys.tobytes():  # logs of the same items: one memcmp
        return slice(None), slice(None)
    _, ix, iy = np.intersect1d(x.keys, y.keys, assume_unique=True, return_indices=True)
    return ix, iy


def _common_columns(pairs: list[tuple[Items, Items]], fields: tuple[str, ...]) -> tuple[list[Any], Any, Any]:
    """Each field's two columns (first's, second's) on the items both of a pair have, over all pairs end to end;
    the number of such items per pair, and each concatenated item's pair."""
    index = [Items._fields.index(name) for name in fields]
    columns: list[tuple[list[Any], list[Any]]] = [([], []) for _ in fields]
    sizes = []
    for x, y in pairs:
        ix, iy = common_items(x, y)
        for (xs, ys), i in zip(columns, index, strict=True):
            xs.append(x[i][ix])
            ys.append(y[i][iy])
        sizes.append(xs[-1].size)
    joined = [(np.concatenate(xs), np.concatenate(ys)) for xs, ys in columns] if pairs else []
    sizes_array = np.array(sizes, dtype=np.int64)
    return joined, sizes_array, np.repeat(np.arange(len(pairs)), sizes_array)


def paired_tests(pairs: list[tuple[Items, Items]]) -> list[PairedTest | None]:
    """`paired_test` of many (base, aligned) pairs at once."""
    if not pairs:
        return []
    ((b, a),), sizes, pair = _common_columns(pairs, ("scores",))

    def count(mask: Any) -> list[int]:
        return np.bincount(pair[mask], minlength=len(pairs)).tolist()

    not_binary = count(((b != 0) & (b != 1)) | ((a != 0) & (a != 1)))
    b, a = b == 1, a == 1
    both_right, only_base, only_aligned = count(b & a), count(b & ~a), count(a & ~b)
    out: list[PairedTest | None] = []
    for i, n in enumerate(sizes.tolist()):
        if n == 0 or not_binary[i]:
            out.append(None)
            continue
        both_wrong = n - both_right[i] - only_base[i] - only_aligned[i]
        p = mcnemar_exact(only_base[i], only_aligned[i])
        out.append(PairedTest(n, both_right[i], only_base[i], only_aligned[i], both_wrong, p))
    return out


def paired_test(base: Items, aligned: Items) -> PairedTest | None:
    """Paired test on the items both models were scored on; None if none or a score is not 0/1."""
    return paired_tests([(base, aligned)])[0]


def consistencies(pairs: list[tuple[Items, Items]]) -> list[Consistency | None]:
    """`consistency` of many (language X, English) pairs at once."""
    if not pairs:
        return []
    ((lang, english), (lang_score, english_score)), sizes, pair = _common_columns(pairs, ("answers", "scores"))
    same = np.bincount(pair[(lang == english) & (lang != NO_ANSWER)], minlength=len(pairs)).tolist()
    right = np.bincount(pair[(lang_score == 1.0) & (english_score == 1.0)], minlength=len(pairs)).tolist()
    return [Consistency(n, same[i] / n, right[i] / n) if n else None for i, n in enumerate(sizes.tolist())]


def consistency(lang: Items, english: Items) -> Consistency | None:
    """Share of items answered the same in X and English (no answer never agrees) and share right in both."""
    return consistencies([(lang, english)])[0]


@functools.cache
def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion with `k` successes in `n` trials (95% by default)."""
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_interval(value: float, n: int | None) -> tuple[float | None, float | None]:
    """The Wilson interval of a score that is a share of its `n` items (value * n whole), else Nones."""
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

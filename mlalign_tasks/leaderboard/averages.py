"""Averages over languages (English / seen / unseen / all non-English) per model and per base -> aligned pair, and
the paired bootstrap interval of each pair's Δ.

Per model: over all its own cells, split by its own training languages. Per pair: both models over the
(family, language) cells both have, split by the aligned model's languages, so that their Δ compares the same
tasks. A split's value per family is the mean over its languages; over all families, the mean of the family
means. The interval of a Δ resamples items with replacement, paired (the same items for both models) and
jointly over a family's languages (their test sets are parallel: item i of every language is one item), each
family independently; the 2.5 and 97.5 percentiles of the resampled Δ, seeded (`BoardOptions.seed`).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from mlalign_tasks.leaderboard.board import Board, Model, Samples
from mlalign_tasks.leaderboard.options import Correction
from mlalign_tasks.leaderboard.stats import common_items

SPLITS = ("english", "seen", "unseen", "non_english")
ALL_FAMILIES = "all"
AVERAGE_FIELDS = ("model", "base", "aligned", "family", "split", "value", "n")  # base/aligned: the pair, if any
DELTA_FIELDS = ("base", "aligned", "family", "split", "delta_pp", "ci_low_pp", "ci_high_pp", "resamples")
Cell = tuple[str, str]  # (family, language)


def averages(
    board: Board, primary: dict[tuple[str, str, str], float], samples: Samples
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(average rows, the pairs' Δ rows with intervals, notes)."""
    cells: dict[str, set[Cell]] = {m.key: set() for m in board.models}
    for key, family, lang in primary:
        cells[key].add((family, lang))
    out: list[dict[str, Any]] = []
    for model in board.models:
        out += _split_means(board, primary, model, model, _by_family(board, cells[model.key]), (None, None))
    deltas: list[tuple[dict[str, Any], Any]] = []
    notes: list[str] = []
    pairs = board.pairs()
    commons = {aligned.key: cells[base.key] & cells[aligned.key] for base, aligned in pairs}
    by_family = {key: _by_family(board, common) for key, common in commons.items()}
    replicates = _replicates(board, pairs, by_family, samples)
    for base, aligned in pairs:
        common = commons[aligned.key]
        means = {}
        for model in (base, aligned):
            rows = _split_means(board, primary, model, aligned, by_family[aligned.key], (base.name, aligned.name))
            means[model.key] = {(r["family"], r["split"]): r["value"] for r in rows}
            out += rows
        deltas += _pair_deltas(board, base, aligned, by_family[aligned.key], means, replicates)
        notes += _left_out(board, base, aligned, cells, common)
    return out, _intervals(deltas, board.options.bootstrap), notes


def _left_out(board: Board, base: Model, aligned: Model, cells: dict[str, set[Cell]], common: set[Cell]) -> list[str]:
    only = [(m.name, cells[m.key] - common) for m in (base, aligned)]
    left = sum(len(c) for _, c in only)
    listed = "; ".join(f"only {name} has {_cell_list(board, c)}" for name, c in only if c)
    if not common:
        return [f"{aligned.name} vs {base.name}: no (family, language) cell evaluated by both: no averages ({listed})"]
    if not left:
        return []
    return [
        f"{aligned.name} vs {base.name}: averages over the {_cells(len(common), '(family, language) ')} both "
        f"evaluated; {_cells(left)} only one of them has {'is' if left == 1 else 'are'} left out ({listed})"
    ]


def _cells(n: int, kind: str = "") -> str:
    return f"{n} {kind}cell{'' if n == 1 else 's'}"


def _cell_list(board: Board, cells: set[Cell]) -> str:
    """`snli_aligned: de, fr; mgsm_aligned: sw` in board order, at most 8 languages named per family."""
    parts = []
    for family in board.families:
        langs = [lang for lang in board.languages if (family, lang) in cells]
        if langs:
            more = f", … (+{len(langs) - 8})" if len(langs) > 8 else ""
            parts.append(f"{family}: {', '.join(langs[:8])}{more}")
    return "; ".join(parts)


def _by_family(board: Board, cells: set[Cell]) -> dict[str, list[str]]:
    """Family -> its languages among `cells`, in the board's order."""
    order = {lang: i for i, lang in enumerate(board.languages)}
    out: dict[str, list[str]] = {}
    for family, lang in sorted(cells, key=lambda cell: order[cell[1]]):
        out.setdefault(family, []).append(lang)
    return out


def _buckets(splitter: Model, langs: list[str]) -> dict[str, list[str]]:
    """`langs` per split (of `splitter`'s training languages)."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for lang in langs:
        split = splitter.split(lang)
        if split in out:
            out[split].append(lang)
        if lang != "en":
            out["non_english"].append(lang)
    return out


def _split_means(
    board: Board,
    primary: dict[tuple[str, str, str], float],
    model: Model,
    splitter: Model,
    cells: dict[str, list[str]],
    pair: tuple[str | None, str | None],
) -> list[dict[str, Any]]:
    """Average rows of `model` over `cells` (`_by_family`), with the seen/unseen split of `splitter`."""
    out: list[dict[str, Any]] = []
    per_split: dict[str, list[float]] = {s: [] for s in SPLITS}
    for family in board.families:
        for split, langs in _buckets(splitter, cells.get(family, [])).items():
            if langs:
                per_split[split].append(_mean([primary[(model.key, family, lang)] for lang in langs]))
                out.append(_avg_row(model, pair, family, split, per_split[split][-1], len(langs)))
    for split, values in per_split.items():
        if values:
            out.append(_avg_row(model, pair, ALL_FAMILIES, split, _mean(values), len(values)))
    return out


def _mean(values: list[float]) -> float:
    """`statistics.fmean` (an exactly rounded sum over the count) of a list, without its generator wrapper."""
    return math.fsum(values) / len(values)


def _avg_row(
    model: Model, pair: tuple[str | None, str | None], family: str, split: str, value: float, n: int
) -> dict[str, Any]:
    values = (model.name, *pair, family, split, value, n)
    return dict(zip(AVERAGE_FIELDS, values, strict=True))


def _pair_deltas(
    board: Board,
    base: Model,
    aligned: Model,
    common: dict[str, list[str]],
    means: dict[str, dict[tuple[str, str], float]],
    replicates: dict[tuple[str, str], tuple[Any, dict[str, int]]],
) -> list[tuple[dict[str, Any], Any]]:
    """Δ (pp) of each of the pair's averages, and the B resampled Δ of its paired bootstrap (None where a cell has
    no samples)."""
    resampled: dict[tuple[str, str], Any] = {}  # (family, split) -> the B resampled Δ of that average
    per_split: dict[str, list[Any]] = {s: [] for s in SPLITS}
    for family in board.families:
        drawn = replicates.get((aligned.key, family))
        buckets = [(split, members) for split, members in _buckets(aligned, common.get(family, [])).items() if members]
        if drawn is not None and buckets:  # each split's mean over its languages, for all B resamples at once
            block, column = drawn
            weights = np.zeros((block.shape[1], len(buckets)))
            for k, (_, members) in enumerate(buckets):
                weights[[column[lang] for lang in members], k] = 1 / len(members)
            if np.isnan(block).any():  # a resample without an item of some language: NaN in its splits only
                split_means = np.column_stack([block[:, weights[:, k] > 0].mean(axis=1) for k in range(len(buckets))])
            else:
                split_means = block @ weights
        for k, (split, _) in enumerate(buckets):
            value = None if drawn is None else split_means[:, k]
            resampled[(family, split)] = value
            per_split[split].append(value)
    for split, values in per_split.items():
        if values:
            resampled[(ALL_FAMILIES, split)] = None if any(v is None for v in values) else sum(values) / len(values)
    out = []
    for (family, split), draws in resampled.items():
        delta = (means[aligned.key][(family, split)] - means[base.key][(family, split)]) * 100
        values = (base.name, aligned.name, family, split, delta, None, None, None)
        out.append((dict(zip(DELTA_FIELDS, values, strict=True)), draws))
    return out


_WEIGHTS: dict[tuple[int, int, str, int], Any] = {}  # (seed, resamples, family, items) -> resample counts


def _weights(board: Board, family: str, items: int):
    """B x items matrix: how often each item is drawn in each of the B resamples (seeded per family)."""
    key = (board.options.seed, board.options.bootstrap, family, items)
    if key not in _WEIGHTS:
        b = board.options.bootstrap
        rng = np.random.default_rng([board.options.seed, zlib.crc32(family.encode())])
        draws = rng.integers(0, items, size=(b, items)) + np.arange(b)[:, None] * items
        _WEIGHTS[key] = np.bincount(draws.ravel(), minlength=b * items).reshape(b, items).astype(float)
    return _WEIGHTS[key]


def _replicates(
    board: Board, pairs: list[tuple[Model, Model]], commons: dict[str, dict[str, list[str]]], samples: Samples
) -> dict[tuple[str, str], tuple[Any, dict[str, int]]]:
    """(aligned model, family) -> (B x languages: the resampled mean differences (aligned − base, pp), the column of
    each language), the items
    resampled jointly over the family's languages; absent when resampling is off or a language lacks per-item scores.
    A family's pairs with as many items share their resamples: one matrix product for all of them."""
    out: dict[tuple[str, str], tuple[Any, dict[str, int]]] = {}
    if not board.options.bootstrap:
        return out
    for family in board.families:
        groups: dict[int, list[tuple[str, list[str], Any, Any]]] = {}  # items -> (aligned, langs, diffs, present)
        for base, aligned in pairs:
            langs = commons[aligned.key].get(family, [])
            table = _item_table(base, aligned, family, langs, samples) if langs else None
            if table is not None:
                groups.setdefault(len(table[0]), []).append((aligned.key, langs, *table))
        scale = 1 / (1 - board.chance[family]) if board.options.chance_normalised and family in board.chance else 1.0
        for items, group in groups.items():
            weights = _weights(board, family, items)
            diffs, present = np.hstack([g[2] for g in group]), np.hstack([g[3] for g in group])
            with np.errstate(invalid="ignore", divide="ignore"):  # each resample draws `items` items
                drawn = weights @ present if not present.all() else items
                means = (weights @ diffs) / drawn * 100 * scale
            column = 0
            for key, langs, *_ in group:
                out[(key, family)] = (means[:, column : column + len(langs)], {lang: j for j, lang in enumerate(langs)})
                column += len(langs)
    return out


def _item_table(base: Model, aligned: Model, family: str, langs: list[str], samples: Samples):
    """(items x languages score differences aligned − base, items x languages 1 where scored), the items of all
    `langs` sorted; None when a language lacks per-item scores."""
    pairs = []
    for lang in langs:
        b, a = samples.get((base.key, family, lang)), samples.get((aligned.key, family, lang))
        if b is None or a is None:
            return None
        ib, ia = common_items(b, a)
        keys, diffs = b.keys[ib], a.scores[ia] - b.scores[ib]
        scored = ~np.isnan(diffs)
        if not scored.all():
            if not scored.any():
                return None
            keys, diffs = keys[scored], diffs[scored]
        pairs.append((keys, diffs))
    first = pairs[0][0].tobytes()
    if all(keys.tobytes() == first for keys, _ in pairs[1:]):  # parallel test sets, every item scored
        diffs = np.column_stack([d for _, d in pairs])
        return diffs, np.ones_like(diffs)
    universe = np.unique(np.concatenate([keys for keys, _ in pairs]))
    diffs = np.zeros((universe.size, len(langs)))
    present = np.zeros_like(diffs)
    for j, (keys, d) in enumerate(pairs):
        rows = np.searchsorted(universe, keys)
        diffs[rows, j], present[rows, j] = d, 1.0
    return diffs, present


def _intervals(deltas: list[tuple[dict[str, Any], Any]], resamples: int) -> list[dict[str, Any]]:
    """The Δ rows with the 2.5 and 97.5 percentiles of their resampled Δ (ci_low_pp, ci_high_pp)."""
    drawn = [i for i, (_, draws) in enumerate(deltas) if draws is not None]
    if drawn:
        bounds = percentiles(np.vstack([deltas[i][1] for i in drawn]), (2.5, 97.5))
        for i, (low, high) in zip(drawn, bounds.tolist(), strict=True):
            if not math.isnan(low):
                deltas[i][0].update(ci_low_pp=low, ci_high_pp=high, resamples=resamples)
    return [row for row, _ in deltas]


def percentiles(draws: Any, qs: tuple[float, ...]) -> Any:
    """Per row of `draws`, the percentiles `qs` of its finite values (linear interpolation, as `np.percentile`);
    NaN for a row with under 99% of its values finite (resamples lacking every item of some language: too few items
    to resample)."""
    out = np.full((draws.shape[0], len(qs)), np.nan)
    finite = np.isfinite(draws)
    whole = finite.all(axis=1)
    if whole.any():  # the common case: one partition of every row around the same ranks
        rows = draws[whole]
        positions = [q / 100 * (draws.shape[1] - 1) for q in qs]
        ranks = sorted({r for p in positions for r in (math.floor(p), min(math.floor(p) + 1, draws.shape[1] - 1))})
        parted = np.partition(rows, ranks, axis=1)
        for j, p in enumerate(positions):
            low, high = parted[:, math.floor(p)], parted[:, min(math.floor(p) + 1, draws.shape[1] - 1)]
            out[whole, j] = low + (high - low) * (p - math.floor(p))
    for i in np.flatnonzero(~whole & (finite.sum(axis=1) >= 0.99 * draws.shape[1])):
        out[i] = np.percentile(draws[i][finite[i]], qs)
    return out


def statistics_notes(board: Board) -> list[str]:
    """What the board's statistics are, where the options change them."""
    notes = []
    if board.options.correction is not Correction.none:
        name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[board.options.correction.value]
        notes.append(
            f"p-values are {name}-adjusted across the languages of each pair and task family (p_adjusted; * marks "
            f"adjusted p < 0.05)"
        )
    if board.options.chance_normalised:
        listed = ", ".join(f"{f} {c:.3g}" for f, c in board.chance.items())
        notes.append(
            "classification scores are chance-normalised, (score − chance) / (1 − chance), in the tables, averages "
            f"and deltas (chance: {listed}); results.csv keeps lm-eval's values"
        )
    if board.spread:
        notes.append(
            "cells evaluated with several seeds show the mean ± sd over the runs; their paired test and consistency "
            "are left out (the bootstrap of the averages uses each item's mean score)"
        )
    if not board.options.bootstrap:
        notes.append("no bootstrap intervals for the averages' deltas (--bootstrap 0)")
    return notes

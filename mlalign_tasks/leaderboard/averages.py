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

import statistics
import zlib
from typing import TYPE_CHECKING, Any

from mlalign_tasks.leaderboard.options import Correction

if TYPE_CHECKING:
    from mlalign_tasks.leaderboard.build import Board, Model, Samples

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
        out += _split_means(board, primary, model, model, cells[model.key], (None, None))
    deltas: list[dict[str, Any]] = []
    notes: list[str] = []
    pairs = board.pairs()
    commons = {aligned.key: cells[base.key] & cells[aligned.key] for base, aligned in pairs}
    replicates = _replicates(board, pairs, commons, samples)
    for base, aligned in pairs:
        common = commons[aligned.key]
        means = {}
        for model in (base, aligned):
            rows = _split_means(board, primary, model, aligned, common, (base.name, aligned.name))
            means[model.key] = {(r["family"], r["split"]): r["value"] for r in rows}
            out += rows
        deltas += _pair_deltas(board, base, aligned, common, means, replicates)
        notes += _left_out(board, base, aligned, cells, common)
    return out, deltas, notes


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


def _buckets(board: Board, splitter: Model, cells: set[Cell], family: str) -> dict[str, list[str]]:
    """The languages of `family` among `cells` per split (of `splitter`'s training languages)."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for lang in board.languages:
        if (family, lang) in cells:
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
    cells: set[Cell],
    pair: tuple[str | None, str | None],
) -> list[dict[str, Any]]:
    """Average rows of `model` over `cells`, with the seen/unseen split of `splitter`."""
    out: list[dict[str, Any]] = []
    per_split: dict[str, list[float]] = {s: [] for s in SPLITS}
    for family in board.families:
        for split, langs in _buckets(board, splitter, cells, family).items():
            if langs:
                per_split[split].append(statistics.fmean(primary[(model.key, family, lang)] for lang in langs))
                out.append(_avg_row(model, pair, family, split, per_split[split][-1], len(langs)))
    for split, values in per_split.items():
        if values:
            out.append(_avg_row(model, pair, ALL_FAMILIES, split, statistics.fmean(values), len(values)))
    return out


def _avg_row(
    model: Model, pair: tuple[str | None, str | None], family: str, split: str, value: float, n: int
) -> dict[str, Any]:
    values = (model.name, *pair, family, split, value, n)
    return dict(zip(AVERAGE_FIELDS, values, strict=True))


def _pair_deltas(
    board: Board,
    base: Model,
    aligned: Model,
    common: set[Cell],
    means: dict[str, dict[tuple[str, str], float]],
    replicates: dict[tuple[str, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Δ (pp) of each of the pair's averages with its paired bootstrap interval (None where a cell has no samples)."""
    resampled: dict[tuple[str, str], Any] = {}  # (family, split) -> the B resampled Δ of that average
    per_split: dict[str, list[Any]] = {s: [] for s in SPLITS}
    for family in board.families:
        drawn = replicates.get((aligned.key, family))
        for split, members in _buckets(board, aligned, common, family).items():
            if members:
                value = None if drawn is None else sum(drawn[lang] for lang in members) / len(members)
                resampled[(family, split)] = value
                per_split[split].append(value)
    for split, values in per_split.items():
        if values:
            resampled[(ALL_FAMILIES, split)] = None if any(v is None for v in values) else sum(values) / len(values)
    out = []
    for (family, split), draws in resampled.items():
        delta = (means[aligned.key][(family, split)] - means[base.key][(family, split)]) * 100
        low, high = _percentiles(draws) if draws is not None else (None, None)
        values = (
            base.name,
            aligned.name,
            family,
            split,
            delta,
            low,
            high,
            board.options.bootstrap if low is not None else None,
        )
        out.append(dict(zip(DELTA_FIELDS, values, strict=True)))
    return out


_WEIGHTS: dict[tuple[int, int, str, int], Any] = {}  # (seed, resamples, family, items) -> resample counts


def _weights(board: Board, family: str, items: int):
    """B x items matrix: how often each item is drawn in each of the B resamples (seeded per family)."""
    import numpy as np

    key = (board.options.seed, board.options.bootstrap, family, items)
    if key not in _WEIGHTS:
        b = board.options.bootstrap
        rng = np.random.default_rng([board.options.seed, zlib.crc32(family.encode())])
        draws = rng.integers(0, items, size=(b, items)) + np.arange(b)[:, None] * items
        _WEIGHTS[key] = np.bincount(draws.ravel(), minlength=b * items).reshape(b, items).astype(float)
    return _WEIGHTS[key]


def _replicates(
    board: Board, pairs: list[tuple[Model, Model]], commons: dict[str, set[Cell]], samples: Samples
) -> dict[tuple[str, str], dict[str, Any]]:
    """(aligned model, family) -> per language, the B resampled mean differences (aligned − base, pp), the items
    resampled jointly over the family's languages; absent when resampling is off or a language lacks per-item scores.
    A family's pairs with as many items share their resamples: one matrix product for all of them."""
    import numpy as np

    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not board.options.bootstrap:
        return out
    for family in board.families:
        groups: dict[int, list[tuple[str, list[str], Any, Any]]] = {}  # items -> (aligned, langs, diffs, present)
        for base, aligned in pairs:
            langs = [lang for lang in board.languages if (family, lang) in commons[aligned.key]]
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
                out[(key, family)] = {lang: means[:, column + j] for j, lang in enumerate(langs)}
                column += len(langs)
    return out


def _item_table(base: Model, aligned: Model, family: str, langs: list[str], samples: Samples):
    """(items x languages score differences aligned − base, items x languages 1 where scored), the items of all
    `langs` sorted; None when a language lacks per-item scores."""
    import numpy as np

    pairs = []
    for lang in langs:
        b, a = samples.get((base.key, family, lang)), samples.get((aligned.key, family, lang))
        if b is None or a is None:
            return None
        keys = [k for k in b if k in a and b[k].score is not None and a[k].score is not None]
        if not keys:
            return None
        pairs.append((keys, [a[k].score - b[k].score for k in keys]))
    universe = {k: i for i, k in enumerate(sorted({k for keys, _ in pairs for k in keys}, key=str))}
    diffs = np.zeros((len(universe), len(langs)))
    present = np.zeros_like(diffs)
    for j, (keys, d) in enumerate(pairs):
        rows = [universe[k] for k in keys]
        diffs[rows, j], present[rows, j] = d, 1.0
    return diffs, present


def _percentiles(draws) -> tuple[float | None, float | None]:
    import numpy as np

    finite = draws[np.isfinite(draws)]
    if finite.size < 0.99 * draws.size:  # resamples without an item of some language: too few items to resample
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


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

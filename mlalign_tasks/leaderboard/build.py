"""How a board is built: lm-eval runs in, a complete `Board` out (its models and their pairing, tidy rows, deltas and
paired tests, consistency, averages and their bootstrap intervals, notes)."""

from __future__ import annotations

import dataclasses
import functools
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.leaderboard.averages import averages, statistics_notes
from mlalign_tasks.leaderboard.board import (
    COMPARISON_FIELDS,
    CONSISTENCY_FIELDS,
    Board,
    CellKey,
    Model,
    Samples,
    source_folder,
)
from mlalign_tasks.leaderboard.cache import ParseCache
from mlalign_tasks.leaderboard.discover import find_results_files
from mlalign_tasks.leaderboard.items import NO_ANSWER, Items
from mlalign_tasks.leaderboard.likeness import check_like_with_like, settings_rows
from mlalign_tasks.leaderboard.models import collect_models, read_manifest
from mlalign_tasks.leaderboard.options import DEFAULT_OPTIONS, BoardOptions
from mlalign_tasks.leaderboard.references import REFERENCES_KEY, reference_rows
from mlalign_tasks.leaderboard.runs import GROUP, LANGUAGE, Run, TaskResult
from mlalign_tasks.leaderboard.samples import leaf_keys
from mlalign_tasks.leaderboard.stats import adjust, consistencies, paired_tests, wilson_interval
from mlalign_tasks.models.tiny_model import MARKER_FILE as TINY_MODEL_MARKER
from mlalign_tasks.models.toy_model import MARKER_FILE as TOY_MODEL_MARKER
from mlalign_tasks.tasks import suites

TINY_WARNING = (
    "Built from mlalign's tiny random-weight test model (`mlalign tiny-model`): the scores are noise and say "
    "nothing about question alignment; this board only shows the format and the statistics."
)
TOY_WARNING = (
    "Built from mlalign's toy world (`mlalign toy-model`): a Llama of 1.4 million parameters pretrained on toy English "
    "and synthetic languages; it shows the mechanism on a CPU and says nothing about real models or languages."
)


def _primary_metrics(models: list[Model], overrides: dict[str, str]) -> dict[str, str]:
    """Family -> the metric the tables use: the manifest's choice, else the first one lm-eval reports."""
    chosen = dict(overrides)
    reported: dict[str, set[str]] = {}
    for model in models:
        for run in model.runs:
            for result in run.cells:
                chosen.setdefault(result.family, next(iter(result.metrics)))
                reported.setdefault(result.family, set()).update(result.metrics)
    for family, metric in overrides.items():
        if metric not in reported.get(family, ()):
            raise MlalignError(
                f"manifest metric {metric!r} for {family!r} is not in the results; "
                f"reported there: {', '.join(sorted(reported.get(family, ()))) or 'nothing (no such family)'}"
            )
    return chosen


def build_board(
    results: list[Path],
    manifest_path: Path | None = None,
    out: Path | None = None,
    options: BoardOptions = DEFAULT_OPTIONS,
) -> Board:
    """Read every results file (and its samples) and compute the board's tables; `out` is the board folder
    to be written, which a search of `results` skips (as it skips every board folder inside them)."""
    manifest = read_manifest(manifest_path) if manifest_path else {}
    cache = ParseCache(options.cache)
    runs = cache.runs(find_results_files(results, skip=out))
    models, notes = collect_models(runs, manifest)
    metrics = _primary_metrics(models, {str(k): str(v) for k, v in (manifest.get("metrics") or {}).items()})
    order = {name: i for i, name in enumerate(suites.SUITES)}
    families = sorted(metrics, key=lambda f: (order.get(f, len(order)), f))
    languages = suites.language_order({r.lang for m in models for run in m.runs for r in run.cells})
    settings, mismatch_notes = check_like_with_like(models, options.allow_mismatch)

    rows: list[dict[str, Any]] = []
    cells: dict[CellKey, list[TaskResult]] = {}  # (model key, family, lang) -> its results (one per seed)
    for model in models:
        for run in model.runs:
            source = source_folder(run.path)
            for r in run.tasks.values():
                if r.level == LANGUAGE:
                    cells.setdefault((model.key, r.family, r.lang), []).append(r)
                primary_metric = metrics.get(r.family) if r.level == LANGUAGE else None
                for metric, value in r.metrics.items():
                    rows.append(_row(model, run, source, r, metric, value, metric == primary_metric))
    jobs = [(key, r, path, prefix) for key, rs in cells.items() for r in rs for prefix, path in r.samples]
    loaded = cache.samples([(path, metrics[key[1]]) for key, _, path, _ in jobs])
    cache.save()
    parts: dict[int, list[Items]] = {}  # id of a cell's result -> the items of its samples files
    for (_, r, path, prefix), items in zip(jobs, loaded, strict=True):
        parts.setdefault(id(r), []).append(leaf_keys(items, prefix, path))
    per_result = {result: Items.join(items) for result, items in parts.items()}
    primary, samples, spread, missing = _cell_values(models, cells, metrics, per_result)
    chance = {f: 1 / s.choices for f in families if (s := suites.SUITES.get(f)) is not None and s.choices}
    if options.chance_normalised:
        primary = {k: (v - chance[k[1]]) / (1 - chance[k[1]]) if k[1] in chance else v for k, v in primary.items()}

    description = str(manifest.get("description") or "")
    for marker, warning in ((TINY_MODEL_MARKER, TINY_WARNING), (TOY_MODEL_MARKER, TOY_WARNING)):
        if any((Path(m.pretrained) / marker).is_file() for m in models) and warning not in description:
            description = f"{warning} {description}".strip()
    draft = Board(  # what the tables are computed from; they fill the board returned
        title=str(manifest.get("title") or "mlalign leaderboard"),
        description=description,
        models=models,
        families=families,
        languages=languages,
        metrics=metrics,
        rows=rows,
        comparisons=[],
        consistency=[],
        averages=[],
        notes=notes,
        lm_eval_versions=sorted({run.lm_eval_version for run in runs}),
        settings=settings,
        options=options,
        chance=chance,
        spread=spread,
        references=reference_rows(manifest.get(REFERENCES_KEY) or []),
    )
    for row in rows:
        if row["level"] != GROUP:
            row["ci_low"], row["ci_high"] = wilson_interval(row["value"], row["n"])
    average_rows, deltas, average_notes = averages(draft, primary, samples)
    family_of = {r["task"]: r["family"] for r in rows if r["level"] == LANGUAGE}
    later: list[str] = []  # the notes after the averages' own
    scorings = {s for by_model in settings.values() for v in by_model.values() for s in v["scoring"].split(", ")}
    precisions = {v["precision"] for by_model in settings.values() for v in by_model.values()}
    later += [SCORING_NOTES[s] for s in sorted(scorings) if s in SCORING_NOTES]
    later += [PRECISION_NOTES[p] for p in sorted(precisions) if p in PRECISION_NOTES]
    later += statistics_notes(draft)
    for name, tasks in missing.items():
        later.append(
            f"no per-sample logs for {name} ({len(tasks)} task(s), e.g. {tasks[0]}): paired tests and "
            "cross-lingual consistency are left out there (evaluate with --log_samples to get them)"
        )
    for run in runs:
        later += run.notes
        if run.ignored_tasks:
            later.append(
                f"{run.path.name}: ignored tasks of no known suite and not named <family>_<language>: "
                f"{', '.join(run.ignored_tasks)}"
            )
    return dataclasses.replace(
        draft,
        cells=_cell_view(draft, primary, cells, metrics),
        setting_rows=settings_rows(models, settings, family_of),
        comparisons=_comparisons(draft, primary, samples),
        consistency=_consistency(draft, samples, spread),
        averages=average_rows,
        deltas=deltas,
        notes=notes + mismatch_notes + average_notes + later,
    )


def _row(
    model: Model, run: Run, source: str, r: TaskResult, metric: str, value: float, primary: bool
) -> dict[str, Any]:
    return {
        "model": model.name,
        "base_model": model.pretrained,
        "adapter": model.adapter or "",
        "task": r.task,
        "level": r.level,
        "family": r.family,
        "language": r.lang,
        "metric": metric,
        "value": value,
        "stderr": r.stderrs.get(metric),
        "ci_low": None,  # the Wilson interval, filled in once every row is read
        "ci_high": None,
        "n": r.n,
        "seed": run.seed,
        "split": model.split(r.lang) if r.level != GROUP else "",
        "source": source,
        "primary": primary,
    }


def _cell_values(
    models: list[Model],
    cells: dict[CellKey, list[TaskResult]],
    metrics: dict[str, str],
    per_result: dict[int, Items],
) -> tuple[dict[CellKey, float], Samples, dict[CellKey, tuple[float, int]], dict[str, list[str]]]:
    """Each cell's primary value and per-item samples; a cell evaluated with several seeds is their mean (its samples
    the per-item mean score, `spread` its sd over the runs and their count)."""
    names = {m.key: m.name for m in models}
    primary: dict[CellKey, float] = {}
    samples: Samples = {}
    spread: dict[CellKey, tuple[float, int]] = {}
    missing: dict[str, list[str]] = {}
    for key, results in cells.items():
        values = [r.metrics[metrics[key[1]]] for r in results if metrics[key[1]] in r.metrics]
        if not values:
            continue
        primary[key] = statistics.fmean(values)
        if len(values) > 1:
            spread[key] = (statistics.stdev(values), len(values))
        runs = [per_result.get(id(r)) for r in results]
        if any(s is None for s in runs):
            missing.setdefault(names[key[0]], []).append(results[0].task)
        elif len(runs) == 1:
            samples[key] = runs[0]
        else:
            common = functools.reduce(np.intersect1d, (s.keys for s in runs))
            scores = np.mean([s.scores[np.searchsorted(s.keys, common)] for s in runs], axis=0)  # NaN: one is none
            samples[key] = Items(common, np.full(common.size, NO_ANSWER), scores)
    return primary, samples, spread, missing


def _cell_view(
    board: Board, primary: dict[CellKey, float], cells: dict[CellKey, list[TaskResult]], metrics: dict[str, str]
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """What a table cell shows: value, stderr and Wilson interval (chance-normalised when asked), or for a cell run
    with several seeds the sd over the runs."""
    names = {m.key: m.name for m in board.models}
    chances = board.chance if board.options.chance_normalised else {}
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, value in primary.items():
        chance = chances.get(key[1], 0.0)
        view: dict[str, Any] = {"value": value, "stderr": None, "ci": None, "sd": None, "runs": len(cells[key])}
        if key in board.spread:
            view["sd"] = board.spread[key][0] / (1 - chance)
        else:
            r = cells[key][0]
            metric = metrics[key[1]]
            stderr = r.stderrs.get(metric)
            view["stderr"] = None if stderr is None else stderr / (1 - chance)
            low, high = wilson_interval(r.metrics[metric], r.n)
            if low is not None:
                view["ci"] = ((low - chance) / (1 - chance), (high - chance) / (1 - chance)) if chance else (low, high)
        out[(names[key[0]], key[1], key[2])] = view
    return out


SCORING_NOTES = {
    "paper": "the paper tasks' label words are scored as in the papers' scripts: the next-token probability summed "
    "over each label's token set after the prompt (mlalign eval --label-scoring paper)",
    "token-sets": "the paper tasks' label words are scored on the next-token probability summed over mlalign's "
    "generic token sets (mlalign eval --label-scoring token-sets)",
    "first-token": "the paper tasks' label words are scored on the probability of each label's first token after "
    "the prompt (mlalign eval --label-scoring first-token)",
}


PRECISION_NOTES = {
    "nf4-mlalign": "the models were evaluated in 4-bit NF4 with double quantisation and bfloat16 compute, adapters on "
    "the quantised base (mlalign eval --load-in-4bit --nf4-preset mlalign)",
    "nf4-paper": "the models were evaluated in 4-bit NF4 as in the papers' scripts: no double quantisation, float16 "
    "compute, adapters merged before quantising (mlalign eval --load-in-4bit --nf4-preset paper)",
}


def _languages(board: Board, cells: dict[CellKey, Any]) -> dict[tuple[str, str], list[str]]:
    """(model key, family) -> the languages of its `cells`, in the board's order."""
    order = {lang: i for i, lang in enumerate(board.languages)}
    out: dict[tuple[str, str], list[str]] = {}
    for key, family, lang in sorted(cells, key=lambda k: order[k[2]]):
        out.setdefault((key, family), []).append(lang)
    return out


def _comparisons(board: Board, primary: dict[CellKey, float], samples: Samples) -> list[dict[str, Any]]:
    """Delta (pp) and exact McNemar test per base -> aligned pair, family and language; p adjusted across the
    languages of each pair and family when the options ask for a correction."""
    groups: list[list[dict[str, Any]]] = []
    logged: list[tuple[dict[str, Any], tuple[Items, Items]]] = []  # comparisons of two logged cells
    languages = _languages(board, primary)
    for base, aligned in board.pairs():
        for family in board.families:
            group: list[dict[str, Any]] = []
            theirs = set(languages.get((base.key, family), ()))
            for lang in languages.get((aligned.key, family), ()):
                if lang not in theirs:
                    continue
                b, a = primary[(base.key, family, lang)], primary[(aligned.key, family, lang)]
                values = (
                    base.name, aligned.name, family, lang, aligned.split(lang), board.metrics[family], b, a,
                    (a - b) * 100, None, None, None, None, None,
                )  # fmt: skip
                group.append(dict(zip(COMPARISON_FIELDS, values, strict=True)))
                sb, sa = samples.get((base.key, family, lang)), samples.get((aligned.key, family, lang))
                if sb is not None and sa is not None:
                    logged.append((group[-1], (sb, sa)))
            groups.append(group)
    tests = paired_tests([pair for _, pair in logged])
    for (c, _), test in zip(logged, tests, strict=True):
        if test is not None:
            c.update(n_paired=test.n, only_base=test.only_base, only_aligned=test.only_aligned, p_value=test.p_value)
    for group in groups:
        adjusted = adjust([c["p_value"] for c in group], board.options.correction)
        for c, p in zip(group, adjusted, strict=True):
            c["p_adjusted"] = p
    return [c for group in groups for c in group]


def _consistency(board: Board, samples: Samples, spread: dict[CellKey, tuple[float, int]]) -> list[dict[str, Any]]:
    """Agreement with English per model, family and non-English language (needs both sample logs of one run)."""
    cells: list[tuple[tuple[str, str, str], tuple[Items, Items]]] = []
    languages = _languages(board, samples)
    for model in board.models:
        for family in board.families:
            english = samples.get((model.key, family, "en"))
            if english is None or (model.key, family, "en") in spread:
                continue
            for lang in languages[(model.key, family)]:
                other = samples[(model.key, family, lang)] if lang != "en" else None
                if other is not None and (model.key, family, lang) not in spread:
                    cells.append(((model.name, family, lang), (other, english)))
    out = []
    for (cell, _), c in zip(cells, consistencies([pair for _, pair in cells]), strict=True):
        if c is not None:
            out.append(dict(zip(CONSISTENCY_FIELDS, (*cell, c.n, c.same_answer, c.both_correct), strict=True)))
    return out

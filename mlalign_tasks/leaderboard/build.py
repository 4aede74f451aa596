"""Turn lm-eval runs into a board: models and their pairing, tidy rows, deltas, tests, consistency, averages."""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlalign_tasks import suites
from mlalign_tasks.artefacts import METADATA_FILE
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.languages import parse_langs
from mlalign_tasks.leaderboard.averages import averages, statistics_notes
from mlalign_tasks.leaderboard.cache import ParseCache
from mlalign_tasks.leaderboard.likeness import check_like_with_like, settings_rows
from mlalign_tasks.leaderboard.load import (
    GROUP,
    LANGUAGE,
    NO_ANSWER,
    Items,
    Run,
    TaskResult,
    find_results_files,
    leaf_keys,
)
from mlalign_tasks.leaderboard.options import DEFAULT_OPTIONS, BoardOptions
from mlalign_tasks.leaderboard.references import REFERENCES_KEY, check_references, reference_rows
from mlalign_tasks.leaderboard.stats import adjust, consistencies, paired_tests, wilson_interval
from mlalign_tasks.names import check_name
from mlalign_tasks.parallel import Background
from mlalign_tasks.tiny_model import MARKER_FILE as TINY_MODEL_MARKER
from mlalign_tasks.toy_model import MARKER_FILE as TOY_MODEL_MARKER
from mlalign_tasks.yaml_files import read_yaml

ALL_FAMILIES = "all"
TINY_WARNING = (
    "Built from mlalign's tiny random-weight test model (`mlalign tiny-model`): the scores are noise and say "
    "nothing about question alignment; this board only shows the format and the statistics."
)
TOY_WARNING = (
    "Built from mlalign's toy world (`mlalign toy-model`): a Llama of 1.4 million parameters pretrained on toy English "
    "and synthetic languages; it shows the mechanism on a CPU and says nothing about real models or languages."
)
COMPARISON_FIELDS = (
    "base", "aligned", "family", "language", "split", "metric", "base_value", "aligned_value", "delta_pp",
    "n_paired", "only_base", "only_aligned", "p_value", "p_adjusted",
)  # fmt: skip
CONSISTENCY_FIELDS = ("model", "family", "language", "n", "same_answer", "both_correct")
AVERAGE_FIELDS = ("model", "base", "aligned", "family", "split", "value", "n")  # base/aligned: the pair, if any
MANIFEST_KEYS = {"title", "description", "metrics", "models", REFERENCES_KEY}
MANIFEST_MODEL_KEYS = {"match", "name", "base", "languages"}


@dataclass
class Model:
    """A model on the board: a base model, or a base plus adapter (an aligned model)."""

    key: str
    name: str
    pretrained: str
    adapter: str | None
    runs: list[Run] = field(default_factory=list)
    base: str | None = None  # key of the base model it is compared with
    seen: tuple[str, ...] | None = None  # languages it was trained on

    def split(self, lang: str) -> str:
        """english / seen / unseen for an aligned model with known training languages, else n/a."""
        if lang == "en":
            return "english"
        if self.seen is None:
            return "n/a"
        return "seen" if lang in self.seen else "unseen"


@dataclass
class Board:
    """Everything the renderers need; numbers are lm-eval's own values (no rounding here)."""

    title: str
    description: str
    models: list[Model]
    families: list[str]
    languages: list[str]
    metrics: dict[str, str]  # family -> primary "metric,filter"
    rows: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    consistency: list[dict[str, Any]]
    averages: list[dict[str, Any]]
    notes: list[str]
    lm_eval_versions: list[str]
    settings: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # task -> model -> SETTINGS
    options: BoardOptions = DEFAULT_OPTIONS
    chance: dict[str, float] = field(default_factory=dict)  # classification family -> chance level
    spread: dict[tuple[str, str, str], tuple[float, int]] = field(default_factory=dict)  # seeds: (sd, runs)
    references: list[dict[str, Any]] = field(default_factory=list)  # published numbers (never in statistics)
    deltas: list[dict[str, Any]] = field(default_factory=list)  # Δ of each pair's averages with its interval
    cells: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (model name, family, lang)
    setting_rows: list[dict[str, str]] = field(default_factory=list)  # per model and family: its SETTINGS
    # the averages still being computed in another process, and the notes before and after theirs (`settle`)
    pending: tuple[Background, list[str], list[str]] | None = field(default=None, repr=False, compare=False)

    def settle(self) -> Board:
        """Wait for the averages and their notes (`build_board(..., wait=False)` hands the board over without them)."""
        if self.pending is not None:
            job, before, after = self.pending
            self.pending = None
            self.averages, self.deltas, notes = job.result()
            self.notes += before + notes + after
        return self

    def cancel(self) -> None:
        """Stop computing what `settle` would wait for."""
        if self.pending is not None:
            self.pending[0].stop()
            self.pending = None

    def model(self, key: str) -> Model:
        return next(m for m in self.models if m.key == key)

    def pairs(self) -> list[tuple[Model, Model]]:
        """(base, aligned) pairs whose base is on the board."""
        keys = {m.key for m in self.models}
        return [(self.model(m.base), m) for m in self.models if m.base in keys]


def _find(pattern: str, models: dict[str, Model]) -> list[Model]:
    """Models a manifest `match` names: the one whose key it is, else those whose key ends with its path."""
    p = pattern.rstrip("/")
    exact = [m for k, m in models.items() if k.rstrip("/") == p]
    return exact or [m for k, m in models.items() if k.rstrip("/").endswith("/" + p.lstrip("./"))]


def read_manifest(path: Path) -> dict[str, Any]:
    """Load and check the manifest YAML (title, description, metrics per family, models)."""
    data = read_yaml(path, "manifest") or {}
    if not isinstance(data, dict) or set(data) - MANIFEST_KEYS:
        raise MlalignError(f"manifest {path}: expected a mapping with keys {sorted(MANIFEST_KEYS)}")
    if not isinstance(data.get("metrics") or {}, dict):
        raise MlalignError(f"manifest {path}: 'metrics' must map task families to 'metric,filter'")
    if not isinstance(data.get("models") or [], list):
        raise MlalignError(f"manifest {path}: 'models' must be a list of mappings with 'match'")
    for i, entry in enumerate(data.get("models") or []):
        if not isinstance(entry, dict) or "match" not in entry or set(entry) - MANIFEST_MODEL_KEYS:
            raise MlalignError(
                f"manifest {path}: models[{i}] must be a mapping with 'match' and optional "
                f"{sorted(MANIFEST_MODEL_KEYS - {'match'})}"
            )
        for key in ("match", "name", "base"):
            if isinstance(entry.get(key), str):
                check_name(entry[key], f"manifest {path}: models[{i}].{key}")
        if "languages" in entry:
            langs = entry["languages"]
            if not isinstance(langs, str) and not (isinstance(langs, list) and all(isinstance(c, str) for c in langs)):
                raise MlalignError(
                    f"manifest {path}: models[{i}].languages must be a list of codes or 'de,fr,...', got {langs!r} "
                    "(quote codes that YAML reads as booleans: 'no')"
                )
            entry["languages"] = parse_langs(langs)
    check_references(data.get(REFERENCES_KEY), path)
    return data


def _training_metadata(adapter: str, near: list[Path]) -> dict[str, Any] | None:
    """The trainer's `mlalign_training.json` of an adapter (path as given, or relative to the results)."""
    for root in [Path.cwd(), *near]:
        meta = root / adapter / METADATA_FILE  # an absolute adapter path replaces root
        if meta.is_file():
            try:
                return json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError) as e:
                raise MlalignError(f"cannot read adapter metadata {meta}: {type(e).__name__}") from None
    return None


def _display_name(key: str) -> str:
    return Path(key.rstrip("/")).name or key


def collect_models(runs: list[Run], manifest: dict[str, Any]) -> tuple[list[Model], list[str]]:
    """Group runs by model (refusing a task reported twice), then apply the manifest and adapter metadata."""
    notes: list[str] = []
    models: dict[str, Model] = {}
    for run in runs:
        model = models.setdefault(run.key, Model(run.key, "", run.pretrained, run.peft))
        for other in model.runs:
            dup = sorted(run.tasks.keys() & other.tasks.keys())
            if dup and (run.seed is None or run.seed == other.seed):
                raise MlalignError(
                    f"duplicate model: {run.key} has results for {', '.join(dup[:3])}"
                    f"{' ...' if len(dup) > 3 else ''} in both {other.path} and {run.path} (seed {run.seed}); pass "
                    "only one of them (runs with different --seed values are averaged)"
                )
        model.runs.append(run)
    entries = manifest.get("models") or []
    claimed: dict[str, str] = {}
    for entry in entries:
        hits = _find(str(entry["match"]), models)
        if len(hits) != 1:
            raise MlalignError(
                f"manifest model match {entry['match']!r} fits {len(hits)} models (need exactly one); "
                f"models in the results: {', '.join(sorted(models))}"
            )
        model = hits[0]
        if model.key in claimed:
            raise MlalignError(f"manifest entries {claimed[model.key]!r} and {entry['match']!r} name the same model")
        claimed[model.key] = str(entry["match"])
        model.name = str(entry.get("name") or "")
        if entry.get("languages") is not None:
            model.seen = tuple(entry["languages"])
        if entry.get("base") is not None:
            bases = _find(str(entry["base"]), models)
            if len(bases) != 1:
                raise MlalignError(
                    f"manifest base {entry['base']!r} fits {len(bases)} models in the results (need one)"
                )
            model.base = bases[0].key
    for model in models.values():
        if model.adapter is None:
            continue
        model.base = model.base or model.pretrained
        if model.seen is None:
            meta = _training_metadata(model.adapter, [r.path.parent for r in model.runs])
            # every stage's languages (QAlign's stage II trains on English only); older metadata: its languages
            seen = meta.get("seen_languages", meta.get("languages")) if meta else None
            if isinstance(seen, list):
                model.seen = tuple(parse_langs([str(c) for c in seen])) if seen else ()
            else:
                notes.append(
                    f"training languages of {model.adapter} unknown (no {METADATA_FILE} found and no manifest "
                    "entry): its languages are not split into seen/unseen"
                )
        if model.base not in models:
            notes.append(f"base model {model.base} of {model.adapter} has no results on this board: no deltas for it")
    names: dict[str, int] = {}
    for model in models.values():
        model.name = model.name or _display_name(model.key)
        names[model.name] = names.get(model.name, 0) + 1
    for model in models.values():
        if names[model.name] > 1:
            model.name = model.key
    if len({m.name for m in models.values()}) != len(models):
        raise MlalignError("two models have the same display name; give them distinct 'name's in the manifest")
    return _ordered(list(models.values()), list(claimed)), notes


def _ordered(models: list[Model], manifest_order: list[str]) -> list[Model]:
    """The manifest's order if it names the models; otherwise each base model followed by its aligned ones."""
    position = {m.key: i for i, m in enumerate(models)}

    def rank(m: Model) -> tuple[int, int, int]:
        if m.key in manifest_order:
            return (0, manifest_order.index(m.key), 0)
        anchor = m.base if m.base in position else m.key
        return (1, position[anchor], 0 if anchor == m.key else 1 + position[m.key])

    return sorted(models, key=rank)


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
    wait: bool = True,
) -> Board:
    """Read every results file (and its samples) and compute the board's tables; `out` is the board folder
    to be written, which a search of `results` skips (as it skips every board folder inside them). The averages are
    computed in a second process; without `wait` the board comes back before them (`Board.settle` waits)."""
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
    board = Board(
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
    averaged = Background(averages, board, primary, samples)  # the bootstrap, beside what follows
    try:
        board.cells = _cell_view(board, primary, cells, metrics)
        family_of = {r["task"]: r["family"] for r in rows if r["level"] == LANGUAGE}
        board.setting_rows = settings_rows(models, settings, family_of)
        board.comparisons = _comparisons(board, primary, samples)
        board.consistency = _consistency(board, samples, spread)
    except BaseException:
        averaged.stop()
        raise
    later: list[str] = []  # the notes after the averages' own
    scorings = {s for by_model in settings.values() for v in by_model.values() for s in v["scoring"].split(", ")}
    precisions = {v["precision"] for by_model in settings.values() for v in by_model.values()}
    later += [SCORING_NOTES[s] for s in sorted(scorings) if s in SCORING_NOTES]
    later += [PRECISION_NOTES[p] for p in sorted(precisions) if p in PRECISION_NOTES]
    later += statistics_notes(board)
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
    board.pending = (averaged, mismatch_notes, later)
    return board.settle() if wait else board


CellKey = tuple[str, str, str]  # (model key, family, language)


def source_folder(path: Path) -> str:
    """The folder a results file was read from (not the file: its name carries lm-eval's run date, and a board
    rebuilt from a re-run with the same results must not change); relative to the working directory when inside it.
    A row's number is in the results_*.json there that reports its task (with its seed)."""
    return str(path.parent.relative_to(Path.cwd())) if path.parent.is_relative_to(Path.cwd()) else path.parent.name


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


Samples = dict[CellKey, Items]  # (model key, family, lang) -> its logged items


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

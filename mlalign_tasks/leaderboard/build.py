"""Turn lm-eval runs into a board: models and their pairing, tidy rows, deltas, tests, consistency, averages."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mlalign_trainer.metadata import METADATA_FILE as TRAINING_METADATA

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.languages import FAMILIES, LANGUAGES, parse_langs
from mlalign_tasks.leaderboard.load import Run, Sample, find_results_files, load_all_samples, load_run
from mlalign_tasks.leaderboard.stats import consistency, paired_test
from mlalign_tasks.tiny_model import MARKER_FILE as TINY_MODEL_MARKER

SPLITS = ("english", "seen", "unseen", "non_english")
ALL_FAMILIES = "all"
TINY_WARNING = (
    "Built from mlalign's tiny random-weight test model (`mlalign tiny-model`): the scores are noise and say "
    "nothing about question alignment; this board only shows the format and the statistics."
)
COMPARISON_FIELDS = (
    "base", "aligned", "family", "language", "split", "metric", "base_value", "aligned_value", "delta_pp",
    "n_paired", "only_base", "only_aligned", "p_value",
)  # fmt: skip
CONSISTENCY_FIELDS = ("model", "family", "language", "n", "same_answer", "both_correct")
AVERAGE_FIELDS = ("model", "base", "aligned", "family", "split", "value", "n")  # base/aligned: the pair, if any
MANIFEST_KEYS = {"title", "description", "metrics", "models"}
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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, RecursionError) as e:
        raise MlalignError(f"cannot read manifest {path}: {' '.join(str(e).split())}") from None
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
        if "languages" in entry:
            langs = entry["languages"]
            if not isinstance(langs, str) and not (isinstance(langs, list) and all(isinstance(c, str) for c in langs)):
                raise MlalignError(
                    f"manifest {path}: models[{i}].languages must be a list of codes or 'de,fr,...', got {langs!r} "
                    "(quote codes that YAML reads as booleans: 'no')"
                )
            entry["languages"] = parse_langs(langs)
    return data


def _training_metadata(adapter: str, near: list[Path]) -> dict[str, Any] | None:
    """The trainer's `mlalign_training.json` of an adapter (path as given, or relative to the results)."""
    for root in [Path.cwd(), *near]:
        meta = root / adapter / TRAINING_METADATA  # an absolute adapter path replaces root
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
            if dup:
                raise MlalignError(
                    f"duplicate model: {run.key} has results for {', '.join(dup[:3])}"
                    f"{' ...' if len(dup) > 3 else ''} in both {other.path} and {run.path}; pass only one of them"
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
                    f"training languages of {model.adapter} unknown (no {TRAINING_METADATA} found and no manifest "
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
            for result in run.tasks.values():
                chosen.setdefault(result.family, next(iter(result.metrics)))
                reported.setdefault(result.family, set()).update(result.metrics)
    for family, metric in overrides.items():
        if metric not in reported.get(family, ()):
            raise MlalignError(
                f"manifest metric {metric!r} for {family!r} is not in the results; "
                f"reported there: {', '.join(sorted(reported.get(family, ()))) or 'nothing (no such family)'}"
            )
    return chosen


def build_board(results: list[Path], manifest_path: Path | None = None, out: Path | None = None) -> Board:
    """Read every results file (and its samples) and compute the board's tables; `out` is the board folder
    to be written, which a search of `results` skips (as it skips every board folder inside them)."""
    manifest = read_manifest(manifest_path) if manifest_path else {}
    runs = [load_run(p) for p in find_results_files(results, skip=out)]
    models, notes = collect_models(runs, manifest)
    metrics = _primary_metrics(models, {str(k): str(v) for k, v in (manifest.get("metrics") or {}).items()})
    order = {f: i for i, f in enumerate(FAMILIES)}
    families = sorted(metrics, key=lambda f: (order.get(f, len(order)), f))
    tasks_seen = {(r.family, r.lang) for m in models for run in m.runs for r in run.tasks.values()}
    languages = [code for code in LANGUAGES if any(lang == code for _, lang in tasks_seen)]

    scorings, precisions = _like_with_like(models)
    rows: list[dict[str, Any]] = []
    primary: dict[tuple[str, str, str], float] = {}  # (model key, family, lang) -> value
    jobs: dict[tuple[str, str, str], tuple[Path, str]] = {}  # samples file and metric to read them for
    missing: dict[str, list[str]] = {}
    for model in models:
        for run in model.runs:
            for r in run.tasks.values():
                key = (model.key, r.family, r.lang)
                if r.samples_path is None:
                    missing.setdefault(model.name, []).append(r.task)
                else:
                    jobs[key] = (r.samples_path, metrics[r.family])
                for metric, value in r.metrics.items():
                    rows.append(
                        {
                            "model": model.name,
                            "base_model": model.pretrained,
                            "adapter": model.adapter or "",
                            "task": r.task,
                            "family": r.family,
                            "language": r.lang,
                            "metric": metric,
                            "value": value,
                            "stderr": r.stderrs.get(metric),
                            "n": r.n,
                            "split": model.split(r.lang),
                            "primary": metric == metrics[r.family],
                        }
                    )
                    if metric == metrics[r.family]:
                        primary[key] = value
    samples = dict(zip(jobs, load_all_samples(list(jobs.values())), strict=True))

    description = str(manifest.get("description") or "")
    if any((Path(m.pretrained) / TINY_MODEL_MARKER).is_file() for m in models) and TINY_WARNING not in description:
        description = f"{TINY_WARNING} {description}".strip()
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
    )
    board.comparisons = _comparisons(board, primary, samples)
    board.consistency = _consistency(board, samples)
    board.averages, pair_notes = _averages(board, primary)
    board.notes += pair_notes
    board.notes += [SCORING_NOTES[s] for s in sorted(scorings) if s in SCORING_NOTES]
    board.notes += [PRECISION_NOTES[p] for p in sorted(precisions) if p in PRECISION_NOTES]
    for name, tasks in missing.items():
        board.notes.append(
            f"no per-sample logs for {name} ({len(tasks)} task(s), e.g. {tasks[0]}): paired tests and "
            "cross-lingual consistency are left out there (evaluate with --log_samples to get them)"
        )
    for run in runs:
        if run.ignored_tasks:
            board.notes.append(
                f"{run.path.name}: ignored tasks not named <family>_<language>: {', '.join(run.ignored_tasks)}"
            )
    return board


SCORING_NOTES = {
    "paper": "the paper tasks' label words are scored as in the papers' scripts: the next-token probability summed "
    "over each label's token set after the prompt (mlalign eval --label-scoring paper)",
    "first-token": "the paper tasks' label words are scored on the probability of each label's first token after "
    "the prompt (mlalign eval --label-scoring first-token)",
}


PRECISION_NOTES = {
    "nf4-mlalign": "the models were evaluated in 4-bit NF4 with double quantisation and bfloat16 compute, adapters on "
    "the quantised base (mlalign eval --load-in-4bit --nf4-preset mlalign)",
    "nf4-paper": "the models were evaluated in 4-bit NF4 as in the papers' scripts: no double quantisation, float16 "
    "compute, adapters merged before quantising (mlalign eval --load-in-4bit --nf4-preset paper)",
}


def _like_with_like(models: list[Model]) -> tuple[set[str], set[str]]:
    """The label scorings and precisions of the runs; models scored or loaded differently on the same task cannot be
    compared. Returns (scorings, precisions)."""
    scorings: dict[str, dict[str, str]] = {}
    precisions: dict[str, dict[str, str]] = {}
    for model in models:
        for run in model.runs:
            for r in run.tasks.values():
                scorings.setdefault(r.task, {})[model.name] = r.label_scoring
                precisions.setdefault(r.task, {})[model.name] = run.precision
    for by_task, what, flag in (
        (scorings, "scored in different ways", "--label-scoring"),
        (precisions, "evaluated at different precisions", "--load-in-4bit --nf4-preset"),
    ):
        for task, by_model in by_task.items():
            if len(set(by_model.values())) > 1:
                listed = ", ".join(f"{name}: {value}" for name, value in by_model.items())
                raise MlalignError(
                    f"{task} was {what} ({listed}); evaluate every model with the same `mlalign eval {flag}`"
                )
    return (
        {v for by_model in scorings.values() for v in by_model.values()},
        {v for by_model in precisions.values() for v in by_model.values()},
    )


Samples = dict[tuple[str, str, str], dict[int, Sample]]  # (model key, family, lang) -> per-item samples


def _comparisons(board: Board, primary: dict[tuple[str, str, str], float], samples: Samples) -> list[dict[str, Any]]:
    """Delta (pp) and exact McNemar test per base -> aligned pair, family and language."""
    out: list[dict[str, Any]] = []
    for base, aligned in board.pairs():
        for family in board.families:
            for lang in board.languages:
                b, a = primary.get((base.key, family, lang)), primary.get((aligned.key, family, lang))
                if a is None or b is None:
                    continue
                sb, sa = samples.get((base.key, family, lang)), samples.get((aligned.key, family, lang))
                test = paired_test(sb, sa) if sb is not None and sa is not None else None
                values = (
                    base.name, aligned.name, family, lang, aligned.split(lang), board.metrics[family], b, a,
                    (a - b) * 100, *((test.n, test.only_base, test.only_aligned, test.p_value) if test else (None,) * 4),
                )  # fmt: skip
                out.append(dict(zip(COMPARISON_FIELDS, values, strict=True)))
    return out


def _consistency(board: Board, samples: Samples) -> list[dict[str, Any]]:
    """Agreement with English per model, family and non-English language (needs both sample logs)."""
    out: list[dict[str, Any]] = []
    for model in board.models:
        for family in board.families:
            english = samples.get((model.key, family, "en"))
            for lang in board.languages:
                other = samples.get((model.key, family, lang)) if lang != "en" else None
                c = consistency(other, english) if other is not None and english is not None else None
                if c is not None:
                    values = (model.name, family, lang, c.n, c.same_answer, c.both_correct)
                    out.append(dict(zip(CONSISTENCY_FIELDS, values, strict=True)))
    return out


Cell = tuple[str, str]  # (family, language)


def _averages(board: Board, primary: dict[tuple[str, str, str], float]) -> tuple[list[dict[str, Any]], list[str]]:
    """Mean primary score per family and split (family 'all': the mean of the family means), and notes.

    Both models of a base -> aligned pair are averaged over the cells both have, split by the aligned
    model's training languages, so their Δ compares the same tasks (a base in several pairs has one set of
    rows per pair); a model in no pair is averaged over all its cells.
    """
    cells: dict[str, set[Cell]] = {m.key: set() for m in board.models}
    for key, family, lang in primary:
        cells[key].add((family, lang))
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for base, aligned in board.pairs():
        common = cells[base.key] & cells[aligned.key]
        for model in (base, aligned):
            out += _split_means(board, primary, model, aligned, common, (base.name, aligned.name))
        only = [(m.name, cells[m.key] - common) for m in (base, aligned)]
        left = sum(len(c) for _, c in only)
        listed = "; ".join(f"only {name} has {_cell_list(board, c)}" for name, c in only if c)
        if not common:
            notes.append(
                f"{aligned.name} vs {base.name}: no (family, language) cell evaluated by both: no averages ({listed})"
            )
        elif left:
            notes.append(
                f"{aligned.name} vs {base.name}: averages over the {_cells(len(common), '(family, language) ')} both "
                f"evaluated; {_cells(left)} only one of them has {'is' if left == 1 else 'are'} left out ({listed})"
            )
    paired = {m.key for pair in board.pairs() for m in pair}
    for model in board.models:
        if model.key not in paired:
            out += _split_means(board, primary, model, model, cells[model.key], (None, None))
    return out, notes


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
        buckets: dict[str, list[float]] = {s: [] for s in SPLITS}
        for lang in board.languages:
            if (family, lang) not in cells:
                continue
            value = primary[(model.key, family, lang)]
            split = splitter.split(lang)
            if split in buckets:
                buckets[split].append(value)
            if lang != "en":
                buckets["non_english"].append(value)
        for split, values in buckets.items():
            if values:
                per_split[split].append(statistics.fmean(values))
                out.append(_avg_row(model, pair, family, split, per_split[split][-1], len(values)))
    for split, values in per_split.items():
        if values:
            out.append(_avg_row(model, pair, ALL_FAMILIES, split, statistics.fmean(values), len(values)))
    return out


def _avg_row(
    model: Model, pair: tuple[str | None, str | None], family: str, split: str, value: float, n: int
) -> dict[str, Any]:
    values = (model.name, *pair, family, split, value, n)
    return dict(zip(AVERAGE_FIELDS, values, strict=True))

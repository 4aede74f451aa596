"""Which models are on a board: runs grouped by model, named, paired with their base and given their training
languages, from the manifest and the adapters' training metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import METADATA_FILE
from mlalign_tasks.files.names import check_name
from mlalign_tasks.files.yaml_files import read_yaml
from mlalign_tasks.leaderboard.board import Model
from mlalign_tasks.leaderboard.references import REFERENCES_KEY, check_references
from mlalign_tasks.leaderboard.runs import Run
from mlalign_tasks.tasks.languages import parse_langs

MANIFEST_KEYS = {"title", "description", "metrics", "models", REFERENCES_KEY}
MANIFEST_MODEL_KEYS = {"match", "name", "base", "languages"}


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

"""Like with like: models compared on a task must have been evaluated under the same settings.

A score depends on the shots, the generation settings, the items, the prompt and template, the label
scoring and the precision the model was loaded in (`runs.SETTINGS`, read from each results file). A board
refuses to compare models whose runs of one task differ in any of them, unless asked to (`--allow-mismatch`);
then each difference is named in a note that the README and the page show first.
"""

from __future__ import annotations

import hashlib

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.leaderboard.board import Model
from mlalign_tasks.leaderboard.runs import SETTINGS

# What to tell the user per setting: what differs, and how to evaluate alike.
WHAT = {
    "shots": ("few-shot examples", "the same --num-fewshot"),
    "generation": ("generation settings", "the same --gen-kwargs (or the task's defaults)"),
    "items": ("items (evaluated of available)", "the same --limit"),
    "prompt": ("prompts or template (task config, chat template, system instruction)", "the same tasks and template"),
    "task_hash": ("evaluated prompts and items (lm-eval's task hash)", "the same tasks, --limit and few-shot seed"),
    "scoring": ("label scorings", "the same `mlalign eval --label-scoring` and `--gold`"),
    "precision": ("precisions", "the same `mlalign eval --load-in-4bit --nf4-preset`"),
}
MISMATCH_PREFIX = "NOT LIKE WITH LIKE: "
PER_TASK_HASHES = ("prompt", "task_hash")  # each task of a family has its own


def check_like_with_like(models: list[Model], allow: bool) -> tuple[dict[str, dict[str, dict[str, str]]], list[str]]:
    """Each task's settings per model (task -> model name -> setting -> value) and, where models differ and
    `allow` is set, one note per task and setting; without `allow` the first difference is an error."""
    by_task: dict[str, dict[str, dict[str, str]]] = {}
    for model in models:
        for run in model.runs:
            for r in run.cells:
                by_task.setdefault(r.task, {})[model.name] = r.settings
    notes: list[str] = []
    for task, by_model in by_task.items():
        differ = [
            s for s in SETTINGS if len({v.get(s, "") for v in by_model.values() if v.get(s) or s != "task_hash"}) > 1
        ]
        for setting in differ:
            if setting == "task_hash" and len(differ) > 1:
                continue  # explained by the settings that differ
            values = {name: s.get(setting, "") for name, s in by_model.items()}
            what, fix = WHAT[setting]
            listed = "; ".join(f"{name}: {value or 'unknown'}" for name, value in values.items())
            if not allow:
                raise MlalignError(
                    f"{task} was evaluated with different {what} ({listed}); evaluate every model with {fix}, or "
                    "pass --allow-mismatch to build the board anyway with a note"
                )
            notes.append(f"{MISMATCH_PREFIX}{task}: different {what} ({listed})")
    return by_task, notes


def settings_rows(models: list[Model], by_task: dict[str, dict[str, dict[str, str]]], family_of: dict[str, str]):
    """One row per model and task family: each setting's values over the family's tasks (joined when they vary)."""
    rows = []
    for model in models:
        per_family: dict[str, dict[str, set[str]]] = {}
        for task, by_model in by_task.items():
            if model.name in by_model:
                family = per_family.setdefault(family_of[task], {s: set() for s in SETTINGS})
                for setting in SETTINGS:
                    family[setting].add(by_model[model.name].get(setting, ""))
        for family, values in per_family.items():
            rows.append({"model": model.name, "family": family} | {s: _joined(s, values[s]) for s in SETTINGS})
    return rows


def _joined(setting: str, values: set[str]) -> str:
    """A family's values of one setting: joined with `|`, or for per-task hashes (one per language) their count
    and one digest of them all, equal for two models exactly when every task's hash is."""
    if setting in PER_TASK_HASHES and len(values) > 1:
        digest = hashlib.sha256("|".join(sorted(values)).encode()).hexdigest()[:12]
        return f"{len(values)} hashes, digest {digest}"
    return " | ".join(sorted(values))

"""Read one lm-eval results JSON into a `Run`: the file checked, its tasks placed on the board (language cell, group
score, part of a cell) and each cell's settings (what must agree for two models to be compared)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlalign_tasks.files.names import check_name
from mlalign_tasks.leaderboard.discover import ResultsError, inside
from mlalign_tasks.models.gguf_models import source_name
from mlalign_tasks.pipeline.stages import digest
from mlalign_tasks.tasks import suites
from mlalign_tasks.tasks.languages import FAMILIES, LANGUAGES, SUPER_GROUPS

SUPPORTED_LM_EVAL = "0.4."  # the results layout read here is the one of lm-eval 0.4.x
REQUIRED_KEYS = ("results", "config", "lm_eval_version")
_DATE_ID = re.compile(r"_(\d{4}-\d{2}-\d{2}T[\d.-]+)\.json$")
_FAMILY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a file-name part: no path separator, not hidden

LANGUAGE, GROUP, SUBTASK = "language", "group", "subtask"  # what a results entry is on the board
# Metrics that are not proportions: left off the board (it shows proportions in percent), with a note.
UNBOUNDED_METRICS = frozenset(
    {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "bleu", "chrf", "ter", "likelihood"}
)
# The settings that decide what a score means; models compared on a task must agree on each.
SETTINGS = ("scoring", "precision", "shots", "generation", "items", "prompt", "task_hash")
_PROMPT_KEYS = (
    "doc_to_text", "doc_to_target", "doc_to_choice", "description", "target_delimiter", "fewshot_delimiter",
    "fewshot_config", "gen_prefix", "test_split", "dataset_path", "dataset_name",
)  # fmt: skip


@dataclass
class TaskResult:
    """One entry of one results file: a language cell (a task, or a per-language group such as `global_mmlu_de`),
    an lm-eval group score (`level` group, no language) or a part of a cell (`level` subtask)."""

    task: str
    family: str
    lang: str
    metrics: dict[str, float]
    stderrs: dict[str, float | None]
    n: int | None
    samples: list[tuple[str, str]]  # (key prefix, samples file's path): one file for a task, its leaves' for a group
    level: str = LANGUAGE
    settings: dict[str, str] = field(default_factory=dict)  # SETTINGS -> a comparable description


@dataclass
class Run:
    """One lm-eval results file: the model it evaluated and its per-language task results."""

    path: Path
    pretrained: str
    peft: str | None
    lm_eval_version: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    ignored_tasks: list[str] = field(default_factory=list)
    precision: str = "full"  # how the model was loaded: full, or nf4-<preset> (mlalign eval --nf4-preset)
    seed: int | None = None  # lm-eval's random seed of the run
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The model this run evaluated: the adapter if there is one, else the base model."""
        return self.peft or self.pretrained

    @property
    def cells(self) -> list[TaskResult]:
        """The language cells of this run (not group scores nor parts of cells)."""
        return [r for r in self.tasks.values() if r.level == LANGUAGE]


def split_task(task: str) -> tuple[str, str] | None:
    """`mgsm_aligned_de` -> ("mgsm_aligned", "de"), `belebele_deu_Latn` -> ("belebele", "de"): a language of a
    suite in `mlalign_tasks.tasks.suites`, else `<family>_<lang>` with a language of our table (a family name is
    letters, digits, `_`, `.`, `-`: a task name also names its samples file); None otherwise."""
    known = suites.lookup(task)
    if known is not None:
        return known[0].name, known[1]
    family, _, lang = task.rpartition("_")
    return (family, lang) if _FAMILY_NAME.fullmatch(family) and lang in LANGUAGES else None


def parse_model_args(model_args: str | dict[str, Any] | None) -> dict[str, str]:
    """lm-eval model_args as a dict, whether it was given as `k=v,k=v` or as a dict."""
    if isinstance(model_args, dict):
        return {str(k): str(v) for k, v in model_args.items() if v is not None}
    if isinstance(model_args, str):
        pairs = (item.split("=", 1) for item in model_args.split(",") if "=" in item)
        return {k.strip(): v.strip() for k, v in pairs}
    return {}


def finite_number(value: Any) -> float | None:
    """A metric value as float; None for lm-eval's "N/A" and non-finite values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _samples_file(results_path: Path, task: str, plain: set[str]) -> Path | None:
    """The samples JSONL lm-eval wrote beside a resolved results file for `task`; `plain` names the folder's
    regular files that are not links (those need no resolving)."""
    m = _DATE_ID.search(results_path.name)
    if not m:
        return None
    name = f"samples_{task}_{m.group(1)}.jsonl"
    if name in plain:
        return results_path.parent / name
    candidate = results_path.parent / name
    return inside(candidate, results_path.parent) if candidate.is_file() else None


def _plain_files(folder: Path) -> set[str]:
    with os.scandir(folder) as entries:
        return {e.name for e in entries if not e.is_symlink() and e.is_file(follow_symlinks=False)}


def load_run(path: Path) -> Run:
    """Read and validate one lm-eval results JSON (layout of lm-eval 0.4.x EvaluationTracker); `path` resolved,
    as `find_results_files` gives it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path} is not a readable JSON file ({e}); pass lm-eval results_*.json files") from e
    except RecursionError:
        raise ResultsError(
            f"{path} nests its JSON too deeply to be lm-eval results; pass lm-eval results_*.json files"
        ) from None
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED_KEYS):
        have = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise ResultsError(
            f"{path} is not an lm-eval results file: expected keys {list(REQUIRED_KEYS)}, found {have}; "
            "pass the results_*.json written by `lm_eval --output_path ...` or `mlalign eval`"
        )
    version = str(data["lm_eval_version"])
    if not version.startswith(SUPPORTED_LM_EVAL):
        raise ResultsError(
            f"{path} was written by lm-eval {version}; this leaderboard reads lm-eval {SUPPORTED_LM_EVAL}x results. "
            "Re-run the evaluation with lm-eval 0.4.13 (the version mlalign installs)"
        )
    results, config = data["results"], data["config"]
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise ResultsError(f"{path}: 'results' must map task names to metric dicts (lm-eval layout)")
    if not isinstance(config, dict):
        raise ResultsError(f"{path}: 'config' must be a dict with 'model_args'")
    args = parse_model_args(config.get("model_args"))
    pretrained = args.get("pretrained") or args.get("model") or args.get("path") or data.get("model_name")
    if not pretrained:
        raise ResultsError(
            f"{path}: config.model_args does not name the model (expected 'pretrained=<model>[,peft=<adapter>]')"
        )
    info = data.get("mlalign") if isinstance(data.get("mlalign"), dict) else {}
    if isinstance(source := info.get("model_source"), dict):  # a converted GGUF file: named by file and sha256
        pretrained = source_name(source)
    seed = config.get("random_seed")
    subtasks = data.get("group_subtasks") if isinstance(data.get("group_subtasks"), dict) else {}
    named = [("model", pretrained), ("adapter", args.get("peft") or args.get("lora_local_path") or "")]
    named += [
        ("task", task)
        for task in [*results, *subtasks, *(c for cs in subtasks.values() if isinstance(cs, list) for c in cs)]
    ]
    for what, name in named:
        check_name(str(name), f"{path}: the {what}")
    run = Run(
        path=path,
        pretrained=str(pretrained),
        peft=args.get("peft") or args.get("lora_local_path"),  # hf, vllm
        lm_eval_version=version,
        precision=f"nf4-{info.get('nf4_preset') or 'mlalign'}" if info.get("load_in_4bit") else "full",
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )
    groups = {g for g, children in subtasks.items() if children} | set(data.get("groups") or {})
    parent = {child: g for g, children in subtasks.items() for child in children or ()}
    n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
    configs = data.get("configs") if isinstance(data.get("configs"), dict) else {}
    read = _RunFile(path, data, configs, n_samples, run.precision)
    plain = _plain_files(path.parent)
    for task, entry in results.items():
        parsed = split_task(task)
        level = LANGUAGE
        if parsed is None:
            cell = _ancestor_cell(task, parent)
            if task in groups and cell is None:
                parsed, level = (task, ""), GROUP
            elif cell is not None:
                parsed, level = split_task(cell), SUBTASK
            else:
                run.ignored_tasks.append(task)
                continue
        metrics, stderrs = read.metrics(task, entry, run.notes)
        if not metrics:
            if level == LANGUAGE:
                raise ResultsError(f"{path}: task {task!r} has no numeric 'metric,filter' values")
            continue
        leaves = _leaves(task, subtasks, groups) if task in groups else [task]
        counts = [n_samples.get(t) for t in leaves]
        n = sum(c["effective"] for c in counts) if all(_count(c) for c in counts) else entry.get("sample_len")
        if isinstance(n, bool) or not isinstance(n, int | float) or n < 1 or n != int(n):
            n = None
        files = [(t.removeprefix(task + "_") if t != task else "", _samples_file(path, t, plain)) for t in leaves]
        run.tasks[task] = TaskResult(
            task=task,
            family=parsed[0],
            lang=parsed[1],
            metrics=metrics,
            stderrs=stderrs,
            n=int(n) if n is not None else None,
            samples=[(prefix, str(f)) for prefix, f in files if f is not None] if all(f for _, f in files) else [],
            level=level,
            settings=read.settings(leaves) if level == LANGUAGE else {},
        )
    if not run.cells:
        raise ResultsError(
            f"{path} holds no task of a known suite or named <family>_<language> (found: "
            f"{', '.join(sorted(results)) or 'none'}); evaluate the mlalign tasks, e.g. --tasks {', '.join([*FAMILIES, *SUPER_GROUPS])}, "
            "or lm-eval's multilingual suites (xnli, belebele, ...)"
        )
    return run


def _count(counts: Any) -> bool:
    return isinstance(counts, dict) and isinstance(counts.get("effective"), int)


def _count_of(counts: Any, key: str) -> int:
    """An n-samples count (`effective`, `original`) if it is one; 0 (unknown) for anything else."""
    value = counts.get(key) if isinstance(counts, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ancestor_cell(task: str, parent: dict[str, str]) -> str | None:
    """The language cell (e.g. the group `global_mmlu_de`) that `task` is a part of, through lm-eval's groups."""
    seen = set()
    while task in parent and task not in seen:
        seen.add(task)
        task = parent[task]
        if split_task(task) is not None:
            return task
    return None


def _leaves(group: str, subtasks: dict[str, Any], groups: set[str]) -> list[str]:
    """The tasks (not groups) below `group`, in lm-eval's order."""
    out: list[str] = []
    for child in subtasks.get(group) or ():
        out += _leaves(child, subtasks, groups) if child in groups else [child]
    return out


class _RunFile:
    """What a results file says about its tasks beyond the scores: checked metrics and comparable settings."""

    def __init__(self, path: Path, data: dict, configs: dict, n_samples: dict, precision: str) -> None:
        self.path, self.configs, self.n_samples, self.precision = path, configs, n_samples, precision
        self.shots = data.get("n-shot") if isinstance(data.get("n-shot"), dict) else {}
        self.hashes = data.get("task_hashes") if isinstance(data.get("task_hashes"), dict) else {}
        run_config = data.get("config") or {}
        self.template = {
            k: data.get(k) for k in ("chat_template_sha", "system_instruction_sha") if data.get(k) is not None
        } | ({"fewshot_as_multiturn": data.get("fewshot_as_multiturn")} if data.get("chat_template_sha") else {})
        self.fewshot_seed = run_config.get("fewshot_seed")

    def metrics(self, task: str, entry: dict, notes: list[str]) -> tuple[dict[str, float], dict[str, float | None]]:
        """`metric,filter` -> value and its stderr; a proportion outside [0, 1] or a negative stderr is refused."""
        metrics: dict[str, float] = {}
        stderrs: dict[str, float | None] = {}
        for key, value in entry.items():
            if "," not in key or "_stderr," in key:
                continue
            number = finite_number(value)
            if number is None:
                continue
            name, _, filt = check_name(key, f"{self.path}: {task}'s metric").partition(",")
            if name in UNBOUNDED_METRICS:
                notes.append(f"{self.path.name}: {task} {key} is not a proportion: not shown")
                continue
            if not 0.0 <= number <= 1.0:
                raise ResultsError(
                    f"{self.path}: {task} reports {key} = {value}, impossible for a proportion (0 to 1); "
                    "the file was edited or not written by lm-eval"
                )
            stderr = finite_number(entry.get(f"{name}_stderr,{filt}"))
            if stderr is not None and not 0.0 <= stderr <= 1.0:
                raise ResultsError(f"{self.path}: {task} reports {name}_stderr,{filt} = {stderr}, impossible (0 to 1)")
            metrics[key], stderrs[key] = number, stderr
        return metrics, stderrs

    def settings(self, leaves: list[str]) -> dict[str, str]:
        """SETTINGS of a cell (its leaf tasks': one task, or a per-language group's subject tasks)."""
        configs = [self.configs.get(t) or {} for t in leaves]
        shots = sorted(
            {str(self.shots.get(t, c.get("num_fewshot", "?"))) for t, c in zip(leaves, configs, strict=True)}
        )
        gen = sorted(
            {_canonical(c.get("generation_kwargs")) for c in configs if c.get("output_type") == "generate_until"}
        )
        counts = [self.n_samples.get(t) for t in leaves]
        effective, original = (sum(_count_of(c, key) for c in counts) for key in ("effective", "original"))
        prompt = {t: {k: c.get(k) for k in _PROMPT_KEYS} | {"version": (c.get("metadata") or {}).get("version")}
                  for t, c in zip(leaves, configs, strict=True)}  # fmt: skip
        if self.fewshot_seed is not None:  # which examples are drawn
            shots = [f"{s} (seed {self.fewshot_seed})" if s != "0" else s for s in shots]
        hashes = [self.hashes.get(t) for t in leaves]
        scoring = {_scoring(c) for c in configs}
        return {
            "shots": ", ".join(shots),
            "generation": "; ".join(gen),
            "items": f"{effective} of {original}" if original else "?",
            "prompt": digest({"tasks": prompt, "template": self.template})[:12],
            "task_hash": digest(hashes)[:12] if all(hashes) else "",
            "scoring": ", ".join(sorted(scoring)),
            "precision": self.precision,
        }


def _scoring(config: dict) -> str:
    """How a task's answers are scored: a generation task by its extraction rules (its filters' names, e.g.
    `extraction last_number`), a multiple-choice task by its label scoring (`mlalign eval --label-scoring`), and by
    upstream's gold rule where it ran (`--gold upstream`: `paper, gold upstream`)."""
    if config.get("output_type") == "generate_until":
        filters = [str(f.get("name")) for f in config.get("filter_list") or [] if isinstance(f, dict)]
        return f"extraction {'+'.join(filters) or 'none'}"
    metadata = config.get("metadata") or {}
    scoring = str(metadata.get("label_scoring") or "label")
    gold = metadata.get("gold")
    return scoring if gold in (None, "english") else f"{scoring}, gold {gold}"


def _canonical(value: Any) -> str:
    """Generation settings as one stable line: `max_gen_toks=48, until=['\\n\\n']`."""
    if not isinstance(value, dict):
        return "task default"
    return ", ".join(f"{k}={value[k]!r}" for k in sorted(value))

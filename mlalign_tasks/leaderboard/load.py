"""Read lm-eval output (results JSON + per-sample JSONL logs) into plain records, with clear errors."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mlalign_tasks import suites
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.gguf_models import source_name
from mlalign_tasks.languages import FAMILIES, LANGUAGES, SUPER_GROUPS
from mlalign_tasks.names import check_name
from mlalign_tasks.parallel import process_map

SUPPORTED_LM_EVAL = "0.4."  # the results layout read here is the one of lm-eval 0.4.x
REQUIRED_KEYS = ("results", "config", "lm_eval_version")
_DATE_ID = re.compile(r"_(\d{4}-\d{2}-\d{2}T[\d.-]+)\.json$")
_DOC_ID_KEY = b'{"doc_id": '
_TAIL_KEY = b'"filtered_resps": '
_FILTER_KEY = b', "filter": "'
_TAIL_WINDOW = 4096  # the fields after filtered_resps are short: search the line's end first
_FAMILY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a file-name part: no path separator, not hidden


class ResultsError(MlalignError):
    """A results file or directory that cannot be read as lm-eval output."""


LANGUAGE, GROUP, SUBTASK = "language", "group", "subtask"  # what a results entry is on the board
# Metrics that are not proportions: left off the board (it shows proportions in percent), with a note.
UNBOUNDED_METRICS = frozenset(
    {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "bleu", "chrf", "ter", "likelihood"}
)
# The settings that decide what a score means; models compared on a task must agree on each (17: like with like).
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
    label_scoring: str = "label"  # paper tasks: how the label words were scored (mlalign eval --label-scoring)
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
    suite in `mlalign_tasks.suites`, else `<family>_<lang>` with a language of our table (a family name is
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


BOARD_MARKERS = ("results.json", "index.html")  # files every board writes (and lm-eval never does)


def is_board(folder: Path) -> bool:
    """Whether `folder` is a board written by `mlalign leaderboard` (embedded inputs or not)."""
    return all((folder / name).is_file() for name in BOARD_MARKERS)


def _search(root: Path, skip: Path | None) -> tuple[list[Path], list[Path]]:
    """`results_*.json` under `root`, and the boards (or `skip`, resolved) below it that were not entered.

    `root` itself is searched even when it is (or lies inside) a board: naming a board's inputs rebuilds it.
    Hidden folders (a killed `mlalign eval`'s staging folder, `.git`) are not results and are not entered.
    """
    found: list[Path] = []
    left: list[Path] = []
    top = root.resolve()
    for folder, dirs, files in os.walk(top):  # like rglob: symlinked folders are not entered
        here = Path(folder)
        left += [here / d for d in dirs if here / d == skip or is_board(here / d)]
        dirs[:] = [d for d in dirs if here / d not in left and not d.startswith(".")]
        found += [inside(here / f, top) for f in files if f.startswith("results_") and f.endswith(".json")]
    return sorted(found), left


def inside(path: Path, folder: Path) -> Path:
    """`path`, resolved, when it lies in `folder` (resolved); a link or a name leading out of it is refused."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ResultsError(
            f"{path} leads outside its results folder {folder} (to {resolved}); the leaderboard reads only files "
            "inside the folders it is given: remove the link or copy the file there"
        )
    return resolved


def find_results_files(paths: list[Path], skip: Path | None = None) -> list[Path]:
    """Expand directories into their `results_*.json` files (searched recursively); keep files as given.

    A search does not enter a board folder (one with `BOARD_MARKERS`: its embedded inputs are copies) nor
    `skip` (the board being written) unless the directory searched lies inside it.
    """
    if not paths:
        raise ResultsError("no results given: pass lm-eval output directories or results_*.json files")
    skip = skip.resolve() if skip is not None else None
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            files, boards = _search(p, skip)
            if not files:
                raise ResultsError(
                    f"no lm-eval results file (results_*.json) under {p}"
                    + (f" outside the board(s) {', '.join(map(str, boards))}" if boards else "")
                    + ": pass the --output_path of `lm_eval ... --log_samples` or `mlalign eval`"
                    + (", or a board's inputs folder to rebuild it" if boards else "")
                )
            found.extend(files)
        elif p.is_file():
            found.append(p)
        else:
            raise ResultsError(f"results path {p} does not exist")
    return list(dict.fromkeys(f.resolve() for f in found))


def _number(value: Any) -> float | None:
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
            label_scoring=str(((configs.get(task) or {}).get("metadata") or {}).get("label_scoring", "label")),
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
            number = _number(value)
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
            stderr = _number(entry.get(f"{name}_stderr,{filt}"))
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
            "prompt": _digest({"tasks": prompt, "template": self.template}),
            "task_hash": _digest(hashes) if all(hashes) else "",
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


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


NO_ANSWER = -1  # the answer code of an item the model gave no answer to
_TEXT_ANSWER = 1 << 62  # text answers' codes lie above every choice index
_LEAF_SHIFT = 32  # the item key of a group's leaf task: its digest above the doc id


class Items(NamedTuple):
    """One cell's logged items as columns, sorted by item key: keys (doc ids; see `leaf_keys`), answer codes
    (`answer_code`) and scores (NaN where the metric is missing or not finite)."""

    keys: np.ndarray
    answers: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, keys: Any, answers: Any, scores: Any) -> Items:
        """Columns sorted by key; of items logged twice, the last one is kept (as lm-eval's reruns overwrite)."""
        keys = np.asarray(keys, dtype=np.int64)
        answers = np.asarray(answers, dtype=np.int64)
        scores = np.array(scores, dtype=np.float64)
        scores[~np.isfinite(scores)] = np.nan
        if keys.size > 1 and not (keys[1:] > keys[:-1]).all():
            order = np.argsort(keys, kind="stable")
            keys, answers, scores = keys[order], answers[order], scores[order]
            last = np.append(keys[1:] != keys[:-1], True)
            keys, answers, scores = keys[last], answers[last], scores[last]
        return cls(keys, answers, scores)

    @classmethod
    def join(cls, parts: list[Items]) -> Items:
        """The items of several files of one cell (a group's leaves, with distinct keys)."""
        if len(parts) == 1:
            return parts[0]
        return cls.of(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    @property
    def size(self) -> int:
        return int(self.keys.size)


def answer_code(answer: str | int | None) -> int:
    """An answer as an int64 that compares as the answer does: a choice index is itself, a text answer a 62-bit
    digest of it (above every choice index), no answer `NO_ANSWER`."""
    if answer is None:
        return NO_ANSWER
    if isinstance(answer, int):
        return answer
    digest = int.from_bytes(hashlib.blake2b(answer.encode(errors="surrogatepass"), digest_size=8).digest(), "big")
    return _TEXT_ANSWER | digest & (_TEXT_ANSWER - 1)


def leaf_keys(items: Items, leaf: str, path: str) -> Items:
    """A group's leaf task's items with keys made distinct from its other leaves': the leaf's digest above bit 32."""
    if not leaf:
        return items
    if items.size and not 0 <= items.keys.min() <= items.keys.max() < 1 << _LEAF_SHIFT:
        raise ResultsError(f"{path}: doc_id out of range (0 to 2**32 - 1) for a task of a group")
    tag = int.from_bytes(hashlib.blake2b(leaf.encode(), digest_size=4).digest(), "big") >> 1
    return items._replace(keys=items.keys + (tag << _LEAF_SHIFT))


def _normalise(text: Any) -> str | None:
    """An extracted answer in comparable form: numbers canonicalised, lm-eval's "[invalid]"/empty -> None."""
    if not isinstance(text, str):
        return None
    text = text.strip().replace(",", "").rstrip(".")
    if not text or text == "[invalid]":
        return None
    try:
        return repr(float(text))
    except ValueError:
        return text


def _answer(filtered: Any) -> int:
    """The model's answer code: the argmax choice for loglikelihood tasks, the normalised extracted text otherwise."""
    if isinstance(filtered, list) and filtered and all(isinstance(x, list) and len(x) == 2 for x in filtered):
        scores = [float(x[0]) for x in filtered]
        return max(range(len(scores)), key=scores.__getitem__)
    return answer_code(_normalise(filtered[0] if isinstance(filtered, list) and filtered else filtered))


def _fast_answer(resp: bytes) -> int:
    """`_answer` on the raw JSON text of filtered_resps, without a JSON parse in the common cases."""
    if resp.startswith(b'[["'):
        parts = resp.split(b'"')  # [[ "-1.5" , "False" ], [ "-2.0" ...: the log-likelihoods are parts[1::4]
        if len(parts) % 4 == 1:
            scores = list(map(float, parts[1::4]))  # ValueError (-> JSON parse of the file) if not numbers
            return scores.index(max(scores))
    elif resp.startswith(b'["') and resp.endswith(b'"]') and resp.count(b'"') == 2 and b"\\" not in resp:
        return answer_code(_normalise(resp[2:-2].decode("utf-8")))
    return _answer(json.loads(resp))


def _parse_fast(raw: bytes, metric: str, filt: str) -> Items | None:
    """Items of one filter, read from each line's tail with byte searches (no JSON parse of the big
    doc/arguments/resps fields); None when a line does not have lm-eval's layout (then JSON is used).

    lm-eval writes doc_id first and filtered_resps, filter, metrics, hashes and the metric values last; a
    key followed by an unescaped quote cannot occur inside a JSON string, so the last `"filtered_resps": `
    of a line is the record's own.
    """
    marker, wanted = f'"{metric}": '.encode(), filt.encode()
    keys: list[int] = []
    answers: list[int] = []
    scores: list[float] = []
    find, rfind, size, start = raw.find, raw.rfind, len(raw), 0
    id_len, tail_len, filter_len, marker_len = len(_DOC_ID_KEY), len(_TAIL_KEY), len(_FILTER_KEY), len(marker)
    try:
        while start < size:
            end = find(b"\n", start)
            end = size if end < 0 else end
            if end - start <= 1:
                start = end + 1
                continue
            key = rfind(_TAIL_KEY, max(start, end - _TAIL_WINDOW), end)
            key = rfind(_TAIL_KEY, start, end) if key < 0 else key
            sep = find(_FILTER_KEY, key, end)
            if key < 0 or sep < 0 or not raw.startswith(_DOC_ID_KEY, start):
                return None
            name_start = sep + filter_len
            name_end = find(b'"', name_start, end)
            if raw[name_start:name_end] == wanted:
                keys.append(int(raw[start + id_len : find(b",", start, end)]))
                answers.append(_fast_answer(raw[key + tail_len : sep]))
                value = rfind(marker, name_end, end)
                if value < 0:
                    scores.append(math.nan)
                else:
                    stop = find(b",", value + marker_len, end)
                    scores.append(float(raw[value + marker_len : (stop if stop >= 0 else end)].rstrip(b"} \r")))
            start = end + 1
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    try:
        return Items.of(keys, answers, scores)
    except OverflowError:  # a doc id beyond int64: the JSON parse reports it
        return None


def load_samples(path: str | Path, metric_key: str) -> Items:
    """Per-item answers and scores of one task's samples JSONL, for the filter of `metric_key` (metric,filter)."""
    metric, _, filt = metric_key.partition(",")
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ResultsError(f"cannot read samples file {path}: {e}") from e
    fast = _parse_fast(raw, metric, filt)
    if fast is not None:
        return fast
    keys, answers, scores = [], [], []
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ResultsError(f"{path}:{lineno} is not an lm-eval sample record ({e})") from None
        if not isinstance(rec, dict) or "doc_id" not in rec or "filtered_resps" not in rec:
            raise ResultsError(f"{path}:{lineno} lacks 'doc_id'/'filtered_resps' (lm-eval --log_samples layout)")
        if rec.get("filter", "none") == filt:
            score, doc_id = _number(rec.get(metric)), rec["doc_id"]
            if isinstance(doc_id, bool) or not isinstance(doc_id, int) or not -(1 << 63) <= doc_id < 1 << 63:
                raise ResultsError(f"{path}:{lineno}: doc_id {doc_id!r:.40} is not an lm-eval item number (an integer)")
            try:
                answers.append(_answer(rec["filtered_resps"]))
            except (ValueError, TypeError):
                raise ResultsError(
                    f"{path}:{lineno}: filtered_resps {rec['filtered_resps']!r:.80} is neither an answer nor "
                    "lm-eval's [log-likelihood, is-greedy] pairs"
                ) from None
            keys.append(doc_id)
            scores.append(math.nan if score is None else score)
    return Items.of(keys, answers, scores)


PARALLEL_MIN_FILES = 200  # below this a process pool costs more than it saves
PARALLEL_MIN_RUNS = 8


def _load_job(job: tuple[str, str]) -> Items:
    return load_samples(*job)


def load_all_samples(jobs: list[tuple[str, str]]) -> list[Items]:
    """`load_samples` for many (path, metric) jobs, in order; spread over the CPU cores when there are many."""
    return process_map(_load_job, jobs, PARALLEL_MIN_FILES)


def load_all_runs(paths: list[Path]) -> list[Run]:
    """`load_run` of many results files, in order; spread over the CPU cores when there are many."""
    return process_map(load_run, paths, PARALLEL_MIN_RUNS)

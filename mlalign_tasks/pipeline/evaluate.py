"""`mlalign eval`: run lm-eval's Python API on our task directory and print a per-language table.

Only ``tasks_yaml/`` is indexed (lm-eval's ~14k built-in configs are skipped unless asked), every
input is checked before the model is loaded, task data are loaded before the model too (so a data
error costs no model load), and results are written atomically in lm-eval's standard layout:
``<output_path>/<model_name_sanitized>/results_<date>.json`` and ``samples_<task>_<date>.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlalign_tasks import __version__
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import ADAPTER_FILE
from mlalign_tasks.files.output_dirs import remove_leftovers, try_lock
from mlalign_tasks.models.gguf_models import model_source, resolve_model, source_name
from mlalign_tasks.models.model_loading import Dtype, Nf4Preset, resolve_device
from mlalign_tasks.models.model_paths import check_local, check_model_arg, check_model_name
from mlalign_tasks.pipeline import request_cache
from mlalign_tasks.pipeline.request_cache import RequestCache
from mlalign_tasks.runtime.progress import lm_eval_bars
from mlalign_tasks.runtime.quiet import quiet_lm_eval_git
from mlalign_tasks.tasks import label_scoring, suites
from mlalign_tasks.tasks.label_scoring import Gold, Scoring
from mlalign_tasks.tasks.languages import (
    DEFAULT_FAMILIES,
    FAMILIES,
    LANGUAGES,
    SUPER_GROUPS,
    UnknownLanguageError,
    check_lang,
    task_name,
)

DEFAULT_TASKS = ",".join(DEFAULT_FAMILIES)
STAGING_PREFIX = ".mlalign-eval-"  # results are written here, inside --out, then moved into place
TASK_SPEC_HELP = (
    "Comma-separated: groups (mgsm_aligned, paper_aligned, toy_aligned), tasks (mgsm_aligned_de), or FAMILY:LANG "
    "with more languages following it, e.g. 'mgsm_aligned:de,fr,sw,paper_aligned:zh'."
)


def tasks_dir() -> Path:
    """The lm-eval task directory shipped with the package (pass it as --include_path)."""
    import mlalign_tasks_yaml

    return Path(mlalign_tasks_yaml.__file__).resolve().parent


# ----------------------------------------------------------------------------- input parsing


@dataclass
class Selection:
    """Selected languages per family, in table order; `full` families are run as lm-eval groups."""

    langs: dict[str, list[str]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)  # lm-eval tasks of other suites (--include-defaults)
    builtin: list[str] = field(default_factory=list)  # lm-eval's multilingual suites (mlalign_tasks.tasks.suites)

    def add(self, family: str, langs: tuple[str, ...] | list[str]) -> None:
        have = self.langs.setdefault(family, [])
        have.extend(lang for lang in langs if lang not in have)

    def full(self, family: str) -> bool:
        return set(self.langs.get(family, ())) == set(FAMILIES[family])

    def lm_eval_tasks(self) -> list[str]:
        """Names for lm-eval: super groups and families when complete (group means), else task names."""
        names, covered = [], set()
        for group, families in SUPER_GROUPS.items():
            if all(self.full(f) for f in families):
                names.append(group)
                covered.update(families)
        for family in self.langs:
            if family in covered:
                continue
            if self.full(family):
                names.append(family)
            else:
                names += [task_name(family, lang) for lang in FAMILIES[family] if lang in self.langs[family]]
        return names + self.builtin + self.other

    def add_builtin(self, suite: suites.Suite, langs: tuple[str, ...] | list[str]) -> None:
        """lm-eval names of a built-in suite's languages (its group, for the group score, when all are asked)."""
        names = [suite.task(lang) for lang in langs]
        if suite.group is not None and set(langs) == set(suite.languages):
            names = [suite.group]
        self.builtin += [n for n in names if n not in self.builtin]


def _valid_names() -> str:
    return (
        f"groups: {', '.join([*FAMILIES, *SUPER_GROUPS])}; tasks: <group>_<lang>, e.g. mgsm_aligned_de; lm-eval's "
        f"multilingual suites: {', '.join(s.name for s in suites.BUILTIN)} (and their tasks, e.g. xnli_de)"
    )


def parse_tasks(spec: str, allow_other: bool = False) -> Selection:
    """Parse a --tasks string (see TASK_SPEC_HELP) into a validated selection.

    With `allow_other` (--include-defaults), names outside our table are kept for lm-eval to resolve.
    """
    tasks = {task_name(f, lang): (f, lang) for f, langs in FAMILIES.items() for lang in langs}
    sel, current = Selection(), None  # current: families a following bare language code extends
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise MlalignError(f"no tasks given; {_valid_names()}")
    for item in items:
        name, colon, lang = item.partition(":")
        builtin = next((s for s in suites.BUILTIN if s.name == name), None)
        if builtin is not None and not colon:
            sel.add_builtin(builtin, builtin.languages)
            current = None
            continue
        if (cell := suites.lookup(name)) is not None and cell[0].builtin:
            sel.add_builtin(cell[0], [cell[1]])
            current = None
            continue
        if builtin is not None or (current and isinstance(current, suites.Suite) and name not in tasks and not colon):
            suite = builtin if builtin is not None else current
            code = (lang if colon else name).strip()
            if code not in suite.languages:
                raise UnknownLanguageError(
                    f"unknown {suite.name} language {code!r} in --tasks item {item!r}; it has {', '.join(suite.languages)}"
                )
            sel.add_builtin(suite, [code])
            current = suite
            continue
        if colon:
            families = SUPER_GROUPS.get(name) or ((name,) if name in FAMILIES else None)
            if families is None:
                raise MlalignError(f"unknown task group {name!r} in {item!r}; {_valid_names()}")
            current = families
            lang = lang.strip()
        elif name in FAMILIES or name in SUPER_GROUPS:
            for family in SUPER_GROUPS.get(name, (name,)):
                sel.add(family, FAMILIES[family])
            current = None
            continue
        elif name in tasks:
            family, lang = tasks[name]
            sel.add(family, [lang])
            current = None
            continue
        elif name in LANGUAGES and current is not None:
            lang = name
        elif allow_other and name not in LANGUAGES:
            sel.other.append(name)
            current = None
            continue
        else:
            where = " (a language code must follow a FAMILY:LANG item)" if name in LANGUAGES else ""
            raise MlalignError(f"unknown task {name!r}{where}; {_valid_names()}")
        for family in current:
            try:
                sel.add(family, [check_lang(lang, FAMILIES[family], what=f"{family} language")])
            except UnknownLanguageError as e:
                raise UnknownLanguageError(f"{e} (in --tasks item {item!r})") from None
    return sel


def parse_limit(value: str | None) -> int | float | None:
    """--limit: a positive integer (items per task), a fraction 0 < f <= 1 of the items, or 'none' / 'all'."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() in ("none", "all"):
        return None
    try:
        number = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (0 < number <= 1):
            raise MlalignError(
                f"--limit {value!r} is neither a positive integer (items per task) nor a fraction in (0, 1]"
            ) from None
        return None if number == 1 else number
    if number < 1:
        raise MlalignError(f"--limit {value!r} must be a positive integer (items per task) or a fraction in (0, 1]")
    return number


# lm-eval's own generation settings (its aliases of max_gen_toks included); the others go to transformers' generate.
LM_EVAL_GEN_KEYS = ("until", "max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens", "do_sample")
LENGTH_KEYS = LM_EVAL_GEN_KEYS[1:5]  # its names of the generation length
# Generation values checked as they are parsed (else they fail inside `generate`, once the model is loaded)
_GEN_COUNTS = (
    "max_gen_toks",
    "max_new_tokens",
    "max_tokens",
    "max_completion_tokens",
    "max_length",
    "num_beams",
    "num_return_sequences",
)  # positive integers
_GEN_PROPORTIONS = ("top_p", "min_p", "typical_p")  # 0 to 1
_GEN_AT_LEAST_ZERO = ("temperature", "top_k", "repetition_penalty", "min_length", "min_new_tokens")


def _gen_value_problem(key: str, value: Any, sampling: bool) -> str | None:
    """What is wrong with the --gen-kwargs value `value` of `key` (None: nothing we know of)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if key == "do_sample" and not isinstance(value, bool):
        return "must be true or false"
    if key in _GEN_COUNTS and (not number or value != int(value) or value < 1):
        return "must be a positive integer"
    if key in _GEN_PROPORTIONS and (not number or not 0 <= value <= 1):
        return "must be a number from 0 to 1"
    if key in _GEN_AT_LEAST_ZERO and (not number or value < 0):
        return "must be a number >= 0"
    if key == "temperature" and sampling and value == 0:
        return "must be above 0 with do_sample=true"
    return None


def parse_gen_kwargs(value: str | None) -> dict[str, Any] | None:
    """--gen-kwargs 'max_gen_toks=64,temperature=0' -> dict, as lm-eval parses it; each key lm-eval's or a
    transformers GenerationConfig setting (else a typo would surface as a traceback from `generate`)."""
    if not value:
        return None
    import difflib

    from lm_eval.utils import simple_parse_args_string
    from transformers import GenerationConfig

    bad = [p for p in value.split(",") if p.strip() and (p.count("=") < 1 or not p.split("=", 1)[0].strip())]
    if bad:
        raise MlalignError(f"--gen-kwargs {value!r}: expected key=value pairs separated by commas (bad: {bad[0]!r})")
    parsed = simple_parse_args_string(value)
    known = {*LM_EVAL_GEN_KEYS, *(k for k in GenerationConfig().to_dict() if not k.startswith("_"))}
    for key, setting in parsed.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise MlalignError(
                f"--gen-kwargs: unknown setting {key!r}; {hint}use lm-eval's ({', '.join(LM_EVAL_GEN_KEYS)}) or a "
                "transformers GenerationConfig field (e.g. temperature, top_p, num_beams)"
            )
        if problem := _gen_value_problem(key, setting, parsed.get("do_sample") is True):
            raise MlalignError(f"--gen-kwargs: {key}={setting!r} {problem}")
    return parsed


def parse_batch_size(value: str) -> int | str:
    if value == "auto" or value.startswith("auto:"):
        return value
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise MlalignError(f"--batch-size {value!r} must be a positive integer or 'auto'")
    return size


def check_model(model: str, adapter: str | None) -> None:
    """Fail early, with the fix, if the model or the adapter cannot be found or cannot be named to lm-eval."""
    from transformers import AutoConfig

    check_model_arg(model, "--model")
    check_model_name(model, "--model")
    if adapter is not None:
        check_model_arg(adapter, "--peft")
        check_local(adapter, "--peft", ADAPTER_FILE)
    try:
        AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise MlalignError(
            f"cannot load model {model!r} ({str(e).splitlines()[0]}); pass a directory saved with save_pretrained, "
            f"or a Hugging Face model id that is cached or downloadable (HF_HUB_OFFLINE=1 allows cached models only)"
        ) from None
    if adapter is None:
        return
    from peft import PeftConfig

    try:
        PeftConfig.from_pretrained(adapter)
    except (OSError, ValueError) as e:
        raise MlalignError(
            f"cannot load PEFT adapter {adapter!r} ({str(e).splitlines()[0]}); pass a directory with "
            f"adapter_config.json (e.g. one written by the trainer)"
        ) from None


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class EvalRequest:
    """Everything `mlalign eval` needs, already parsed."""

    model: str
    tasks: Selection
    adapter: str | None = None
    limit: int | float | None = None
    num_fewshot: int | None = None
    batch_size: int | str = 1
    device: str | None = None
    gen_kwargs: dict[str, Any] | None = None
    output_path: Path | None = None
    load_in_4bit: bool = False
    include_defaults: bool = False
    apply_chat_template: bool = False
    data_dir: Path | None = None
    seed: int = 0
    label_scoring: Scoring = Scoring.paper  # paper tasks' (mlalign_tasks.tasks.label_scoring)
    gold: Gold = Gold.english  # paper tasks: whose gold labels (see mlalign_tasks.tasks.label_scoring.Gold)
    dtype: Dtype = Dtype.auto  # weights' dtype (full precision only)
    nf4_preset: Nf4Preset = Nf4Preset.mlalign  # with load_in_4bit (see mlalign_tasks.models.model_loading)
    generation_cap: int | None = None  # new tokens per generation where gen_kwargs set none (the tiny model's own)
    use_cache: RequestCache | None = None  # answers of finished requests, replayed by a rerun (request_cache)

    @property
    def model_args(self) -> str:
        """lm-eval's model_args string naming base model, adapter and a chosen dtype (also for a pre-loaded model)."""
        dtype = f",dtype={self.dtype.value}" if self.dtype is not Dtype.auto else ""
        return f"pretrained={self.model}" + (f",peft={self.adapter}" if self.adapter else "") + dtype


MAX_SEED = 2**32 - 1  # numpy's seeds: lm-eval seeds python, numpy and torch with the one value


def _check_seed(req: EvalRequest) -> None:
    if not 0 <= req.seed <= MAX_SEED:
        raise MlalignError(f"--seed {req.seed} must be from 0 to {MAX_SEED} (numpy's seeds)")


def _check_fewshot(req: EvalRequest) -> None:
    k = req.num_fewshot
    if k is None:
        return
    from mlalign_tasks.tasks.math_tasks import MATH_FAMILIES, MAX_FEWSHOT, QALIGN_FAMILIES

    if k < 0:
        raise MlalignError(f"--num-fewshot {k} must be >= 0")
    if k and (zero_shot := [f for f in req.tasks.langs if f in QALIGN_FAMILIES]):
        raise MlalignError(f"--num-fewshot {k}: {', '.join(zero_shot)} follow QAlign's zero-shot protocol")
    math_selected = [f for f in req.tasks.langs if f in MATH_FAMILIES]
    if k > MAX_FEWSHOT and math_selected:
        raise MlalignError(
            f"--num-fewshot {k}: {', '.join(math_selected)} have {MAX_FEWSHOT} native exemplars per language; "
            f"use at most {MAX_FEWSHOT}"
        )


def make_lm(req: EvalRequest, device: str, token_sets: dict | None):
    """The lm-eval model `simple_evaluate` runs: lm-eval's HF model with a safe `--batch-size auto` (`MlalignLM`),
    scoring the paper tasks' labels over token sets when given them (`TokenSetLM`).

    In 4-bit the model is loaded here (lm-eval's own load_in_4bit fails on transformers 5), as `req.nf4_preset` says;
    the results still name base model and adapter through `req.model_args`.
    """
    from mlalign_tasks.models.hf_lm import MlalignLM
    from mlalign_tasks.models.token_set_lm import TokenSetLM

    cls, extra = (TokenSetLM, {"token_sets": token_sets}) if token_sets else (MlalignLM, {})
    if not req.load_in_4bit:
        return cls(
            pretrained=req.model, peft=req.adapter, batch_size=req.batch_size, device=device, dtype=req.dtype.value,
            **extra,
        )  # fmt: skip
    from transformers import AutoTokenizer

    from mlalign_tasks.models.model_loading import load_4bit

    model = load_4bit(req.model, req.adapter, req.nf4_preset, device)
    return cls(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(req.model), batch_size=req.batch_size, **extra)


# What a multi-process launcher (torchrun, which `accelerate launch` runs) tells its processes about the launch.
LAUNCH_VARIABLES = (
    "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
    "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
)  # fmt: skip


def leave_launch() -> bool:
    """Under `accelerate launch` or `torchrun` (WORLD_SIZE > 1), `mlalign eval` evaluates in its first process alone:
    True in the others, which are to exit without an error (a failing process makes the launcher print a traceback);
    the first forgets the launch and says so. Over several GPUs lm-eval's own data parallelism is the route."""
    world = os.environ.get("WORLD_SIZE", "1").strip()
    if world in ("", "0", "1"):
        return False
    if os.environ.get("RANK", "0").strip() not in ("", "0"):
        return True
    for name in LAUNCH_VARIABLES:
        os.environ.pop(name, None)
    from mlalign_tasks.runtime.progress import console

    console.print(
        f"note: mlalign eval runs in one process: the first of the {world} launched evaluates alone and the others "
        'stop; over several GPUs run `accelerate launch -m lm_eval --model hf --include_path "$(mlalign tasks-path)" '
        "...` (README: Faster evaluation)",
        soft_wrap=True,
    )
    return False


def check_single_process() -> None:
    """`mlalign eval` runs in one process: under `accelerate launch` or `torchrun` (WORLD_SIZE > 1) lm-eval would
    not split the items of a model loaded here (4-bit) and only its main process gets results, so the plain lm-eval
    route is named instead."""
    world = os.environ.get("WORLD_SIZE", "1")
    if world.strip() not in ("", "0", "1"):
        raise MlalignError(
            f"mlalign eval runs in one process, not under accelerate launch or torchrun (WORLD_SIZE={world}); over "
            'several GPUs run `accelerate launch -m lm_eval --model hf --include_path "$(mlalign tasks-path)" ...` '
            "(README: Faster evaluation)"
        )


def run(req: EvalRequest) -> dict[str, Any]:
    """Validate, evaluate and (if asked) save; return lm-eval's results dict (without samples)."""
    check_single_process()
    _check_seed(req)
    _check_fewshot(req)
    scoring = label_scoring.check_scoring(req.label_scoring)
    paper_tasks = bool(label_scoring.paper_families() & set(req.tasks.langs))  # the tasks label scoring applies to
    if scoring is not label_scoring.Scoring.label and req.apply_chat_template and paper_tasks:
        raise MlalignError(
            f"--label-scoring {scoring.value} scores the token after the prompt's opening quote, which a chat template "
            "moves into a user turn; drop --apply-chat-template (the paper scores the plain prompt)"
        )
    if not req.load_in_4bit and req.nf4_preset is not Nf4Preset.mlalign:
        raise MlalignError(f"--nf4-preset {req.nf4_preset.value} applies to 4-bit evaluation; add --load-in-4bit")
    if req.load_in_4bit and req.dtype is not Dtype.auto:
        raise MlalignError(f"--dtype {req.dtype.value} applies to full precision; 4-bit compute follows --nf4-preset")
    device = resolve_device(req.device, req.load_in_4bit)
    if req.output_path is not None and req.output_path.exists() and not req.output_path.is_dir():
        raise MlalignError(f"--out {req.output_path} is a file; pass a directory")
    req = replace(req, model=resolve_model(req.model))
    check_model(req.model, req.adapter)

    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    metadata = {"data_dir": str(req.data_dir)} if req.data_dir else None
    # lm-eval's ~14k built-in tasks are indexed (seconds) only when one of them is asked for
    builtins = req.include_defaults or bool(req.tasks.builtin)
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=builtins, metadata=metadata)
    names = req.tasks.lm_eval_tasks()
    if unknown := [n for n in req.tasks.other if n not in manager.all_tasks]:
        raise MlalignError(f"unknown lm-eval task(s) {', '.join(unknown)}; `lm_eval ls tasks` lists them")
    loaded = manager.load(names)  # reads and checks all task data before the model is loaded
    token_sets = None
    if paper_tasks:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(req.model) if scoring is not label_scoring.Scoring.label else None
        token_sets = label_scoring.apply_scoring(loaded["tasks"], tokenizer, scoring, req.seed, req.gold)
    built = [loaded["groups"][n] if n in loaded["groups"] else loaded["tasks"][n] for n in names]

    gen_kwargs, capped = req.gen_kwargs, None
    if req.generation_cap and not set(gen_kwargs or {}) & set(LENGTH_KEYS):  # no length given
        gen_kwargs, capped = {**(gen_kwargs or {}), "max_gen_toks": req.generation_cap}, req.generation_cap
    cache = None
    if req.use_cache is not None:
        cache = request_cache.prepare(req.use_cache, request_cache.answer_key(req, device, token_sets))
    lm = make_lm(req, device, token_sets)
    staging, created, lock = None, False, None
    if req.output_path is not None:
        created = not req.output_path.exists()
        req.output_path.mkdir(parents=True, exist_ok=True)
        remove_leftovers(req.output_path, f"{STAGING_PREFIX}*")  # of killed runs; a live run holds its lock
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=req.output_path))
        lock = try_lock(staging)
    try:
        tracker = EvaluationTracker(output_path=str(staging)) if staging else None
        with lm_eval_bars(), quiet_lm_eval_git():
            results = simple_evaluate(
                model=lm,
                model_args=req.model_args,
                tasks=built,
                num_fewshot=req.num_fewshot,
                batch_size=req.batch_size,
                device=device,
                limit=req.limit,
                gen_kwargs=gen_kwargs,
                log_samples=staging is not None,
                evaluation_tracker=tracker,
                task_manager=manager,
                use_cache=cache,
                apply_chat_template=req.apply_chat_template,
                random_seed=req.seed,
                numpy_random_seed=req.seed,
                torch_random_seed=req.seed,
            )
        if results is None:
            raise MlalignError("lm-eval returned no results (not the main process)")
        results["mlalign"] = {
            "version": __version__,
            "tasks": names,
            "load_in_4bit": req.load_in_4bit,
            "nf4_preset": req.nf4_preset.value if req.load_in_4bit else None,
            # how the paper tasks' labels were scored (None: no paper task in this run)
            "label_scoring": req.label_scoring if paper_tasks else None,
            "gold": req.gold.value if paper_tasks else None,
            "generation_cap": capped,  # the model's own max_gen_toks (the tiny model's), None: the tasks' or given
            "model_source": model_source(req.model),  # the GGUF file a converted model came from
        }
        samples = results.pop("samples", None)
        if tracker is not None:
            _save(tracker, results, samples, staging, req.output_path)
        return results
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created:  # only while empty: another run's results or the user's files may have come meanwhile
            with contextlib.suppress(OSError):
                req.output_path.rmdir()
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def _save(tracker, results: dict, samples: dict | None, staging: Path, output_path: Path) -> None:
    """Write results and samples into `staging`, check that each is whole (lm-eval logs a failed write and goes
    on), then move them into place (samples first; a failure removes the ones moved)."""
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    model_dir = staging / str(tracker.general_config_tracker.model_name_sanitized)
    written = sorted(model_dir.glob("*.json*"))
    result_files = [p for p in written if p.name.startswith("results_")]
    expected = {f"samples_{task}_{tracker.date_id}.jsonl": len(samples[task]) for task in results["configs"]}
    if len(result_files) != 1 or len(written) != len(expected) + 1:
        raise MlalignError(f"lm-eval could not write its results into {output_path}; check free space and permissions")
    for path in written:
        if not _whole(path, expected.get(path.name)):
            raise MlalignError(
                f"lm-eval could not write {path.name} in full into {output_path}; check free space and permissions"
            )
    target = output_path / model_dir.name
    made = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    moved: list[Path] = []
    try:
        for p in sorted(written, key=lambda p: p.name.startswith("results_")):
            os.replace(p, target / p.name)
            moved.append(target / p.name)
    except BaseException:
        for p in moved:
            p.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    results["mlalign"]["results_file"] = str(target / result_files[0].name)


def _whole(path: Path, lines: int | None) -> bool:
    """Whether `path` is complete: the results JSON parses; a samples file holds `lines` lines, each one JSON."""
    try:
        with path.open(encoding="utf-8") as f:
            if lines is None:
                json.load(f)
                return True
            return sum(1 for line in f if line.endswith("\n") and json.loads(line) is not None) == lines
    except (ValueError, OSError):
        return False


# ----------------------------------------------------------------------------- reporting


def task_metrics(results: dict, task: str) -> list[tuple[str, float]]:
    """(metric key, value) of a task's first config metric under each of its filters, e.g.
    [('exact_match,qalign', 0.5), ('exact_match,last_number', 0.25)]."""
    scores = results.get("results", {}).get(task) or results.get("groups", {}).get(task)
    config = results.get("configs", {}).get(task, {})
    metrics = [m["metric"] for m in config.get("metric_list", [])] or ["exact_match", "acc"]
    for metric in metrics:
        found = [
            (key, float(value))
            for key, value in (scores or {}).items()
            if key.startswith(f"{metric},") and "_stderr" not in key and isinstance(value, (int, float))
        ]
        if found:
            return found
    return []


def primary_metric(results: dict, task: str) -> tuple[str, float] | None:
    """(metric key, value) of the first metric of a task's config, e.g. ('exact_match,last_number', 0.25)."""
    found = task_metrics(results, task)
    return found[0] if found else None


def score_table(results: dict, selection: Selection):
    """A rich table: rows = languages, columns = families (one per filter where a family has several, e.g. QAlign's
    two extractions), last row = mean over the languages."""
    from rich.table import Table

    columns: list[tuple[str, str]] = []  # (family, metric key)
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for family in selection.langs:
        for lang in selection.langs[family]:
            for key, value in task_metrics(results, task_name(family, lang)):
                if (family, key) not in cells:
                    columns.append((family, key))
                cells.setdefault((family, key), {})[lang] = value
    limit = results.get("config", {}).get("limit")
    title = str(results.get("config", {}).get("model_args") or results.get("model_name"))
    if source := results.get("mlalign", {}).get("model_source"):  # a GGUF file: named as the board names it
        title = source_name(source)
    scoring = results.get("mlalign", {}).get("label_scoring")
    caption = f"scores in % (limit: {limit or 'all'} per language" + (
        f"; labels: {scoring} scoring)" if scoring else ")"
    )
    several = {f for f in selection.langs if sum(c[0] == f for c in columns) > 1}
    headers = [f"{f} ({key.partition(',')[2]})" if f in several else f for f, key in columns]
    table = Table("lang", *headers, title=title, caption=caption)
    langs = {lang for family in selection.langs for lang in selection.langs[family]}
    for lang in (code for code in LANGUAGES if code in langs):
        table.add_row(lang, *(f"{100 * cells[c][lang]:.1f}" if lang in cells[c] else "" for c in columns))
    means = []
    for family, key in columns:
        group = results.get("groups", {}).get(family)
        if group and isinstance(group.get(key), (int, float)):
            means.append(group[key])
        else:
            means.append(sum(cells[(family, key)].values()) / len(cells[(family, key)]))
    table.add_section()
    table.add_row("mean", *(f"{100 * m:.1f}" for m in means), style="bold")
    return table


def builtin_cell(name: str) -> bool:
    """Whether `name` is one language of one of lm-eval's multilingual suites (mlalign_tasks.tasks.suites)."""
    cell = suites.lookup(name)
    return cell is not None and cell[0].builtin


def other_table(results: dict, names: list[str]):
    """A rich table of the primary metric of lm-eval tasks outside our families."""
    from rich.table import Table

    table = Table("task", "metric", "score (%)", title="other lm-eval tasks")
    for name in names:
        if found := primary_metric(results, name):
            table.add_row(name, found[0], f"{100 * found[1]:.1f}")
    return table


def quiet_lm_eval(verbose: bool) -> None:
    """lm-eval logs a warning per task; keep only errors unless asked."""
    logging.getLogger("lm_eval").setLevel(logging.INFO if verbose else logging.ERROR)

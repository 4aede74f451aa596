"""The whole study in one resumable run: data -> question-aligned training -> evaluation -> leaderboard -> analyses.

With no arguments it runs the embedded default offline on CPU: the toy world (`BUILTIN[TOY]`: its pretrained
model, question alignment on two languages of one family, every toy language evaluated). `--model tiny` runs the
real benchmarks' machinery on the tiny random-weight model instead (`BUILTIN[TINY]`). With a recipe or a real model
id the same stages run at full size (`FULL_SCALE`, and the recipe's training data) unless the user asks for less.
The command line's values are defaulted once, from one table (`BUILTIN`, `REAL`), into the frozen `StudyConfig`
(`configure`); `plan` resolves what the stages share (the model, the trainer's parsed options), and one function
per stage (`model_stage` ... `pca_stage`) says what it reads, runs and writes. Every stage is skipped when its
outputs exist, verify, and match its configuration hash (`mlalign_tasks.pipeline.stages`).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

from mlalign_trainer import recipes, sft
from mlalign_trainer.choices import QTSource

from mlalign_tasks.analysis.protocols import PaperTask
from mlalign_tasks.errors import Interrupted, MlalignError
from mlalign_tasks.files.atomic import write_json_atomic, write_text_atomic
from mlalign_tasks.files.output_dirs import check_replaceable, exclusive
from mlalign_tasks.models import tiny_model
from mlalign_tasks.models.gguf_models import resolve_model
from mlalign_tasks.models.model_loading import ModelSpec, Nf4Preset, resolve_device
from mlalign_tasks.models.model_paths import check_model_arg, check_model_name
from mlalign_tasks.pipeline.stages import Stage, StageResult, run_stages
from mlalign_tasks.tasks.label_scoring import Gold, Scoring

if TYPE_CHECKING:
    from mlalign_trainer.config import QTArguments, QTConfig, QTModelConfig

    from mlalign_tasks.pipeline.evaluate import Selection

TOY, TINY = "toy", "tiny"  # the models mlalign builds itself offline (`BUILTIN`)
STUDY_FILE = "study.json"  # the options of the last run: marks a folder as an `mlalign run` folder
BOARD_RECORD = "mlalign_study.json"  # in a board `mlalign run` published: what the run computed (`computed`)
COMPUTED_KEY = "computed"  # in STUDY_FILE: `computed`'s record
NOT_COMPUTED = ("out", "board", "device", "data_dir", "defaulted")  # options that leave the results as they are
LOCK_FILE = ".mlalign-run.lock"


SEED = 0  # the run's seed unless given or named by its recipe: every mlalign command's


@dataclass(frozen=True)
class Scale:
    """The sizes of a run where the user gives none (None: all, or the task's own)."""

    examples_per_language: int | None  # training pairs per language (None: every usable pair)
    eval_limit: int | float | None  # evaluation items per task (None: every item)
    max_gen_toks: int | None  # new tokens per MGSM/MSVAMP item (None: each task's own length)
    analysis_limit: int | None  # items per language in the analyses (None: every item)
    batch_size: int | str  # evaluation batch size


DEMO_SCALE = Scale(
    examples_per_language=32, eval_limit=8, max_gen_toks=tiny_model.MAX_GEN_TOKS, analysis_limit=16,
    batch_size=tiny_model.EVAL_BATCH_SIZE,
)  # fmt: skip
TOY_SCALE = Scale(examples_per_language=1000, eval_limit=200, max_gen_toks=64, analysis_limit=64, batch_size=32)
FULL_SCALE = Scale(
    examples_per_language=None, eval_limit=None, max_gen_toks=None, analysis_limit=None, batch_size="auto"
)
RECIPE_DATA = ("languages", "qt_source", "examples_per_language", "seed")  # what a real run takes from its recipe


@dataclass(frozen=True)
class Defaults:
    """What a run on one kind of model does where the user says nothing: its sizes, training data, tasks and
    analyses."""

    scale: Scale
    languages: str
    qt_source: QTSource
    tasks: str
    analysis_task: PaperTask
    lens_langs: str
    pca_langs: str


@dataclass(frozen=True)
class Builtin(Defaults):
    """A model mlalign builds itself offline, and the study's defaults on it."""

    name: str  # what the board calls it
    folder: str  # its run and board folders: runs/FOLDER, leaderboards/FOLDER
    recipe: str  # its trainer recipe
    recipe_model: str  # the model_name_or_path its recipes name


# One table of the study's defaults: the built-in models' own, and a real model's (sizes: `FULL_SCALE` and its recipe).
BUILTIN = {
    # Question alignment on two Alvic languages: qac (same family) and the other families stay unseen.
    TOY: Builtin(
        name="toy world", folder="demo", recipe="toy-world", recipe_model="./toy-model", scale=TOY_SCALE,
        languages="qaa,qab", qt_source=QTSource.toy, tasks="toy_aligned", analysis_task=PaperTask.toy_sentiment,
        lens_langs="en,qaa,qab,qac,qba,qca", pca_langs="en,qaa,qab,qac,qba,qbb,qca,qcb",
    ),
    TINY: Builtin(
        name="tiny model", folder="tiny", recipe="cpu-smoke", recipe_model="./tiny-model", scale=DEMO_SCALE,
        languages="de,zh", qt_source=QTSource.gsm8k, tasks="mgsm_aligned,msvamp_aligned,paper_aligned",
        analysis_task=PaperTask.sentiment, lens_langs="en,de,zh,sw,ja", pca_langs="en,de,fr,hi,sw",
    ),
}  # fmt: skip
REAL = Defaults(
    scale=FULL_SCALE, languages="de,zh", qt_source=QTSource.gsm8k, tasks="mgsm_aligned,msvamp_aligned,paper_aligned",
    analysis_task=PaperTask.sentiment, lens_langs="en,de,zh,sw,ja", pca_langs="en,de,fr,hi,sw",
)  # fmt: skip
DEFAULT_MODEL = TOY  # `mlalign run` without --model or recipe


@dataclass(frozen=True)
class DataOptions:
    """Stage `data`: the question translations stage I trains on (the seed is the run's)."""

    qt_source: QTSource
    languages: str
    examples_per_language: int | None  # None: every usable pair

    def __post_init__(self) -> None:
        from mlalign_tasks.tasks.languages import parse_langs

        try:
            object.__setattr__(self, "qt_source", QTSource(self.qt_source))
        except ValueError:
            raise MlalignError(
                f"--qt-source {self.qt_source!r}: choose one of {', '.join(s.value for s in QTSource)}"
            ) from None
        object.__setattr__(self, "languages", ",".join(parse_langs(self.languages)))
        _check_positive("--examples-per-language", self.examples_per_language)


@dataclass(frozen=True)
class EvalOptions:
    """Stages `eval-base` and `eval-aligned` (the model, device, data folder and seed are the run's)."""

    tasks: str
    limit: int | float | None  # items per task, or a share of them (None: every item)
    max_gen_toks: int | None  # None: each task's own
    batch_size: int | str
    load_in_4bit: bool = False
    nf4_preset: Nf4Preset = Nf4Preset.mlalign  # 4-bit only (mlalign_tasks.models.model_loading)
    label_scoring: Scoring = Scoring.paper  # the paper tasks' (mlalign_tasks.tasks.label_scoring)
    gold: Gold = Gold.english  # whose gold labels the paper tasks compare with (recorded only when not the default)

    def __post_init__(self) -> None:
        from mlalign_tasks.tasks.label_scoring import check_scoring

        _ = self.selection  # parsed with the other options: an unknown task or language is refused here
        if self.limit is not None and not (self.limit >= 1 if isinstance(self.limit, int) else 0 < self.limit < 1):
            raise MlalignError(f"--limit {self.limit} must be a positive integer (items per task) or a fraction < 1")
        if not (isinstance(self.batch_size, int) and self.batch_size > 0 or _is_auto(self.batch_size)):
            raise MlalignError(f"--batch-size {self.batch_size!r} must be a positive integer or 'auto'")
        object.__setattr__(self, "label_scoring", check_scoring(self.label_scoring))
        try:
            object.__setattr__(self, "gold", Gold(self.gold))
        except ValueError:
            raise MlalignError(f"--gold {self.gold!r}: choose one of {', '.join(g.value for g in Gold)}") from None
        try:
            object.__setattr__(self, "nf4_preset", Nf4Preset(self.nf4_preset))
        except ValueError:
            choices = ", ".join(p.value for p in Nf4Preset)
            raise MlalignError(f"unknown --nf4-preset {self.nf4_preset!r}; choose one of {choices}") from None
        if self.nf4_preset is not Nf4Preset.mlalign and not self.load_in_4bit:
            raise MlalignError(f"--nf4-preset {self.nf4_preset.value} applies to 4-bit evaluation; add --load-in-4bit")
        _check_positive("--max-gen-toks", self.max_gen_toks, "the task's own")

    @cached_property
    def selection(self) -> Selection:
        """The tasks, parsed (`mlalign eval --tasks`'s syntax)."""
        from mlalign_tasks.pipeline.evaluate import parse_tasks

        return parse_tasks(self.tasks)


@dataclass(frozen=True)
class AnalysisOptions:
    """Stages `logit-lens` and `pca` (the seed is the run's)."""

    task: PaperTask
    limit: int | None  # items per language (None: every item)
    lens_langs: str
    pca_langs: str
    load_in_4bit: bool = False

    def __post_init__(self) -> None:
        from mlalign_tasks.analysis import paper_items
        from mlalign_tasks.tasks import paper_prompts

        task = PaperTask(self.task) if self.task == PaperTask.toy_sentiment else paper_prompts.check_task(self.task)
        object.__setattr__(self, "task", PaperTask(task))
        _check_positive("--analysis-limit", self.limit)
        for langs in (self.lens_langs, self.pca_langs):
            paper_items.check_inputs(self.task, langs, self.limit)


def _is_auto(batch_size: int | str) -> bool:
    """Whether a batch size is lm-eval's search for the largest that fits ('auto', or 'auto:N' searches)."""
    return batch_size == "auto" or str(batch_size).startswith("auto:")


def _check_positive(flag: str, value: int | None, zero: str = "all") -> None:
    """A size the command line gives as a number >= 0, where 0 means `zero` (None here)."""
    if value is not None and value < 1:
        raise MlalignError(f"{flag} {value} must be >= 0 (0: {zero})")


@dataclass(frozen=True)
class StudyConfig:
    """What `mlalign run` does, built and checked once by `configure` (which picks the sizes by the model)."""

    model: str | None  # None: the recipe's model_name_or_path, or the toy world's model without a recipe
    recipe: str | None
    data: DataOptions
    evaluation: EvalOptions
    analysis: AnalysisOptions
    seed: int = SEED  # data sampling, training, evaluation and analyses
    train_flags: tuple[str, ...] = ()  # the user's extra trainer flags, parsed once per training stage (`Training`)
    device: str | None = None
    out: Path | None = None  # None: runs/<folder_name>
    board: Path | None = None  # None: leaderboards/<folder_name>
    data_dir: str | None = None
    defaulted: dict[str, tuple[object, str]] = field(default_factory=dict)  # option -> (value, where it came from)

    def __post_init__(self) -> None:
        name = folder_name(self.model, self.recipe)
        object.__setattr__(self, "out", Path(self.out) if self.out is not None else Path("runs") / name)
        object.__setattr__(self, "board", Path(self.board) if self.board is not None else Path("leaderboards") / name)

    @cached_property
    def kind(self) -> str | None:
        """TOY or TINY on a model mlalign builds, else None (`builtin_kind`)."""
        return builtin_kind(self.model, self.recipe)


def chosen_sizes(model: str | None, recipe: str | None, given: dict[str, object]) -> dict[str, tuple[object, str]]:
    """The sizes the run picks itself (option -> (value, where it came from)), for the options not in `given`.

    On a built-in model its sizes and training data (`BUILTIN`); on a real model or recipe the full test sets, each
    task's own generation length, every analysis item, batch size auto, and the recipe's training data (languages,
    source, examples per language, seed) or, without a recipe, every usable pair.
    """
    kind = builtin_kind(model, recipe)
    if kind is not None:
        own, why = BUILTIN[kind], f"the {BUILTIN[kind].name}'s"
        chosen = {name: (value, why) for name, value in asdict(own.scale).items()}
        chosen |= {"languages": (own.languages, why), "qt_source": (own.qt_source.value, why)}
        return {name: pair for name, pair in chosen.items() if name not in given}
    chosen = {name: (value, "full size") for name, value in asdict(REAL.scale).items()}
    if recipe is not None:
        path = recipes.recipe_path(recipe)
        values = recipes.stage_flags(recipes.read_recipe(path), "question", path)  # a two-stage recipe: stage I's
        chosen |= {name: (values[name], f"recipe {recipe}") for name in RECIPE_DATA if name in values}
    return {name: pair for name, pair in chosen.items() if name not in given}


def configure(
    model: str | None = None,
    recipe: str | None = None,
    *,
    eval_tasks: str | None = None,
    load_in_4bit: bool = False,
    nf4_preset: Nf4Preset = Nf4Preset.mlalign,
    label_scoring: Scoring = Scoring.paper,
    gold: Gold = Gold.english,
    analysis_task: PaperTask | None = None,
    train_flags: tuple[str, ...] | list[str] = (),
    device: str | None = None,
    out: Path | None = None,
    board: Path | None = None,
    data_dir: str | None = None,
    **sized: object,
) -> StudyConfig:
    """The run's configuration, checked: the options given, and the sizes (`Scale`'s fields, languages, qt_source,
    seed) not given at the run's scale (`chosen_sizes`); a built-in model's tasks and analysis languages unless
    given (an analysis task given takes a real model's analysis languages)."""
    if unknown := set(sized) - {*asdict(DEMO_SCALE), *RECIPE_DATA}:
        raise TypeError(f"configure: unknown option(s) {sorted(unknown)}")
    kind = builtin_kind(model, recipe)
    own = BUILTIN[kind] if kind is not None else REAL
    chosen = chosen_sizes(model, recipe, sized)
    sizes = {"languages": REAL.languages, "qt_source": REAL.qt_source, "seed": SEED}
    sizes |= {name: value for name, (value, _) in chosen.items()} | sized
    langs = own if analysis_task is None else REAL
    return StudyConfig(
        model=model,
        recipe=recipe,
        data=DataOptions(sizes["qt_source"], sizes["languages"], sizes["examples_per_language"]),
        evaluation=EvalOptions(
            eval_tasks or own.tasks,
            sizes["eval_limit"],
            sizes["max_gen_toks"],
            sizes["batch_size"],
            load_in_4bit,
            nf4_preset,
            label_scoring,
            gold,
        ),
        analysis=AnalysisOptions(
            analysis_task or own.analysis_task, sizes["analysis_limit"], langs.lens_langs, langs.pca_langs, load_in_4bit
        ),
        seed=sizes["seed"],
        train_flags=tuple(train_flags),
        device=device,
        out=out,
        board=board,
        data_dir=data_dir,
        defaulted=chosen,
    )


# How `describe_defaults` names a value chosen by `configure`, and the flag that sets it.
_DESCRIBED = {
    "languages": ("--langs", lambda v: f"training languages {v}"),
    "qt_source": ("--qt-source", lambda v: f"{v} question translations"),
    "examples_per_language": ("--examples-per-language", lambda v: f"{v or 'all usable'} training pairs per language"),
    "eval_limit": ("--limit", lambda v: f"{v or 'all'} evaluation items per task"),
    "max_gen_toks": ("--max-gen-toks", lambda v: f"{v} new tokens" if v else "each task's own number of new tokens"),
    "analysis_limit": ("--analysis-limit", lambda v: f"{v or 'all'} analysis items per language"),
    "batch_size": ("--batch-size", lambda v: f"evaluation batch size {v}"),
    "seed": ("--seed", lambda v: f"seed {v}"),
}


def describe_defaults(chosen: dict[str, tuple[object, str]]) -> str | None:
    """One line naming each value the run chose itself (`chosen_sizes`), where it came from and the flag that
    changes it."""
    parts = [
        f"{_DESCRIBED[name][1](value)} ({source}; {_DESCRIBED[name][0]})" for name, (value, source) in chosen.items()
    ]
    return "chosen for this run: " + ", ".join(parts) if parts else None


def _recipe(cfg: StudyConfig) -> tuple[Path | None, dict]:
    """The trainer recipe (path and values): the given one, the built-in model's, or none for a real model without
    one (the trainer's defaults for the device then apply)."""
    if cfg.recipe is None and cfg.kind is None:
        return None, {}
    path = recipes.recipe_path(cfg.recipe or BUILTIN[cfg.kind].recipe)
    return path, recipes.read_recipe(path)


def _copy_adapter(run_dir: Path, dest: Path) -> None:
    """Copy the final adapter files of a training run (not its checkpoints) to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in run_dir.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, dest / item.name)


def builtin_kind(model: str | None, recipe: str | None) -> str | None:
    """TOY or TINY when the study runs on a model mlalign builds (named by --model, or by a recipe for it; no --model
    and no recipe: `DEFAULT_MODEL`), else None."""
    if model is not None:
        return model if model in BUILTIN else None
    if recipe is None:
        return DEFAULT_MODEL
    named = _recipe_model(recipe)
    return next((kind for kind, own in BUILTIN.items() if own.recipe_model == named), None)


def _recipe_model(recipe: str) -> str | None:
    """The model_name_or_path that `recipe` trains (its stage I's, for a two-stage recipe)."""
    path = recipes.recipe_path(recipe)
    return recipes.stage_flags(recipes.read_recipe(path), "question", path).get("model_name_or_path")


def folder_name(model: str | None, recipe: str | None) -> str:
    """The name of the run's default folders: a built-in model's (`Builtin.folder`), else the model's: a local
    folder's name, or a Hub id with `/` as `--` (as the Hub's cache names it)."""
    kind = builtin_kind(model, recipe)
    if kind is not None:
        return BUILTIN[kind].folder
    model = model or _recipe_model(recipe) or "model"
    local = Path(model).expanduser()
    name = local.resolve().name if local.exists() else model.strip("/").replace("/", "--")
    return re.sub(r"[^\w.-]+", "-", name) or "model"


def _evaluation_record(options: EvalOptions) -> dict:
    """The evaluation options as the records hold them: the gold rule only where it is not the default, as runs
    recorded them before it was an option."""
    record = asdict(options)
    if record["gold"] is Gold.english:
        del record["gold"]
    return record


def options_record(cfg: StudyConfig) -> dict:
    """The run's options as JSON values, as `STUDY_FILE` records them: the seed in each stage's options, where
    earlier runs recorded it (their records must stay equal for them to resume)."""
    record = asdict(cfg) | {"evaluation": _evaluation_record(cfg.evaluation)}
    seed = record.pop("seed")
    for options in ("data", "evaluation", "analysis"):
        record[options]["seed"] = seed
    return json.loads(json.dumps(record, default=str))


def computed(cfg: StudyConfig) -> dict:
    """What the run computes (its options but where it writes and runs, `NOT_COMPUTED`), as JSON values: a run
    folder or board holding another one's results is not replaced unasked."""
    record = options_record(cfg)
    record["model"] = cfg.kind or cfg.model
    return {key: value for key, value in record.items() if key not in NOT_COMPUTED}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two records, with both values."""
    found = []
    for key in dict.fromkeys([*new, *old]):  # in the order of the options (model first)
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key} {a} -> {b}")
    return found


def check_same_run(record_file: Path, flag: str, cfg: StudyConfig, replace: bool) -> None:
    """Refuse (one line, nothing written) when `record_file` names another configuration than `cfg`'s, unless
    `replace`."""
    if replace or not record_file.is_file():
        return
    try:
        recorded = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, dict) and record_file.name == STUDY_FILE:  # the run's options, and what they compute
        recorded = recorded.get(COMPUTED_KEY)
    current = computed(cfg)
    if recorded == current:
        return
    changes = (
        _differences(recorded, current)
        if isinstance(recorded, dict)
        else [f"{record_file.name} records none: an earlier mlalign wrote it, or it is damaged"]
    )
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    raise MlalignError(
        f"{flag} {record_file.parent} holds the results of another configuration ({'; '.join(changes[:3])}{more}); "
        f"nothing was written: add --replace to replace them, or choose another {flag}"
    )


def check_config(cfg: StudyConfig, replace: bool = False) -> None:
    """Check what the options cannot check alone (device, data and output folders) before the first stage runs,
    so that no bad flag surfaces after hours of training; a run folder or board holding another configuration's
    results is refused unless `replace`."""
    from mlalign_tasks.files import data
    from mlalign_tasks.leaderboard.folder import check_board_folder

    resolve_device(cfg.device, cfg.evaluation.load_in_4bit)
    data.explicit_dir(cfg.data_dir)  # a --data-dir or MLALIGN_DATA_DIR that is not a folder
    for flag, path in (("--out", cfg.out), ("--board", cfg.board)):
        if any(p.exists() and not p.is_dir() for p in (path, *path.parents)):
            raise MlalignError(f"{flag} {path}: it or a parent folder is a file; choose a folder path")
    check_replaceable(cfg.out, "--out", (STUDY_FILE,), f"an `mlalign run` folder (no {STUDY_FILE})")
    board, out = cfg.board.resolve(), cfg.out.resolve()
    if board.is_relative_to(out) or out.is_relative_to(board):
        raise MlalignError(
            f"--board {cfg.board} and --out {cfg.out} overlap (a stage replaces its whole folder, the board too); "
            "choose a board folder outside --out"
        )
    check_board_folder(cfg.board, "--board")
    check_same_run(cfg.out / STUDY_FILE, "--out", cfg, replace)
    if not replace and cfg.board.is_dir() and any(cfg.board.iterdir()) and not (cfg.board / BOARD_RECORD).is_file():
        raise MlalignError(
            f"--board {cfg.board} holds a leaderboard that `mlalign run` did not publish; nothing was written: add "
            "--replace to replace it, or choose another --board"
        )
    check_same_run(cfg.board / BOARD_RECORD, "--board", cfg, replace)


@dataclass(frozen=True)
class Training:
    """One training stage's trainer options, parsed once by the trainer's parser: the recipe's, the study's
    `values` over them, the user's --train-flag over both."""

    name: str  # its stage: train, or train-response (QAlign's stage II)
    values: dict[str, object]  # the study's: the recipe stage, the base model, the data or stage I's adapter, the seed
    qt: QTArguments
    args: QTConfig
    model_args: QTModelConfig


@dataclass(frozen=True)
class Plan:
    """What the stages share, resolved once from the run's options before any stage runs."""

    cfg: StudyConfig
    model: str  # the base model: a built-in one's folder in --out, else --model or the recipe's, resolved
    recipe_file: Path | None
    recipe: dict
    question: Training  # stage I: question translation
    response: Training | None  # stage II (a two-stage recipe): question-answer pairs on stage I's adapter

    @property
    def last_train(self) -> str:
        return self.response.name if self.response else self.question.name

    @property
    def adapter(self) -> Path:
        """The adapter the run aligns the model with: its last training stage's."""
        return self.cfg.out / self.last_train / "adapter"

    @property
    def model_deps(self) -> tuple[str, ...]:
        """The stage that writes the base model (a built-in one), for the stages that read it."""
        return ("model",) if self.cfg.kind else ()


def _training(cfg: StudyConfig, name: str, recipe_file: Path | None, values: dict[str, object]) -> Training:
    """Parse the trainer's options of stage `name` (bad --train-flag values are refused here, before any stage)."""
    qt, args, model_args = sft.parse_args(
        list(cfg.train_flags), recipe_file, values | {"output_dir": str(cfg.out / name)}
    )
    return Training(name, values, qt, args, model_args)


def plan(cfg: StudyConfig) -> Plan:
    """Resolve the base model and the trainer's options of each training stage; refuse what `mlalign run` cannot
    train or evaluate."""
    recipe_file, recipe = _recipe(cfg)
    model = str(cfg.out / "model") if cfg.kind else (cfg.model or recipe.get("model_name_or_path"))
    if not model:
        raise MlalignError(f"recipe {recipe_file} names no model_name_or_path; give --model")
    if not cfg.kind:
        flag = "--model" if cfg.model else f"the model of recipe {cfg.recipe}"
        model = resolve_model(model, flag)
        check_model_name(model, flag)
    check_model_arg(model, "--out" if cfg.kind else "--model")
    two_stage = "response" in recipes.stages(recipe)  # QAlign's: question translation, then question-answer data
    stage = {"stage": "question"} if two_stage else {}
    base = {"model_name_or_path": model}
    question = _training(
        cfg, "train", recipe_file, stage | base | {"dataset_path": str(cfg.out / "data"), "seed": cfg.seed}
    )
    if question.qt.mixture:
        raise MlalignError(
            f"--mixture {question.qt.mixture}: `mlalign run` builds stage I's data from --langs and --qt-source; train "
            "on one of the paper's mixtures with `mlalign train --mixture` and evaluate with `mlalign eval`"
        )
    if not question.model_args.use_peft:
        raise MlalignError(
            f"recipe {recipe_file} fine-tunes the whole model, and `mlalign run` evaluates LoRA adapters: train it with "
            "`mlalign train` and evaluate the model with `mlalign eval`, or choose a LoRA recipe (`mlalign recipes`)"
        )
    response = None
    if two_stage:  # stage II trains stage I's adapter on
        stage_one = {"init_from": str(cfg.out / "train" / "adapter"), "seed": cfg.seed}
        response = _training(cfg, "train-response", recipe_file, {"stage": "response"} | base | stage_one)
    study = Plan(cfg, model, recipe_file, recipe, question, response)
    check_model_arg(str(study.adapter), "--out")
    return study


def model_stage(study: Plan) -> Stage | None:
    """`model`: a built-in model, written into --out (the tiny model built from the run's seed, the toy world's
    copied from the package); none for a real model."""
    from mlalign_tasks.models import toy_model

    kind, seed = study.cfg.kind, study.cfg.seed
    if kind is None:
        return None

    def write(out_dir: Path, work_dir: Path) -> None:
        if kind == TINY:
            tiny_model.build_tiny_model(out_dir, seed)
        else:
            toy_model.install(out_dir)

    record = {"tiny": tiny_model.DEFAULT_SIZES, "seed": seed} if kind == TINY else {"toy": toy_model.packaged_record()}
    return Stage("model", record, write)


def data_stage(study: Plan) -> Stage:
    """`data`: stage I's question translations (--langs and --qt-source win over a recipe's), in the prompt format,
    cleaning and target language stage I trains with; writes the dataset the trainer reads."""
    options, question, seed = study.cfg.data, study.question.qt, study.cfg.seed
    shape = {name: getattr(question, name) for name in ("prompt_format", "clean_pairs", "target_language")}

    def build(out_dir: Path, work_dir: Path) -> None:
        from mlalign_trainer.qt_data import build_qt_dataset, save_build

        built = build_qt_dataset(
            options.qt_source, options.languages, options.examples_per_language, seed=seed,
            data_dir=study.cfg.data_dir, fmt=question.prompt_format, clean=question.clean_pairs,
            target=question.target_language,
        )  # fmt: skip
        save_build(built, out_dir)

    return Stage("data", asdict(options) | {"seed": seed} | shape, build)


def train_stage(study: Plan, training: Training, deps: tuple[str, ...]) -> Stage:
    """A training stage: the trainer on its options, resuming from the checkpoints of an interrupted attempt in the
    stage's work folder (mlalign_trainer.sft); writes the final adapter."""
    from mlalign_trainer.config import mlalign_defaults

    # The record earlier runs hashed: the study's values and the user's flags as the trainer's flags, and the
    # trainer's own defaults (changing one in a new release retrains).
    flags = [text for name, value in training.values.items() for text in (f"--{name}", str(value))]
    record = {"recipe": study.recipe, "flags": [*flags, *study.cfg.train_flags], "model": study.model}
    given = {"model_name_or_path"} | {
        name for name in ("languages",) if sft.on_command_line(study.cfg.train_flags, name)
    }

    def train(out_dir: Path, work_dir: Path) -> None:
        training.args.output_dir = str(work_dir)  # named by the stage's hash, known when it runs
        code = sft.train(training.qt, training.args, training.model_args, given)
        if code in (130, 143):  # Ctrl-C or SIGTERM: the trainer saved a checkpoint in `work_dir`, where a rerun resumes
            raise Interrupted
        if code != 0:
            raise MlalignError(f"training stopped (exit code {code}); rerun `mlalign run` to resume it")
        _copy_adapter(work_dir, out_dir / "adapter")

    return Stage(training.name, record | {"defaults": mlalign_defaults()}, train, deps=deps)


def _evaluate(study: Plan, adapter: Path | None, out_dir: Path, work_dir: Path) -> None:
    """Evaluate the base model, with `adapter` if given, on the run's tasks into `out_dir` (lm-eval's files)."""
    from mlalign_tasks.pipeline import evaluate

    options = study.cfg.evaluation
    evaluate.quiet_lm_eval(False)
    evaluate.run(
        evaluate.EvalRequest(
            model=study.model,
            tasks=options.selection,
            adapter=str(adapter) if adapter else None,
            limit=options.limit,
            batch_size=options.batch_size,
            device=study.cfg.device,
            gen_kwargs={"max_gen_toks": options.max_gen_toks} if options.max_gen_toks else None,
            output_path=out_dir,
            load_in_4bit=options.load_in_4bit,
            nf4_preset=options.nf4_preset,
            data_dir=study.cfg.data_dir,
            seed=study.cfg.seed,
            label_scoring=options.label_scoring,
            gold=options.gold,
        )
    )


def _eval_record(study: Plan) -> dict:
    """What an evaluation stage computes: the run's evaluation options and seed."""
    return _evaluation_record(study.cfg.evaluation) | {"seed": study.cfg.seed}


def eval_base_stage(study: Plan) -> Stage:
    """`eval-base`: the base model alone."""
    record = _eval_record(study) | {"model": study.model}
    return Stage("eval-base", record, partial(_evaluate, study, None), deps=study.model_deps)


def eval_aligned_stage(study: Plan) -> Stage:
    """`eval-aligned`: the base model with the run's final adapter."""
    return Stage(
        "eval-aligned", _eval_record(study), partial(_evaluate, study, study.adapter), deps=(study.last_train,)
    )


def eval_question_stage(study: Plan) -> Stage:
    """`eval-question` (two-stage recipes): stage I's adapter alone, so that the board shows what stage II adds."""
    adapter = study.cfg.out / study.question.name / "adapter"
    return Stage("eval-question", _eval_record(study), partial(_evaluate, study, adapter), deps=(study.question.name,))


def board_stage(study: Plan, evaluated: list[Path]) -> Stage:
    """`leaderboard`: the board of the `evaluated` stages' results, published in --board with the run's `computed`
    record; its manifest is written beside the stages, so that the board's regenerate command stays valid."""
    cfg, out = study.cfg, study.cfg.out
    stage_two = (study.response.qt.response_source, out / study.question.name / "adapter") if study.response else None
    manifest = board_manifest(cfg, study.model, study.adapter, stage_two)
    record = {"board": str(cfg.board), "manifest": manifest, "embed": False, "run": computed(cfg)}

    def publish(out_dir: Path, work_dir: Path) -> list[Path]:
        import yaml

        from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
        from mlalign_tasks.leaderboard.folder import board_files

        manifest_file = out / "leaderboard.yaml"
        write_text_atomic(manifest_file, yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
        # The per-sample logs hold benchmark items: keep them in the run directory, not in the published board.
        make_leaderboard(evaluated, cfg.board, manifest_file, BoardOptions(embed=False))
        write_text_atomic(cfg.board / BOARD_RECORD, json.dumps(record["run"], indent=1, sort_keys=True) + "\n")
        return [*board_files(cfg.board), cfg.board / BOARD_RECORD]  # not the board folder's other files (a .git)

    return Stage("leaderboard", record, publish, deps=tuple(path.name for path in evaluated))


def _analysis_record(study: Plan, langs: str) -> dict:
    """What an analysis stage computes: the options the two share, its languages and the run's seed."""
    shared = {k: v for k, v in asdict(study.cfg.analysis).items() if k not in ("lens_langs", "pca_langs")}
    return shared | {"seed": study.cfg.seed, "langs": langs}


def _aligned(study: Plan) -> ModelSpec:
    """The aligned model the analyses load: the base model with the run's final adapter."""
    return ModelSpec(
        study.model, str(study.adapter), study.cfg.device or "auto", load_in_4bit=study.cfg.analysis.load_in_4bit
    )


def lens_stage(study: Plan) -> Stage:
    """`logit-lens`: the aligned model's logit lens over layers; the toy reviews have English-label prompts only, so
    there mlalign's lens (English output) instead of the paper's."""
    from mlalign_tasks.analysis.protocols import LensProtocol

    options, cfg = study.cfg.analysis, study.cfg
    protocol = LensProtocol.english_output if options.task is PaperTask.toy_sentiment else LensProtocol.paper

    def lens(out_dir: Path, work_dir: Path) -> None:
        from mlalign_tasks.analysis.logit_lens import run_logit_lens

        run_logit_lens(
            _aligned(study), options.task.value, options.lens_langs, out_dir, limit=options.limit, seed=cfg.seed,
            data_dir=cfg.data_dir, protocol=protocol,
        )  # fmt: skip

    return Stage("logit-lens", _analysis_record(study, options.lens_langs), lens, deps=(study.last_train,))


def pca_stage(study: Plan) -> Stage:
    """`pca`: PCA of the aligned model's hidden states; of the toy reviews' sentences alone (their prompts are
    English-label ones), else of the paper's prompts."""
    from mlalign_tasks.analysis.protocols import PcaInput

    options, cfg = study.cfg.analysis, study.cfg
    source = PcaInput.sentence if options.task is PaperTask.toy_sentiment else PcaInput.prompt

    def pca(out_dir: Path, work_dir: Path) -> None:
        from mlalign_tasks.analysis.pca import run_pca

        run_pca(
            _aligned(study), options.pca_langs, out_dir, task=options.task.value, limit=options.limit, seed=cfg.seed,
            data_dir=cfg.data_dir, source=source,
        )  # fmt: skip

    return Stage("pca", _analysis_record(study, options.pca_langs), pca, deps=(study.last_train,))


def build_stages(cfg: StudyConfig, replace: bool = False) -> tuple[list[Stage], dict[str, Path]]:
    """The study's stages, in order, and the paths of its main artefacts (`replace`: see `check_config`)."""
    check_config(cfg, replace)
    study = plan(cfg)
    out = cfg.out
    trains = [train_stage(study, study.question, ("model", "data") if cfg.kind else ("data",))]
    evals = [eval_base_stage(study), eval_aligned_stage(study)]
    if study.response:
        trains.append(train_stage(study, study.response, (study.question.name,)))
        evals.append(eval_question_stage(study))
    evaluated = [out / stage.name for stage in evals]
    stages = [
        *filter(None, [model_stage(study)]),
        data_stage(study),
        *trains,
        *evals,
        board_stage(study, evaluated),
        lens_stage(study),
        pca_stage(study),
    ]
    paths = {"model": Path(study.model), "dataset": out / "data", "adapter": study.adapter}
    paths |= {path.name: path for path in evaluated} | {"leaderboard": cfg.board}
    return stages, paths | {"logit-lens": out / "logit-lens", "pca": out / "pca"}


def board_manifest(cfg: StudyConfig, model: str, adapter: Path, stage_two: tuple[str, Path] | None = None) -> dict:
    """Title, description and model names of the study's leaderboard (`stage_two`: stage II's data and stage I's
    adapter, which the board shows too, if the run has two stages)."""
    kind = cfg.kind
    stage_two_clause = (
        f", then on English question-answer pairs ({stage_two[0]}), QAlign's two stages; the board shows stage I's "
        "adapter alone beside them"
        if stage_two
        else ""
    )
    if kind == TOY:
        from mlalign_tasks.tasks.toy_world import describe

        title = "mlalign demo: question alignment in the toy world"
        description = (
            f"{describe()} Base: the toy model; aligned: an adapter trained by `mlalign run` on question translation "
            f"{'' if stage_two else 'only '}({cfg.data.languages} to English, no answers){stage_two_clause}. Compare "
            "the seen languages with the unseen ones of their family (which share part of their words) and of the other families (which share none). What was "
            "tried, and where the effect does not appear (another pretraining seed, a world whose families share more "
            "words): mlalign's README, section The toy world."
        )
    elif kind == TINY:
        title = "mlalign demo: tiny random-weight model"
        description = (
            f"Base: the tiny model; aligned: a LoRA adapter trained by `mlalign run` for a few CPU steps on "
            f"{cfg.data.languages} question translation ({cfg.data.qt_source})"
        )
    else:
        title = f"{model}: base vs question-aligned"
        description = (
            f"Base model {model} and its question-aligned LoRA adapter, trained on {cfg.data.languages} "
            f"question translation ({cfg.data.qt_source})"
        )
    if kind != TOY:
        description += stage_two_clause + "."
    aligned_name = f"{kind}-aligned" if kind else f"{Path(model).name} + QAlign"
    stage_one = [{"match": str(stage_two[1]), "name": f"{aligned_name} (stage I)", "base": model}] if stage_two else []
    return {
        "title": title,
        "description": description,
        "models": [
            {"match": model, "name": f"{kind}-base" if kind else f"{Path(model).name} (base)"},
            *stage_one,
            {"match": str(adapter), "name": aligned_name, "base": model},
        ],
    }


def run_study(cfg: StudyConfig, on_start=None, replace: bool = False) -> tuple[list[StageResult], dict[str, Path]]:
    """Run (or resume) the study; returns the stage results and the artefact paths.

    One run at a time owns `cfg.out`: a second one started meanwhile stops with an error and writes nothing. A run
    folder or board holding another configuration's results is refused unless `replace`.
    """
    stages, paths = build_stages(cfg, replace)
    with exclusive(cfg.out / LOCK_FILE, f"--out {cfg.out}"):
        write_json_atomic(cfg.out / STUDY_FILE, options_record(cfg) | {COMPUTED_KEY: computed(cfg)})
        return run_stages(stages, cfg.out, on_start=on_start), paths

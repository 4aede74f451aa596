"""The whole study in one resumable run: data -> question-aligned training -> evaluation -> leaderboard -> analyses.

With no arguments it runs the embedded default offline on CPU: the toy world (`BUILTIN[TOY]`: its pretrained
model, question alignment on two languages of one family, every toy language evaluated). `--model tiny` runs the
real benchmarks' machinery on the tiny random-weight model instead (`BUILTIN[TINY]`). With a recipe or a real model
id the same stages run at full size (`FULL_SCALE`, and the recipe's training data) unless the user asks for less.
Every stage is skipped when its outputs exist, verify, and match its configuration hash.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlalign_trainer import recipes, sft
from mlalign_trainer.choices import QTSource

from mlalign_tasks import tiny_model
from mlalign_tasks.analysis.protocols import PaperTask
from mlalign_tasks.atomic import write_json_atomic, write_text_atomic
from mlalign_tasks.errors import Interrupted, MlalignError
from mlalign_tasks.gguf_models import resolve_model
from mlalign_tasks.label_scoring import Scoring
from mlalign_tasks.model_loading import ModelSpec, Nf4Preset, resolve_device
from mlalign_tasks.model_paths import check_model_arg, check_model_name
from mlalign_tasks.output_dirs import check_replaceable, exclusive
from mlalign_tasks.stages import Stage, StageResult, run_stages

TOY, TINY = "toy", "tiny"  # the models mlalign builds itself offline (`BUILTIN`)
STUDY_FILE = "study.json"  # the options of the last run: marks a folder as an `mlalign run` folder
BOARD_RECORD = "mlalign_study.json"  # in a board `mlalign run` published: what the run computed (`computed`)
COMPUTED_KEY = "computed"  # in STUDY_FILE: `computed`'s record
NOT_COMPUTED = ("out", "board", "device", "data_dir", "defaulted")  # options that leave the results as they are
LOCK_FILE = ".mlalign-run.lock"


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
class Builtin:
    """A model mlalign builds itself offline, and the study's defaults on it."""

    name: str  # what the board calls it
    folder: str  # its run and board folders: runs/FOLDER, leaderboards/FOLDER
    recipe: str  # its trainer recipe
    recipe_model: str  # the model_name_or_path its recipes name
    scale: Scale
    languages: str
    qt_source: QTSource
    tasks: str
    analysis_task: PaperTask
    lens_langs: str
    pca_langs: str


BUILTIN = {
    # Question alignment on two Alvic languages: qac (same family) and the other families stay unseen.
    TOY: Builtin(
        "toy world", "demo", "toy-world", "./toy-model", TOY_SCALE, "qaa,qab", QTSource.toy, "toy_aligned",
        PaperTask.toy_sentiment, "en,qaa,qab,qac,qba,qca", "en,qaa,qab,qac,qba,qbb,qca,qcb",
    ),
    TINY: Builtin(
        "tiny model", "tiny", "cpu-smoke", "./tiny-model", DEMO_SCALE, "de,zh", QTSource.gsm8k,
        "mgsm_aligned,msvamp_aligned,paper_aligned", PaperTask.sentiment, "en,de,zh,sw,ja", "en,de,fr,hi,sw",
    ),
}  # fmt: skip
DEFAULT_MODEL = TOY  # `mlalign run` without --model or recipe


@dataclass(frozen=True)
class DataOptions:
    """Stage `data`: the question translations stage I trains on."""

    qt_source: QTSource = QTSource.gsm8k
    languages: str = "de,zh"
    examples_per_language: int | None = DEMO_SCALE.examples_per_language
    seed: int = 0

    def __post_init__(self) -> None:
        from mlalign_tasks.languages import parse_langs

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
    """Stages `eval-base` and `eval-aligned` (the model, device and data folder are the run's)."""

    tasks: str = "mgsm_aligned,msvamp_aligned,paper_aligned"
    limit: int | float | None = DEMO_SCALE.eval_limit
    max_gen_toks: int | None = DEMO_SCALE.max_gen_toks
    batch_size: int | str = DEMO_SCALE.batch_size
    load_in_4bit: bool = False
    nf4_preset: Nf4Preset = Nf4Preset.mlalign  # 4-bit only (mlalign_tasks.model_loading)
    label_scoring: Scoring = Scoring.paper  # the paper tasks' (mlalign_tasks.label_scoring)
    seed: int = 0

    def __post_init__(self) -> None:
        from mlalign_tasks import evaluate
        from mlalign_tasks.label_scoring import check_scoring

        evaluate.parse_tasks(self.tasks)
        evaluate.parse_limit(None if self.limit is None else str(self.limit))
        evaluate.parse_batch_size(str(self.batch_size))
        object.__setattr__(self, "label_scoring", check_scoring(self.label_scoring))
        try:
            object.__setattr__(self, "nf4_preset", Nf4Preset(self.nf4_preset))
        except ValueError:
            choices = ", ".join(p.value for p in Nf4Preset)
            raise MlalignError(f"unknown --nf4-preset {self.nf4_preset!r}; choose one of {choices}") from None
        if self.nf4_preset is not Nf4Preset.mlalign and not self.load_in_4bit:
            raise MlalignError(f"--nf4-preset {self.nf4_preset.value} applies to 4-bit evaluation; add --load-in-4bit")
        _check_positive("--max-gen-toks", self.max_gen_toks, "the task's own")


@dataclass(frozen=True)
class AnalysisOptions:
    """Stages `logit-lens` and `pca`."""

    task: PaperTask = PaperTask.sentiment
    limit: int | None = DEMO_SCALE.analysis_limit
    lens_langs: str = "en,de,zh,sw,ja"
    pca_langs: str = "en,de,fr,hi,sw"
    load_in_4bit: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        from mlalign_tasks import paper_prompts
        from mlalign_tasks.analysis import paper_items

        task = PaperTask(self.task) if self.task == PaperTask.toy_sentiment else paper_prompts.check_task(self.task)
        object.__setattr__(self, "task", PaperTask(task))
        _check_positive("--analysis-limit", self.limit)
        for langs in (self.lens_langs, self.pca_langs):
            paper_items.check_inputs(self.task, langs, self.limit)


def _check_positive(flag: str, value: int | None, zero: str = "all") -> None:
    """A size the command line gives as a number >= 0, where 0 means `zero` (None here)."""
    if value is not None and value < 1:
        raise MlalignError(f"{flag} {value} must be >= 0 (0: {zero})")


@dataclass(frozen=True)
class StudyConfig:
    """What `mlalign run` does, built and checked once; the defaults are the embedded demo (`configure` picks the
    sizes by the model)."""

    model: str | None = None  # None: the recipe's model_name_or_path, or the toy world's model without a recipe
    recipe: str | None = None
    data: DataOptions = DataOptions()
    evaluation: EvalOptions = EvalOptions()
    analysis: AnalysisOptions = AnalysisOptions()
    train_flags: tuple[str, ...] = ()
    device: str | None = None
    out: Path | None = None  # None: runs/<folder_name>
    board: Path | None = None  # None: leaderboards/<folder_name>
    data_dir: str | None = None
    defaulted: dict[str, tuple[object, str]] = field(default_factory=dict)  # option -> (value, where it came from)

    def __post_init__(self) -> None:
        name = folder_name(self)
        object.__setattr__(self, "out", Path(self.out) if self.out is not None else Path("runs") / name)
        object.__setattr__(self, "board", Path(self.board) if self.board is not None else Path("leaderboards") / name)

    @property
    def seed(self) -> int:
        """The run's seed (data sampling, training, evaluation, analyses)."""
        return self.data.seed


def chosen_sizes(model: str | None, recipe: str | None, given: dict[str, object]) -> dict[str, tuple[object, str]]:
    """The sizes the run picks itself (option -> (value, where it came from)), for the options not in `given`.

    On a built-in model its sizes and training data (`BUILTIN`); on a real model or recipe the full test sets, each
    task's own generation length, every analysis item, batch size auto, and the recipe's training data (languages,
    source, examples per language, seed) or, without a recipe, every usable pair.
    """
    kind = builtin_kind(StudyConfig(model=model, recipe=recipe))
    if kind is not None:
        own, why = BUILTIN[kind], f"the {BUILTIN[kind].name}'s"
        chosen = {name: (value, why) for name, value in asdict(own.scale).items()}
        chosen |= {"languages": (own.languages, why), "qt_source": (own.qt_source.value, why)}
        return {name: pair for name, pair in chosen.items() if name not in given}
    chosen = {name: (value, "full size") for name, value in asdict(FULL_SCALE).items()}
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
    given."""
    known = {*asdict(DEMO_SCALE), *RECIPE_DATA}
    if unknown := set(sized) - known:
        raise TypeError(f"configure: unknown option(s) {sorted(unknown)}")
    chosen = chosen_sizes(model, recipe, sized)
    v = {"languages": DataOptions.languages, "qt_source": DataOptions.qt_source, "seed": DataOptions.seed}
    v |= {name: value for name, (value, _) in chosen.items()} | sized
    seed = v["seed"]
    kind = builtin_kind(StudyConfig(model=model, recipe=recipe))
    own = BUILTIN[kind] if kind is not None else None
    langs = {"lens_langs": own.lens_langs, "pca_langs": own.pca_langs} if own and analysis_task is None else {}
    eval_tasks = eval_tasks or (own.tasks if own else EvalOptions.tasks)
    analysis_task = analysis_task or (own.analysis_task if own else AnalysisOptions.task)
    return StudyConfig(
        model=model,
        recipe=recipe,
        data=DataOptions(v["qt_source"], v["languages"], v["examples_per_language"], seed),
        evaluation=EvalOptions(
            eval_tasks,
            v["eval_limit"],
            v["max_gen_toks"],
            v["batch_size"],
            load_in_4bit,
            nf4_preset,
            label_scoring,
            seed,
        ),  # fmt: skip
        analysis=AnalysisOptions(analysis_task, v["analysis_limit"], **langs, load_in_4bit=load_in_4bit, seed=seed),
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
    kind = builtin_kind(cfg)
    if cfg.recipe is None and kind is None:
        return None, {}
    path = recipes.recipe_path(cfg.recipe or BUILTIN[kind].recipe)
    return path, recipes.read_recipe(path)


def _copy_adapter(run_dir: Path, dest: Path) -> None:
    """Copy the final adapter files of a training run (not its checkpoints) to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in run_dir.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, dest / item.name)


def builtin_kind(cfg: StudyConfig) -> str | None:
    """TOY or TINY when the study runs on a model mlalign builds (named by --model, or by a recipe for it; no --model
    and no recipe: `DEFAULT_MODEL`), else None."""
    if cfg.model is not None:
        return cfg.model if cfg.model in BUILTIN else None
    if cfg.recipe is None:
        return DEFAULT_MODEL
    named = _recipe_model(cfg.recipe)
    return next((kind for kind, own in BUILTIN.items() if own.recipe_model == named), None)


def _recipe_model(recipe: str) -> str | None:
    """The model_name_or_path that `recipe` trains (its stage I's, for a two-stage recipe)."""
    path = recipes.recipe_path(recipe)
    return recipes.stage_flags(recipes.read_recipe(path), "question", path).get("model_name_or_path")


def folder_name(cfg: StudyConfig) -> str:
    """The name of the run's default folders: a built-in model's (`Builtin.folder`), else the model's: a local
    folder's name, or a Hub id with `/` as `--` (as the Hub's cache names it)."""
    kind = builtin_kind(cfg)
    if kind is not None:
        return BUILTIN[kind].folder
    model = cfg.model or _recipe_model(cfg.recipe) or "model"
    local = Path(model).expanduser()
    name = local.resolve().name if local.exists() else model.strip("/").replace("/", "--")
    return re.sub(r"[^\w.-]+", "-", name) or "model"


def computed(cfg: StudyConfig) -> dict:
    """What the run computes (its options but where it writes and runs, `NOT_COMPUTED`), as JSON values: a run
    folder or board holding another one's results is not replaced unasked."""
    record = json.loads(json.dumps(asdict(cfg), default=str))
    record["model"] = builtin_kind(cfg) or cfg.model
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
    from mlalign_tasks import data
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


def build_stages(cfg: StudyConfig, replace: bool = False) -> tuple[list[Stage], dict[str, Path]]:
    """The study's stages and the paths of its main artefacts (`replace`: see `check_config`)."""
    check_config(cfg, replace)
    out = cfg.out
    recipe_file, recipe = _recipe(cfg)
    kind = builtin_kind(cfg)
    builtin = kind is not None
    model = str(out / "model") if builtin else (cfg.model or recipe.get("model_name_or_path"))
    two_stage = "response" in recipes.stages(recipe)  # QAlign's: question translation, then question-answer data
    if not model:
        raise MlalignError(f"recipe {recipe_file} names no model_name_or_path; give --model")
    if not builtin:
        flag = "--model" if cfg.model else f"the model of recipe {cfg.recipe}"
        model = resolve_model(model, flag)
        check_model_name(model, flag)
    last_train = "train-response" if two_stage else "train"
    adapter = out / last_train / "adapter"
    check_model_arg(model, "--out" if builtin else "--model")
    check_model_arg(str(adapter), "--out")
    paths = {"model": Path(model), "dataset": out / "data", "adapter": adapter}
    stages: list[Stage] = []

    if kind == TINY:
        from mlalign_tasks.tiny_model import DEFAULT_SIZES, build_tiny_model

        def make_model(o: Path, w: Path) -> None:
            build_tiny_model(o, cfg.seed)

        stages.append(Stage("model", {"tiny": DEFAULT_SIZES, "seed": cfg.seed}, make_model))
    elif kind == TOY:
        from mlalign_tasks import toy_model

        def copy_toy(o: Path, w: Path) -> None:
            toy_model.install(o)

        stages.append(Stage("model", {"toy": toy_model.packaged_record()}, copy_toy))

    def stage_flags(stage: str, *flags: str) -> list[str]:
        recipe_flags = ["--config", str(recipe_file)] if recipe_file else []
        stage_flag = ["--stage", stage] if two_stage else []
        return [
            *recipe_flags,
            *stage_flag,
            "--model_name_or_path",
            model,
            *flags,
            "--seed",
            str(cfg.seed),
            *cfg.train_flags,
        ]

    # the data stage builds stage I's set (it wins over a recipe's languages)
    question_flags = stage_flags("question", "--dataset_path", str(out / "data"))
    # bad trainer flags are refused before any stage runs
    question, _, model_args = sft.parse_args([*question_flags, "--output_dir", str(out / "train")])
    if question.mixture:
        raise MlalignError(
            f"--mixture {question.mixture}: `mlalign run` builds stage I's data from --langs and --qt-source; train on "
            "one of the paper's mixtures with `mlalign train --mixture` and evaluate with `mlalign eval`"
        )
    if not model_args.use_peft:
        raise MlalignError(
            f"recipe {recipe_file} fine-tunes the whole model, and `mlalign run` evaluates LoRA adapters: train it with "
            "`mlalign train` and evaluate the model with `mlalign eval`, or choose a LoRA recipe (`mlalign recipes`)"
        )

    def build_data(o: Path, w: Path) -> None:
        from mlalign_trainer.qt_data import build_qt_dataset, save_build

        build = build_qt_dataset(
            d.qt_source, d.languages, d.examples_per_language, seed=d.seed, data_dir=cfg.data_dir,
            fmt=question.prompt_format, clean=question.clean_pairs, target=question.target_language,
        )  # fmt: skip
        save_build(build, o)

    d = cfg.data  # with the trainer's settings that shape the data (a recipe's prompt format, cleaning, target)
    data_cfg = asdict(d) | {k: getattr(question, k) for k in ("prompt_format", "clean_pairs", "target_language")}
    stages.append(Stage("data", data_cfg, build_data))

    # The trainer's own defaults are part of the configuration: changing one (in a new release) retrains.
    from mlalign_trainer.config import mlalign_defaults

    defaults = mlalign_defaults()

    def train_stage(name: str, flags: list[str], deps: tuple[str, ...]) -> Stage:
        def train(o: Path, w: Path) -> None:
            from mlalign_trainer.sft import main as train_main

            code = train_main([*flags, "--output_dir", str(w)])
            if code in (130, 143):  # Ctrl-C or SIGTERM: the trainer saved a checkpoint in `w`, where a rerun resumes
                raise Interrupted
            if code != 0:
                raise MlalignError(f"training stopped (exit code {code}); rerun `mlalign run` to resume it")
            _copy_adapter(w, o / "adapter")

        config = {"recipe": recipe, "flags": flags[2 if recipe_file else 0 :], "model": model, "defaults": defaults}
        return Stage(name, config, train, deps=deps)

    stages.append(train_stage("train", question_flags, ("model", "data") if builtin else ("data",)))
    if two_stage:  # stage II trains stage I's adapter on
        response_flags = stage_flags("response", "--init_from", str(out / "train" / "adapter"))
        response = sft.parse_args([*response_flags, "--output_dir", str(out / "train-response")])[0]
        stages.append(train_stage("train-response", response_flags, ("train",)))

    e = cfg.evaluation
    eval_cfg = asdict(e)

    def evaluate_stage(peft: Path | None):
        def run(o: Path, w: Path) -> None:
            from mlalign_tasks import evaluate

            evaluate.quiet_lm_eval(False)
            evaluate.run(
                evaluate.EvalRequest(
                    model=model,
                    tasks=evaluate.parse_tasks(e.tasks),
                    adapter=str(peft) if peft else None,
                    limit=e.limit,
                    batch_size=e.batch_size,
                    device=cfg.device,
                    gen_kwargs={"max_gen_toks": e.max_gen_toks} if e.max_gen_toks else None,
                    output_path=o,
                    load_in_4bit=e.load_in_4bit,
                    nf4_preset=e.nf4_preset,
                    data_dir=cfg.data_dir,
                    seed=e.seed,
                    label_scoring=e.label_scoring,
                )
            )

        return run

    base_deps = ("model",) if builtin else ()
    stages.append(Stage("eval-base", {**eval_cfg, "model": model}, evaluate_stage(None), deps=base_deps))
    stages.append(Stage("eval-aligned", eval_cfg, evaluate_stage(adapter), deps=(last_train,)))
    paths["eval-base"], paths["eval-aligned"] = out / "eval-base", out / "eval-aligned"
    stage_one = out / "train" / "adapter" if two_stage else None
    if stage_one:  # stage I's adapter alone, so that the board shows what stage II adds
        stages.append(Stage("eval-question", eval_cfg, evaluate_stage(stage_one), deps=("train",)))
        paths["eval-question"] = out / "eval-question"
    evaluated = [out / "eval-base", out / "eval-aligned", *([out / "eval-question"] if stage_one else [])]

    def leaderboard(o: Path, w: Path) -> list[Path]:
        import yaml

        from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
        from mlalign_tasks.leaderboard.folder import board_files

        manifest = out / "leaderboard.yaml"  # beside the stages, so the board's regenerate command stays valid
        write_text_atomic(manifest, yaml.safe_dump(board_cfg["manifest"], sort_keys=False, allow_unicode=True))
        # The per-sample logs hold benchmark items: keep them in the run directory, not in the published board.
        make_leaderboard(evaluated, cfg.board, manifest, BoardOptions(embed=False))
        write_text_atomic(cfg.board / BOARD_RECORD, json.dumps(board_cfg["run"], indent=1, sort_keys=True) + "\n")
        return [*board_files(cfg.board), cfg.board / BOARD_RECORD]  # not the board folder's other files (a .git)

    manifest = board_manifest(cfg, model, adapter, (response.response_source, stage_one) if two_stage else None)
    board_cfg = {"board": str(cfg.board), "manifest": manifest, "embed": False, "run": computed(cfg)}
    stages.append(Stage("leaderboard", board_cfg, leaderboard, deps=tuple(p.name for p in evaluated)))
    paths["leaderboard"] = cfg.board

    a = cfg.analysis
    analysis_cfg = {k: v for k, v in asdict(a).items() if k not in ("lens_langs", "pca_langs")}  # the shared ones
    aligned = ModelSpec(model, str(adapter), cfg.device or "auto", load_in_4bit=a.load_in_4bit)

    # The toy reviews have English-label prompts only: mlalign's lens (English output) and PCA of the reviews alone.
    toy_analysis = a.task is PaperTask.toy_sentiment

    def lens(o: Path, w: Path) -> None:
        from mlalign_tasks.analysis.logit_lens import run_logit_lens
        from mlalign_tasks.analysis.protocols import LensProtocol

        run_logit_lens(
            aligned, a.task.value, a.lens_langs, o, limit=a.limit, seed=a.seed, data_dir=cfg.data_dir,
            protocol=LensProtocol.english_output if toy_analysis else LensProtocol.paper,
        )  # fmt: skip

    def pca(o: Path, w: Path) -> None:
        from mlalign_tasks.analysis.pca import run_pca
        from mlalign_tasks.analysis.protocols import PcaInput

        run_pca(
            aligned, a.pca_langs, o, task=a.task.value, limit=a.limit, seed=a.seed, data_dir=cfg.data_dir,
            source=PcaInput.sentence if toy_analysis else PcaInput.prompt,
        )  # fmt: skip

    stages.append(Stage("logit-lens", {**analysis_cfg, "langs": a.lens_langs}, lens, deps=(last_train,)))
    stages.append(Stage("pca", {**analysis_cfg, "langs": a.pca_langs}, pca, deps=(last_train,)))
    paths["logit-lens"], paths["pca"] = out / "logit-lens", out / "pca"
    return stages, paths


def board_manifest(cfg: StudyConfig, model: str, adapter: Path, stage_two: tuple[str, Path] | None = None) -> dict:
    """Title, description and model names of the study's leaderboard (`stage_two`: stage II's data and stage I's
    adapter, which the board shows too, if the run has two stages)."""
    kind = builtin_kind(cfg)
    stage_two_clause = (
        f", then on English question-answer pairs ({stage_two[0]}), QAlign's two stages; the board shows stage I's "
        "adapter alone beside them"
        if stage_two
        else ""
    )
    if kind == TOY:
        from mlalign_tasks.toy_world import describe

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
        options = json.loads(json.dumps(asdict(cfg), default=str))
        write_json_atomic(cfg.out / STUDY_FILE, options | {COMPUTED_KEY: computed(cfg)})
        return run_stages(stages, cfg.out, on_start=on_start), paths

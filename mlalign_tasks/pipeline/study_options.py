"""The study's options and their one table of defaults: what `mlalign run` does where the user says nothing.

The built-in models' own sizes, training data, tasks and analyses (`BUILTIN`: the toy world, the tiny model) and a
real model's (`REAL`: `FULL_SCALE` and its recipe's training data); the command line's values are defaulted once from
them (`chosen_sizes`, `configure`) into the frozen, checked `StudyConfig`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mlalign_trainer import recipes
from mlalign_trainer.choices import QTSource

from mlalign_tasks.analysis.protocols import PaperTask
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.models import tiny_model
from mlalign_tasks.models.model_loading import Nf4Preset
from mlalign_tasks.tasks.label_scoring import Gold, Scoring

if TYPE_CHECKING:
    from mlalign_tasks.pipeline.evaluate import Selection

TOY, TINY = "toy", "tiny"  # the models mlalign builds itself offline (`BUILTIN`)


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
    # QAlign's two stages, question alignment on two Alvic languages: qac (same family) and the other families unseen.
    TOY: Builtin(
        name="toy world", folder="demo", recipe="toy-world-qalign", recipe_model="./toy-model", scale=TOY_SCALE,
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

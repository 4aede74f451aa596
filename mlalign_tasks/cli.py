"""The `mlalign` command line. Heavy libraries are imported inside commands to keep start-up fast."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from mlalign_trainer.choices import BuildSource, PromptFormat, QTSource
from rich.console import Console

from mlalign_tasks.analysis.protocols import PAPER_PAIRS, LensProtocol, PaperTask, PcaInput, Pooling
from mlalign_tasks.errors import Interrupted, MlalignError
from mlalign_tasks.leaderboard.cache import CACHE_ENV
from mlalign_tasks.leaderboard.cache import default_folder as board_cache_folder
from mlalign_tasks.leaderboard.options import DEFAULT_OPTIONS as DEFAULT_BOARD
from mlalign_tasks.leaderboard.options import BoardOptions, Correction
from mlalign_tasks.models.gguf_models import resolve_model
from mlalign_tasks.models.model_loading import Dtype, MergeDtype, ModelSpec, Nf4Preset
from mlalign_tasks.models.tiny_model import EVAL_BATCH_SIZE as TINY_EVAL_BATCH
from mlalign_tasks.pipeline.evaluate import DEFAULT_TASKS, TASK_SPEC_HELP
from mlalign_tasks.pipeline.study import BUILTIN, SEED
from mlalign_tasks.tasks.label_scoring import Gold, Scoring
from mlalign_tasks.vocabulary import option

PIPED_WIDTH = 200  # columns of help and tables written to a pipe or file: wide enough that no option is cut
TOY, TINY = BUILTIN["toy"], BUILTIN["tiny"]  # the built-in models' defaults, for the help
MODEL_HELP = "Hugging Face model id, local model directory, .gguf file (converted once) or 'gemma-3-270m'."

app = typer.Typer(
    help="Question-alignment for multilingual LLMs: evaluate, train, publish leaderboards, analyse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from mlalign_tasks import __version__

        console.print(f"mlalign {__version__}", highlight=False)
        raise typer.Exit


@app.callback()
def _options(
    _: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print mlalign's version and exit.")
    ] = False,
) -> None:
    """Options of `mlalign` itself (the app's help is the Typer's)."""


data_app = typer.Typer(help="Benchmark and training data: list, fetch, verify, build.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def print_table(table) -> None:
    """Print a rich table without cutting a cell: piped or redirected at its full width (rich would assume 80
    columns), in a terminal folded into its width."""
    from rich.measure import Measurement

    if console.is_terminal:
        for column in table.columns:
            column.overflow = "fold"
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(1_000_000), table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width


DataDirOpt = Annotated[Path | None, option("data folder", "Directory with the data files (else $MLALIGN_DATA_DIR).")]
Nf4PresetOpt = Annotated[
    Nf4Preset,
    typer.Option(
        "--nf4-preset",
        help="With --load-in-4bit: 'mlalign' (double quantisation, bf16 compute, the adapter on the quantised base) "
        "or 'paper' (the papers' scripts: no double quantisation, fp16 compute, the adapter merged before quantising).",
    ),
]


def _mixture_help() -> str:
    from mlalign_trainer.qt_data import PAPER_FILES, mixtures

    known = "; ".join(f"{source}: {', '.join(mixtures(source))}" for source in PAPER_FILES)
    return f"One of the paper's mixture files of --source instead of --langs ({known})."


MIXTURE_HELP = _mixture_help()

LabelScoringOpt = Annotated[
    Scoring,
    typer.Option(
        "--label-scoring",
        help="Paper tasks (SNLI, PAWS, sentiment and its label variants): 'paper' sums the next-token probability "
        "over each label's token set, as the papers' scripts (one forward per item, their ties); 'token-sets' the "
        "same with mlalign's generic token sets (shared tokens refused, ties per item); 'first-token' scores each "
        "label's first token; 'label' the whole label word (plain lm_eval).",
    ),
]
GoldOpt = Annotated[
    Gold,
    typer.Option(
        "--gold",
        help="Paper tasks: 'english' takes each item's gold label from the English file by index; 'upstream' as the "
        "papers' scripts (the data's answer against their label words: SNLI ja and bn lose a class).",
    ),
]


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, option("output folder", "Directory to write the model and tokenizer to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build the tiny random-weight Llama model (offline, seconds) used by tests and `mlalign run --model tiny`."""
    from mlalign_tasks.models.tiny_model import build_tiny_model

    path = build_tiny_model(out, seed=seed)
    console.print(f"tiny model written to {path}")


@app.command("toy-model")
def toy_model(
    out: Annotated[Path, option("output folder", "Directory to write the model and tokenizer to.")],
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Pretrain it from scratch (deterministic; about 6 minutes on two CPU cores) instead."
        ),
    ] = False,
) -> None:
    """Write the toy world's pretrained model (the one shipped in the package, as `mlalign run` uses it)."""
    from mlalign_tasks.models import toy_model as toy

    toy.build_toy_model(out, log=console.print) if rebuild else toy.write_packaged(out)
    console.print(f"toy model written to {out}")


@app.command("tasks-path")
def tasks_path() -> None:
    """Print the lm-eval task directory, for `lm_eval --include_path "$(mlalign tasks-path)"`."""
    from mlalign_tasks.pipeline.evaluate import tasks_dir

    print(tasks_dir())


@app.command("eval")
def eval_cmd(
    model: Annotated[str, option("model", MODEL_HELP)],
    tasks: Annotated[str, option("tasks", TASK_SPEC_HELP)] = DEFAULT_TASKS,
    peft: Annotated[str | None, option("adapter", "PEFT (LoRA) adapter directory to apply.")] = None,
    limit: Annotated[
        str | None,
        option(
            "items per task or language", "Items per task: a positive integer, a fraction in (0, 1], or 'none' (all)."
        ),
    ] = None,
    num_fewshot: Annotated[int | None, option("few-shot examples", "Few-shot examples (MGSM/MSVAMP: <= 8).")] = None,
    batch_size: Annotated[
        str | None,
        option("batch size", f"Batch size, or 'auto' \\[default: 1; the tiny model: {TINY_EVAL_BATCH}]"),
    ] = None,
    device: Annotated[
        str | None, option("device", "Device, e.g. cuda, cuda:1, cpu (default: cuda if available).")
    ] = None,
    gen_kwargs: Annotated[
        str | None, option("generation settings", "Generation overrides, e.g. 'max_gen_toks=64'.")
    ] = None,
    output_path: Annotated[
        Path | None, option("output folder", "Write lm-eval results JSON and per-sample logs here.")
    ] = None,
    load_in_4bit: Annotated[bool, option("4-bit base model", "Load the model in 4-bit NF4 (CUDA).")] = False,
    nf4_preset: Nf4PresetOpt = Nf4Preset.mlalign,
    include_defaults: Annotated[
        bool, typer.Option("--include-defaults", help="Also index lm-eval's built-in tasks (slower start).")
    ] = False,
    apply_chat_template: Annotated[bool, option("chat template", "Wrap prompts in the model's chat template.")] = False,
    seed: Annotated[
        int,
        option(
            "seed", "Random seed (python, numpy, torch; token-sets scoring's ties; paper's are upstream's, seed 0)."
        ),
    ] = 0,
    label_scoring: LabelScoringOpt = Scoring.paper,
    gold: GoldOpt = Gold.english,
    dtype: Annotated[
        Dtype,
        option("weights' dtype", "Weights' dtype in full precision (auto: the model config's; QAlign used bfloat16)."),
    ] = Dtype.auto,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show lm-eval's log.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Evaluate a model (optionally + adapter) on our lm-eval tasks and print a per-language table."""
    from mlalign_tasks.models.tiny_model import MAX_GEN_TOKS, is_tiny
    from mlalign_tasks.pipeline import evaluate

    if evaluate.leave_launch():  # a copy started by accelerate launch or torchrun: the first process evaluates
        raise typer.Exit
    evaluate.quiet_lm_eval(verbose)
    tiny = is_tiny(model)
    req = evaluate.EvalRequest(
        model=model,
        tasks=evaluate.parse_tasks(tasks, allow_other=include_defaults),
        adapter=peft,
        limit=evaluate.parse_limit(limit),
        num_fewshot=num_fewshot,
        batch_size=evaluate.parse_batch_size(batch_size) if batch_size else TINY_EVAL_BATCH if tiny else 1,
        device=device,
        gen_kwargs=evaluate.parse_gen_kwargs(gen_kwargs),
        output_path=output_path,
        load_in_4bit=load_in_4bit,
        include_defaults=include_defaults,
        apply_chat_template=apply_chat_template,
        data_dir=data_dir,
        seed=seed,
        label_scoring=label_scoring,
        gold=gold,
        dtype=dtype,
        nf4_preset=nf4_preset,
        generation_cap=MAX_GEN_TOKS if tiny else None,
    )
    results = evaluate.run(req)
    if req.tasks.langs:
        print_table(evaluate.score_table(results, req.tasks))
    if req.tasks.other or req.tasks.builtin:
        names = [
            *req.tasks.builtin,
            *(n for n in results.get("results", {}) if evaluate.builtin_cell(n)),
            *req.tasks.other,
        ]
        print_table(evaluate.other_table(results, list(dict.fromkeys(names))))
    if path := results["mlalign"].get("results_file"):
        console.print(f"results: {path}")
    if tiny:
        console.print(
            f"the tiny random-weight model: at most {MAX_GEN_TOKS} new tokens per generation unless --gen-kwargs "
            f"max_gen_toks=N says otherwise, batches of {TINY_EVAL_BATCH} unless --batch-size says otherwise",
            highlight=False,
            soft_wrap=True,
        )


@data_app.command("list")
def data_list(
    patterns: Annotated[list[str] | None, typer.Argument(help="Glob patterns, e.g. 'mgsm/*'.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the pinned data files: where each is found locally, or whether it can be downloaded."""
    from rich.table import Table

    from mlalign_tasks.files import data

    table = Table()
    table.add_column("file", overflow="fold")
    for column in ("size", "pinned by", "here", "source"):
        table.add_column(column)
    for entry in data.select(patterns):
        found = data.locate(entry, data_dir)
        here = found[1] if found else "[yellow]downloadable[/yellow]" if entry.path else "[red]missing[/red]"
        table.add_row(
            entry.name,
            f"{entry.size / 1024:.0f} KiB" if entry.size is not None else "–",
            entry.checksum()[0],
            here,
            entry.source(),
        )
    print_table(table)


@data_app.command("fetch")
def data_fetch(
    patterns: Annotated[list[str] | None, typer.Argument(help="Glob patterns (default: all files).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Download missing files into the user cache (checksum-verified, atomic)."""
    from mlalign_tasks.files import data
    from mlalign_tasks.runtime.progress import StepProgress

    entries = data.select(patterns)
    with StepProgress("fetching", len(entries), "files") as progress:
        for entry in entries:
            progress.describe(f"fetching {entry.name}")
            data.resolve(entry.name, data_dir=data_dir)
            progress.advance()
        progress.describe("fetching")
    console.print(f"{len(entries)} file(s) present and verified; cache: {data.cache_dir()}")


@data_app.command("verify")
def data_verify(
    patterns: Annotated[list[str] | None, typer.Argument(help="Glob patterns (default: all files).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check that every file is present and has its pinned checksum (sha256, or git blob id); exit 2 if one is
    missing or corrupt."""
    from mlalign_tasks.files import data

    ok, missing, bad = 0, [], []
    for entry in data.select(patterns):
        found = data.locate(entry, data_dir)
        if not found:
            missing.append(entry.name)
            continue
        try:
            data.resolve(entry.name, data_dir=data_dir, offline=True)
            ok += 1
        except MlalignError as e:
            bad.append(str(e))
    for line in bad:
        err_console.print(f"[red]corrupt:[/red] {line}")
    console.print(f"{ok} verified, {len(bad)} corrupt, {len(missing)} missing")
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        err_console.print(
            f"[red]missing:[/red] {missing[0]}{more}: run `mlalign data fetch` or point --data-dir at a folder "
            "that has them",
            highlight=False,
            soft_wrap=True,
        )
    if bad or missing:
        raise typer.Exit(2)


@data_app.command("build-qt")
def data_build_qt(
    out: Annotated[Path, option("output folder", "New directory for the dataset and its qt_build.json.")],
    langs: Annotated[
        str | None, option("languages", "Source languages, e.g. 'de,fr,sw' (files: the one language).")
    ] = None,
    target: Annotated[
        str, typer.Option("--target", help="Target language: en, or another of the source's (e.g. zh; files: theirs).")
    ] = "en",
    source: Annotated[
        BuildSource,
        option("question-translation source", "A built-in source, or files (your own parallel data)."),
    ] = BuildSource.gsm8k,
    mixture: Annotated[str | None, typer.Option(help=MIXTURE_HELP)] = None,
    n: Annotated[int | None, option("examples per language", "Examples per language (default: all usable).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling and shuffling seed.")] = 0,
    fmt: Annotated[
        PromptFormat,
        option(
            "prompt format",
            "plain (question + the paper's instruction line), qalign (QAlign's instruction in the Alpaca "
            "template) or chat (chat template).",
        ),
    ] = PromptFormat.plain,
    src_file: Annotated[Path | None, typer.Option(help="files: questions in the source language, one a line.")] = None,
    tgt_file: Annotated[Path | None, typer.Option(help="files: the English questions, line-aligned.")] = None,
    jsonl: Annotated[Path | None, typer.Option(help="files: JSON lines with source and target fields.")] = None,
    source_field: Annotated[str, typer.Option(help="files: JSON field of the source question.")] = "source",
    target_field: Annotated[str, typer.Option(help="files: JSON field of the English question.")] = "target",
    clean: Annotated[
        bool, typer.Option("--clean/--no-clean", help="Drop empty, repeated, untranslated and misaligned pairs.")
    ] = True,
    data_dir: DataDirOpt = None,
) -> None:
    """Build a question-translation SFT dataset (question in X -> the question in English or --target; no answers)."""
    from mlalign_trainer import qt_data

    from mlalign_tasks.files.output_dirs import check_replaceable

    check_replaceable(out, "--out")  # before the build: an existing set is never replaced, whatever its size
    build = qt_data.build_qt_dataset(
        source.value, langs, n, seed=seed, fmt=fmt.value, data_dir=data_dir, src_file=src_file, tgt_file=tgt_file,
        jsonl=jsonl, source_field=source_field, target_field=target_field, clean=clean, target=target,
        mixture=mixture,
    )  # fmt: skip
    qt_data.save_build(build, out)
    print_table(qt_data.stats_table(build))
    console.print(f"{len(build.dataset)} examples written to {out} (data hash {build.data_hash[:12]})")


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """Question-alignment LoRA/QLoRA SFT (TRL); all flags go to the trainer: `mlalign train --help`."""
    from mlalign_trainer.sft import main as train_main

    raise typer.Exit(train_main(list(ctx.args)))


@app.command("recipes")
def recipes(
    name: Annotated[str | None, typer.Argument(help="Print only this recipe's or accelerate config's path.")] = None,
) -> None:
    """The shipped trainer recipes and accelerate configs, with their paths (`--config NAME` takes the names)."""
    from mlalign_trainer import recipes as shipped

    if name is not None:
        print(shipped.config_path(name))
        return
    from rich.table import Table

    table = Table("name", "kind")
    table.add_column("path", overflow="fold")
    for config, path in shipped.shipped_configs().items():
        if path.parent == shipped.ACCELERATE_DIR:
            kind = "accelerate"
        else:
            stages = shipped.stages(shipped.read_recipe(path))
            kind = f"recipe, stages {' + '.join(stages)}" if stages else "recipe"
        table.add_row(config, kind, str(path))
    print_table(table)


@app.command("merge")
def merge(
    adapter: Annotated[Path, option("adapter", "Adapter directory written by `mlalign train`.")],
    out: Annotated[Path, option("output folder", "New directory for the merged full model.")],
    base: Annotated[
        str | None, option("model", "Base model (default: the one the adapter names).", show_default=False)
    ] = None,
    dtype: Annotated[MergeDtype, option("weights' dtype", "The merged model's weights.")] = MergeDtype.float32,
) -> None:
    """Merge a LoRA adapter into its base model and save the full model."""
    from mlalign_trainer.merge import merge_adapter

    console.print(f"merged model written to {merge_adapter(adapter, out, base=base, dtype=dtype.value)}")


analyze_app = typer.Typer(
    help="Interpretability analyses: logit lens over layers, PCA of hidden states.", no_args_is_help=True
)
app.add_typer(analyze_app, name="analyze")
ModelOpt = Annotated[str, option("model", MODEL_HELP)]
PeftOpt = Annotated[
    str | None, option("adapter", "LoRA adapter directory: base and aligned are analysed side by side.")
]
AnalysisOutOpt = Annotated[Path, option("output folder", "New (or earlier output) directory for JSON + plots.")]
LimitOpt = Annotated[
    int | None, option("items per task or language", "Number of parallel items, drawn with --seed (default: all).")
]
BatchOpt = Annotated[int, option("batch size", "Prompts per forward pass.")]
DeviceOpt = Annotated[str, option("device", "auto, cpu, cuda or cuda:N.")]
DtypeOpt = Annotated[Dtype, option("weights' dtype", "auto: bfloat16 on a GPU, else float32.")]
FourBitOpt = Annotated[bool, option("4-bit base model", "Load the model in 4-bit NF4 (CUDA only).")]
SeedOpt = Annotated[int, option("seed", "Seed of the item sample (and torch).")]


@analyze_app.command("logit-lens")
def analyze_logit_lens(
    model: ModelOpt,
    langs: Annotated[str, option("languages", "Comma-separated paper languages, e.g. zh,sw,de.")],
    out: AnalysisOutOpt,
    protocol: Annotated[
        LensProtocol,
        typer.Option(
            help="'paper': the paper's lens (sentiment, native-label prompts, token sets, blocks 1..L, mean ± 95%, "
            "entropy in bits); 'english-output': mlalign's lens on the English-output prompts of any paper task."
        ),
    ] = LensProtocol.paper,
    task: Annotated[PaperTask, typer.Option(help="Paper task (the paper's protocol: sentiment).")] = (
        PaperTask.sentiment
    ),
    peft: PeftOpt = None,
    limit: LimitOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", help="english-output: top tokens recorded per layer.")] = 5,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.auto,
    load_in_4bit: FourBitOpt = False,
    nf4_preset: Nf4PresetOpt = Nf4Preset.mlalign,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
) -> None:
    """Label-word probabilities and entropy after every layer on the paper's few-shot prompts."""
    from mlalign_tasks.analysis.logit_lens import run_logit_lens

    spec = ModelSpec(resolve_model(model), peft, device, dtype, load_in_4bit, nf4_preset)
    result = run_logit_lens(
        spec, task.value, langs, out, limit=limit, batch_size=batch_size, seed=seed, top_k=top_k, data_dir=data_dir,
        protocol=protocol,
    )  # fmt: skip
    for note in result["notes"]:
        console.print(f"note: {note}", highlight=False)
    console.print(f"logit lens written to {out}")


@analyze_app.command("pca")
def analyze_pca(
    model: ModelOpt,
    out: AnalysisOutOpt,
    langs: Annotated[
        str, option("languages", "Comma-separated paper languages (English is always added).")
    ] = "en,de,fr,hi,th,sw,ms",
    peft: PeftOpt = None,
    source: Annotated[
        PcaInput,
        typer.Option(
            "--input",
            help="'prompt': the paper's, each item's full 2-shot native-label sentiment prompt; 'sentence': "
            "mlalign's, the task's sentences alone.",
        ),
    ] = PcaInput.prompt,
    pooling: Annotated[
        Pooling,
        typer.Option(
            help="'all': mean over every token, BOS included (the paper); 'content': special tokens left out."
        ),
    ] = Pooling.all,
    pairs: Annotated[
        str | None,
        typer.Option(
            help=f"Language pairs for the PC1 Pearson correlation, e.g. 'en-de,de-fr' (default: the paper's "
            f"{', '.join(PAPER_PAIRS)} among --langs)."
        ),
    ] = None,
    task: Annotated[
        PaperTask, typer.Option(help="Paper task: sentiment; with --input sentence also snli or paws.")
    ] = PaperTask.sentiment,
    layers: Annotated[
        str | None, typer.Option(help="Layers, e.g. '0,8,-1' or '4-8' (default: L/4, L/2, 3L/4, L).")
    ] = None,
    limit: LimitOpt = None,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.auto,
    load_in_4bit: FourBitOpt = False,
    nf4_preset: Nf4PresetOpt = Nf4Preset.mlalign,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
) -> None:
    """2-D PCA of mean-pooled hidden states per layer and the PC1 correlation of language pairs."""
    from mlalign_tasks.analysis.pca import run_pca

    run_pca(
        ModelSpec(resolve_model(model), peft, device, dtype, load_in_4bit, nf4_preset), langs, out, task=task.value,
        layers=layers, limit=limit,
        batch_size=batch_size, seed=seed, data_dir=data_dir, source=source, pooling=pooling, pairs=pairs,
    )  # fmt: skip
    console.print(f"PCA written to {out}")


@app.command("leaderboard")
def leaderboard(
    results: Annotated[list[Path], typer.Argument(help="lm-eval output directories or results_*.json files.")],
    out: Annotated[Path, option("output folder", "Board folder to (re)write, e.g. leaderboards/NAME.")],
    manifest: Annotated[
        Path | None, typer.Option(help="YAML: title, description, models (match, name, base, languages), metrics.")
    ] = None,
    embed_inputs: Annotated[
        bool,
        typer.Option(
            "--embed-inputs/--no-embed-inputs",
            help="Copy the results and sample logs into OUT/inputs with a manifest (the board rebuilds from itself).",
        ),
    ] = True,
    allow_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-mismatch",
            help="Compare runs evaluated under different settings (shots, generation, items, prompts, scoring, "
            "precision); each difference is named in a note at the top of the board. Default: refuse.",
        ),
    ] = False,
    correction: Annotated[
        Correction,
        typer.Option(help="Multiple-comparison correction of the per-language p-values: none, holm or bh."),
    ] = Correction.none,
    chance_normalised: Annotated[
        bool,
        typer.Option("--chance-normalised", help="Show classification scores as (score - chance) / (1 - chance)."),
    ] = False,
    bootstrap: Annotated[
        int, typer.Option(help="Paired bootstrap resamples for the intervals of the averages' deltas (0: none).")
    ] = DEFAULT_BOARD.bootstrap,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = DEFAULT_BOARD.seed,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Cache of parsed inputs: a rebuild parses only the files that changed "
            f"(default ${CACHE_ENV}, else ~/.cache/mlalign/leaderboard).",
            show_default=False,
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Parse every input file; read and write no cache.")
    ] = False,
) -> None:
    """Build a leaderboard (Markdown, CSV/JSON, HTML, plots, model cards) comparing base and aligned models."""
    from mlalign_tasks.leaderboard import make_leaderboard

    options = BoardOptions(
        allow_mismatch=allow_mismatch, correction=correction, chance_normalised=chance_normalised,
        bootstrap=bootstrap, seed=seed, embed=embed_inputs,
        cache=None if no_cache else cache_dir or board_cache_folder(),
    )  # fmt: skip
    board = make_leaderboard(results, out, manifest, options)
    console.print(f"leaderboard of {len(board.models)} model(s) written to {out} (open {out / 'index.html'})")
    for note in board.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)


@app.command("run")
def run_cmd(
    model: Annotated[
        str | None,
        option(
            "model",
            "Base model id, folder or .gguf file, 'gemma-3-270m' (installed from PyPI, converted once), 'toy' (the "
            "toy world's pretrained model) or 'tiny' (the random-weight test model) \\[default: the recipe's, else toy]",
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="Trainer recipe: a name (`mlalign recipes` lists them) or a YAML file. Default: toy-world on the "
            "toy model, cpu-smoke on the tiny one; with another --model, none (the trainer's defaults for the device)."
        ),
    ] = None,
    langs: Annotated[
        str | None,
        option(
            "languages",
            f"Training languages (question translation) \\[default: a recipe's; toy {TOY.languages}; tiny {TINY.languages}]",
        ),
    ] = None,
    qt_source: Annotated[
        QTSource | None,
        option(
            "question-translation source",
            f"Question translations \\[default: a recipe's; toy {TOY.qt_source}; tiny {TINY.qt_source}]",
        ),
    ] = None,
    examples_per_language: Annotated[
        int | None,
        option(
            "examples per language",
            f"Training pairs per language, 0: all \\[default: toy {TOY.scale.examples_per_language}, tiny "
            f"{TINY.scale.examples_per_language}; a real model: the recipe's, else all]",
        ),
    ] = None,
    train_flag: Annotated[
        list[str] | None, typer.Option("--train-flag", help="Extra trainer flag, e.g. '--max_steps=200' (repeat).")
    ] = None,
    tasks: Annotated[
        str | None,
        option("tasks", f"Evaluation tasks (as for `mlalign eval`) \\[default: toy {TOY.tasks}; else {TINY.tasks}]"),
    ] = None,
    limit: Annotated[
        str | None,
        option(
            "items per task or language",
            f"Evaluation items per task, 'none': all \\[default: toy {TOY.scale.eval_limit}, tiny "
            f"{TINY.scale.eval_limit}; a real model: all]",
        ),
    ] = None,
    max_gen_toks: Annotated[
        int | None,
        option(
            "new tokens per generation",
            f"New tokens per MGSM-format item, 0: the task's own \\[default: toy {TOY.scale.max_gen_toks}, tiny "
            f"{TINY.scale.max_gen_toks}; a real model: the task's own]",
        ),
    ] = None,
    batch_size: Annotated[
        str | None,
        option(
            "batch size",
            f"Evaluation batch size \\[default: toy {TOY.scale.batch_size}, tiny {TINY.scale.batch_size}; a real "
            "model: auto]",
        ),
    ] = None,
    device: Annotated[str | None, option("device", "cpu, cuda, cuda:N (default: cuda if available).")] = None,
    load_in_4bit: Annotated[bool, option("4-bit base model", "Evaluate/analyse in 4-bit NF4 (CUDA).")] = False,
    nf4_preset: Nf4PresetOpt = Nf4Preset.mlalign,
    label_scoring: LabelScoringOpt = Scoring.paper,
    gold: GoldOpt = Gold.english,
    analysis_limit: Annotated[
        int | None,
        typer.Option(
            "--analysis-limit",
            help=f"Items per language in the analyses, 0: all \\[default: toy {TOY.scale.analysis_limit}, tiny "
            f"{TINY.scale.analysis_limit}; a real model: all]",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        option(
            "output folder",
            f"Run directory (stages, resumable) \\[default: runs/NAME: {TOY.folder} for the toy world, {TINY.folder} for "
            "the tiny model, else the model folder's name or the Hub id with / as --]",
        ),
    ] = None,
    board: Annotated[
        Path | None,
        typer.Option(help="Leaderboard folder to publish \\[default: leaderboards/NAME, NAME as for --out]"),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace the results of another configuration in --out or --board (without it such a run is refused "
            "and nothing is written).",
        ),
    ] = False,
    seed: Annotated[
        int | None,
        option("seed", f"Seed of data sampling, training and analyses \\[default: a recipe's, else {SEED}]"),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The whole study: data -> question-aligned training -> eval base and aligned -> leaderboard -> analyses."""
    from rich.table import Table

    from mlalign_tasks.models.model_paths import check_model_name
    from mlalign_tasks.pipeline.evaluate import parse_batch_size, parse_limit
    from mlalign_tasks.pipeline.study import chosen_sizes, configure, describe_defaults, run_study

    if model is not None:  # before anything is said or written: a typo of a built-in name, an unreachable Hub
        check_model_name(model, "--model", BUILTIN)

    sized = {  # the options whose defaults depend on the model (`chosen_sizes`); given ones only, 0 / 'none': all
        "languages": langs,
        "qt_source": qt_source,
        "examples_per_language": examples_per_language,
        "eval_limit": limit,
        "max_gen_toks": max_gen_toks,
        "analysis_limit": analysis_limit,
        "batch_size": batch_size,
        "seed": seed,
    }
    given = {k: v for k, v in sized.items() if v is not None}
    given |= {k: None for k in ("examples_per_language", "max_gen_toks", "analysis_limit") if given.get(k) == 0}
    if "eval_limit" in given:
        given["eval_limit"] = parse_limit(given["eval_limit"])
    if "batch_size" in given:
        given["batch_size"] = parse_batch_size(given["batch_size"])
    if chosen := describe_defaults(chosen_sizes(model, recipe, given)):  # said before any option is refused
        console.print(chosen, highlight=False, soft_wrap=True)
    cfg = configure(
        model=model, recipe=recipe, **given, train_flags=train_flag or [], eval_tasks=tasks, device=device,
        load_in_4bit=load_in_4bit, nf4_preset=nf4_preset, label_scoring=label_scoring, gold=gold,
        out=out, board=board, data_dir=str(data_dir) if data_dir else None,
    )  # fmt: skip
    try:
        results, paths = run_study(
            cfg, on_start=lambda st, why: console.rule(f"[bold]{st.name}[/bold] ({why})"), replace=replace
        )
    except Interrupted:
        raise Interrupted("the stages that finished are kept; rerun the same command to resume") from None
    table = Table("stage", "status", "seconds", "output", title="mlalign run")
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}", str(r.path))
    print_table(table)
    console.print(f"leaderboard: {paths['leaderboard'] / 'README.md'} and {paths['leaderboard'] / 'index.html'}")
    console.print(f"adapter: {paths['adapter']}   analyses: {paths['logit-lens']}, {paths['pca']}")
    if chosen:
        console.print(chosen, highlight=False, soft_wrap=True)


def _interrupt(signum, frame) -> None:
    raise Interrupted


def main() -> None:
    """Entry point: run the app, turning user-facing errors into one line and exit code 2, Ctrl-C into 130."""
    signal.signal(signal.SIGINT, _interrupt)
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):  # piped: rich and argparse would assume 80 columns
        os.environ["COLUMNS"] = str(PIPED_WIDTH)
    try:
        app()
    except MlalignError as e:
        err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted as e:  # what the command was writing is removed on the way out
        err_console.print(f"interrupted: {e}" if e.args else "interrupted", highlight=False, soft_wrap=True)
        sys.exit(130)
    except OSError as e:  # e.g. an output path under a file, a full disk: the system's words, without a traceback
        if isinstance(e, FileExistsError | NotADirectoryError) and e.filename and Path(e.filename).is_file():
            message = f"{e.filename} is a file, so it cannot hold the output folder; choose another path"
        else:
            message = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

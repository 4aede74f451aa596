"""`mlalign analyze`: the logit lens and the PCA of hidden states."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlalign_tasks.analysis.protocols import PAPER_PAIRS, LensProtocol, PaperTask, PcaInput, Pooling
from mlalign_tasks.cli.options import MODEL_HELP, DataDirOpt, Nf4PresetOpt
from mlalign_tasks.cli.output import console
from mlalign_tasks.cli.vocabulary import option
from mlalign_tasks.models.gguf_models import resolve_model
from mlalign_tasks.models.model_loading import Dtype, ModelSpec, Nf4Preset

analyze_app = typer.Typer(
    help="Interpretability analyses: logit lens over layers, PCA of hidden states.", no_args_is_help=True
)
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

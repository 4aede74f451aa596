"""Options that several commands share (their spellings come from `vocabulary`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlalign_tasks.cli.vocabulary import option
from mlalign_tasks.models.model_loading import Nf4Preset
from mlalign_tasks.tasks.label_scoring import Gold, Scoring

MODEL_HELP = "Hugging Face model id, local model directory, .gguf file (converted once) or 'gemma-3-270m'."
DataDirOpt = Annotated[Path | None, option("data folder", "Directory with the data files (else $MLALIGN_DATA_DIR).")]
Nf4PresetOpt = Annotated[
    Nf4Preset,
    typer.Option(
        "--nf4-preset",
        help="With --load-in-4bit: 'mlalign' (double quantisation, bf16 compute, the adapter on the quantised base) "
        "or 'paper' (the papers' scripts: no double quantisation, fp16 compute, the adapter merged before quantising).",
    ),
]
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

"""`mlalign tiny-model` and `mlalign toy-model`: write the built-in models to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlalign_tasks.cli.output import console
from mlalign_tasks.cli.vocabulary import option


def tiny_model(
    out: Annotated[Path, option("output folder", "Directory to write the model and tokenizer to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build the tiny random-weight Llama model (offline, seconds) used by tests and `mlalign run --model tiny`."""
    from mlalign_tasks.models.tiny_model import build_tiny_model

    path = build_tiny_model(out, seed=seed)
    console.print(f"tiny model written to {path}")


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

"""`mlalign train` (the trainer's own flags), `mlalign recipes` and `mlalign merge`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlalign_tasks.cli.output import console, print_table
from mlalign_tasks.cli.vocabulary import option
from mlalign_tasks.models.model_loading import MergeDtype


def train(ctx: typer.Context) -> None:
    """Question-alignment LoRA/QLoRA SFT (TRL); all flags go to the trainer: `mlalign train --help`."""
    from mlalign_trainer.sft import main as train_main

    raise typer.Exit(train_main(list(ctx.args)))


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

"""The `mlalign` command line. Heavy libraries are imported inside commands to keep start-up fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlalign_tasks.errors import MlalignError

app = typer.Typer(
    help="Question-alignment for multilingual LLMs: evaluate, train, publish leaderboards, analyse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Benchmark and training data: list, fetch, verify, build.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Directory with the data files (else $MLALIGN_DATA_DIR).")
]


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the model and tokenizer to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build the tiny random-weight Llama model (offline, seconds) used by tests and the demo."""
    from mlalign_tasks.tiny_model import build_tiny_model

    path = build_tiny_model(out, seed=seed)
    console.print(f"tiny model written to {path}")


@app.command("tasks-path")
def tasks_path() -> None:
    """Print the lm-eval task directory, for `lm_eval --include_path "$(mlalign tasks-path)"`."""
    import mlalign_tasks_yaml

    print(Path(mlalign_tasks_yaml.__file__).resolve().parent)


@data_app.command("list")
def data_list(
    patterns: Annotated[list[str] | None, typer.Argument(help="Glob patterns, e.g. 'mgsm/*'.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the pinned data files and where each is found locally."""
    from rich.table import Table

    from mlalign_tasks import data

    table = Table("file", "size", "found in", "source")
    for entry in data.select(patterns):
        found = data.locate(entry, data_dir)
        table.add_row(
            entry.name,
            f"{entry.size / 1024:.0f} KiB",
            found[1] if found else "[red]missing[/red]",
            entry.url() or f"extracted from {entry.repo} scripts",
        )
    console.print(table)


@data_app.command("fetch")
def data_fetch(
    patterns: Annotated[list[str] | None, typer.Argument(help="Glob patterns (default: all files).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Download missing files into the user cache (checksum-verified, atomic)."""
    from rich.progress import track

    from mlalign_tasks import data

    entries = data.select(patterns)
    for entry in track(entries, description="fetching", console=err_console, transient=True):
        data.resolve(entry.name, data_dir=data_dir)
    console.print(f"{len(entries)} file(s) present and verified; cache: {data.cache_dir()}")


@data_app.command("verify")
def data_verify(
    patterns: Annotated[list[str] | None, typer.Argument(help="Glob patterns (default: all files).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check the sha256 of every locally present file; exit 2 if one is corrupt."""
    from mlalign_tasks import data

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
    if bad:
        raise typer.Exit(2)


def main() -> None:
    """Entry point: run the app, turning user-facing errors into one line and exit code 2."""
    try:
        app()
    except MlalignError as e:
        err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

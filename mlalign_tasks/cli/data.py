"""`mlalign data`: list, fetch and verify the pinned data files; build a question-translation dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mlalign_trainer.choices import BuildSource, PromptFormat

from mlalign_tasks.cli.options import DataDirOpt
from mlalign_tasks.cli.output import console, err_console, print_table
from mlalign_tasks.cli.vocabulary import option
from mlalign_tasks.errors import MlalignError

data_app = typer.Typer(help="Benchmark and training data: list, fetch, verify, build.", no_args_is_help=True)


def _mixture_help() -> str:
    from mlalign_trainer.qt_data import PAPER_FILES, mixtures

    known = "; ".join(f"{source}: {', '.join(mixtures(source))}" for source in PAPER_FILES)
    return f"One of the paper's mixture files of --source instead of --langs ({known})."


MIXTURE_HELP = _mixture_help()


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

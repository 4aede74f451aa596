"""The `mlalign` command line: the app, its commands in the order the help lists them (one module per command
group), and `main`, which reports errors in one line. Heavy libraries are imported inside commands to keep
start-up fast."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from mlalign_tasks.cli import analyze, data, evaluation, leaderboard, models, run, training
from mlalign_tasks.cli.output import console, err_console
from mlalign_tasks.errors import Interrupted, MlalignError

PIPED_WIDTH = 200  # columns of help and tables written to a pipe or file: wide enough that no option is cut


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


app.add_typer(data.data_app, name="data")
app.command("tiny-model")(models.tiny_model)
app.command("toy-model")(models.toy_model)
app.command("tasks-path")(evaluation.tasks_path)
app.command("eval")(evaluation.eval_cmd)
app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)(training.train)
app.command("recipes")(training.recipes)
app.command("merge")(training.merge)
app.add_typer(analyze.analyze_app, name="analyze")
app.command("leaderboard")(leaderboard.leaderboard)
app.command("run")(run.run_cmd)


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

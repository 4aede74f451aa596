"""One spelling per concept across `mlalign`'s commands, the lm-eval and TRL spellings accepted, the README's table
in step with `FLAGS`, and choices refused as the command starts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from mlalign_tasks import cli
from mlalign_tasks.cli.vocabulary import FLAGS

ROOT = Path(__file__).resolve().parent.parent
SPELLING = {flag: concept for concept, flags in FLAGS.items() for flag in flags}


def commands(group, prefix: str = ""):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer's own, not a click.Group)
            yield from commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_every_option_of_a_concept_takes_all_its_spellings() -> None:
    seen = set()
    for name, cmd in commands(typer.main.get_command(cli.app)):
        for param in cmd.params:
            names = [*param.opts, *param.secondary_opts]
            concepts = {SPELLING[n] for n in names if n in SPELLING}
            if not concepts:
                continue
            assert len(concepts) == 1, f"mlalign {name} {names}: spellings of several concepts {concepts}"
            concept = concepts.pop()
            assert names[0] == FLAGS[concept][0] and set(names) == set(FLAGS[concept]), f"mlalign {name}: {names}"
            seen.add(concept)
    assert seen == set(FLAGS)  # every concept of the table is in use


@pytest.mark.parametrize(
    ("argv", "param", "value"),
    [
        (["eval", "-m", "M", "--output_path", "res"], "output_path", Path("res")),  # lm-eval's spelling
        (["eval", "--model_name_or_path", "M", "--batch_size", "4"], "batch_size", "4"),
        (["merge", "--adapter", "A", "--output_dir", "merged"], "adapter", Path("A")),  # the old spelling
        (["data", "build-qt", "--n", "3", "--source", "snli", "--format", "qalign", "--out", "d"], "n", 3),
        (["run", "--languages", "de", "--qt_source", "paws"], "langs", "de"),
    ],
)
def test_aliases_parse_to_the_same_options(argv: list[str], param: str, value) -> None:
    words = 2 if argv[0] in ("data", "analyze") else 1  # the command's name: `eval`, `data build-qt`
    cmd = typer.main.get_command(cli.app)
    for part in argv[:words]:
        cmd = cmd.commands[part]
    ctx = cmd.make_context(cmd.name, argv[words:])
    assert ctx.params[param] == value


def test_the_trainer_takes_the_same_concepts() -> None:
    from mlalign_trainer import sft

    for argv in (
        ["--model", "M", "--out", "o", "--langs", "de", "--examples-per-language", "3"],
        ["-m", "M", "--output_dir", "o", "--languages", "de", "--examples_per_language", "3"],
    ):
        qt, args, model_args = sft.parse_args(argv)
        assert (model_args.model_name_or_path, args.output_dir, qt.languages, qt.examples_per_language) == (
            "M", "o", "de", 3,
        )  # fmt: skip


def test_readme_table_is_the_vocabulary() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Command-line vocabulary", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| `([^`]+)` \| (.+?) \|$", section, flags=re.M)
    table = {concept: (flag, *re.findall(r"`([^`]+)`", rest)) for concept, flag, rest in rows}
    assert table == FLAGS


@pytest.mark.parametrize(
    ("argv", "bad"),
    [
        (["merge", "--peft", "A", "--out", "o", "--dtype", "auto"], "auto"),
        (["data", "build-qt", "--out", "o", "--qt-source", "wiki"], "wiki"),
        (["data", "build-qt", "--out", "o", "--prompt-format", "alpaca"], "alpaca"),
        (["run", "--qt-source", "wiki"], "wiki"),
        (["analyze", "pca", "--model", "M", "--out", "o", "--dtype", "fp8"], "fp8"),
        (["analyze", "logit-lens", "--model", "M", "--langs", "de", "--out", "o", "--task", "xnli"], "xnli"),
    ],
)
def test_choices_are_refused_before_anything_runs(argv: list[str], bad: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, argv)
    assert result.exit_code == 2 and f"'{bad}' is not one of" in result.output, result.output


def test_run_help_shows_the_defaults_that_depend_on_the_model() -> None:
    """Help texts are rich markup: an unescaped '[default: ...]' would be taken for a style tag and vanish."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["run", "--help"], env={"COLUMNS": "250"})
    text = " ".join(result.output.replace("│", " ").split())
    for shown in ("[default: a recipe's; toy qaa,qab; tiny de,zh]", "[default: toy 32, tiny 8; a real model: auto]"):
        assert shown in text, text

"""Hostile YAML in every file a user hands us: `run --recipe`, `train --config` and a board's `--manifest` refuse
an alias bomb, deep nesting, an oversized file and non-UTF-8 text with one line, before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlalign_trainer import sft
from typer.testing import CliRunner

from mlalign_tasks.cli import app
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.yaml_files import MAX_BYTES, MAX_DEPTH, MAX_NODES
from mlalign_tasks.leaderboard import make_leaderboard

# 10 levels of 10 aliases each: 10**10 leaves once expanded
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 11)
)
HOSTILE = {
    "bomb": (BOMB.encode(), f"expands to more than {MAX_NODES} values"),
    "loop": (b"a: &a [1, *a]\n", "an alias names a value that contains it"),
    "deep": (b"learning_rate: " + b"[" * 100_000 + b"]" * 100_000, f"nests deeper than {MAX_DEPTH} levels"),
    "latin1": ("learning_rate: 1e-4 # réglé\n".encode("latin-1"), r"is not UTF-8 text \(byte 23\); save it as UTF-8"),
    "huge": (b"# " + b"x" * MAX_BYTES + b"\n", "is larger than 1 MiB"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_yaml_is_one_line_error_everywhere(tmp_path: Path, kind: str) -> None:
    content, message = HOSTILE[kind]
    hostile = tmp_path / "hostile.yaml"
    hostile.write_bytes(content)

    with pytest.raises(MlalignError, match=f"recipe {hostile} .*{message}") as caught:
        sft.main(["--config", str(hostile)])
    assert "\n" not in str(caught.value)

    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "--recipe", str(hostile), "--out", str(out)])
    assert isinstance(result.exception, MlalignError), result.output
    assert f"recipe {hostile} " in str(result.exception) and not out.exists()

    board = tmp_path / "board"
    with pytest.raises(MlalignError, match=f"manifest {hostile} .*{message}"):
        make_leaderboard([tmp_path / "absent"], board, hostile)
    assert not board.exists()


def test_ordinary_yaml_with_aliases_still_loads(tmp_path: Path) -> None:
    """`yaml.safe_dump` writes a list used twice as an anchor and an alias: such files load as before."""
    import yaml

    from mlalign_tasks.files.yaml_files import read_yaml

    langs = ["de", "fr"]
    value = {"models": [{"match": "a", "languages": langs}, {"match": "b", "languages": langs}], "name": "modèle"}
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(value, allow_unicode=True), encoding="utf-8")
    assert "*id001" in path.read_text(encoding="utf-8")
    assert read_yaml(path, "manifest") == value
    path.write_text("base: &base {lr: 0.1}\nstage: {<<: *base, seed: 1}\nnested: [1, [2, [3]]]\n")
    assert read_yaml(path, "recipe") == {"base": {"lr": 0.1}, "stage": {"lr": 0.1, "seed": 1}, "nested": [1, [2, [3]]]}

"""What a model name is (a built-in name, a local folder, a Hugging Face id) is decided before anything is written:
a typo of a built-in name and a Hub the run cannot reach are one line at once, not a minute of retries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlalign(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "mlalign"), *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_a_mistyped_built_in_name_is_named_and_nothing_is_written(tmp_path) -> None:
    proc = mlalign(tmp_path, "run", "--model", "tny", "--limit", "2", HF_HUB_OFFLINE="0")
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert (
        proc.stderr
        == "error: --model tny is neither a built-in model (toy, tiny, gemma-3-270m) nor a folder here; did you mean tiny?\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["run", "--model", "{id}"], ["eval", "-m", "{id}", "--output-path", "out"]])
def test_a_hub_id_without_the_hub_is_one_line_at_once(tmp_path, command) -> None:
    """Offline mode, and a Hub that refuses the connection (the endpoint of a closed local port): one line naming
    the cause, no retries, nothing written."""
    args = [a.replace("{id}", "no-such-org/no-such-model") for a in command]
    offline = mlalign(tmp_path, *args, HF_HUB_OFFLINE="1")
    assert offline.returncode == 2 and offline.stderr.count("\n") == 1, offline.stderr
    assert "is not in the Hugging Face cache and HF_HUB_OFFLINE is set; pass a local model folder" in offline.stderr
    endpoint = f"http://127.0.0.1:{closed_port()}"
    unreachable = mlalign(tmp_path, *args, HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint)
    assert unreachable.returncode == 2 and unreachable.stderr.count("\n") == 1, unreachable.stderr
    assert f"the Hub ({endpoint}) cannot be reached (" in unreachable.stderr
    assert list(tmp_path.iterdir()) == []


def test_names_that_are_accepted(tmp_path, tiny_model_dir) -> None:
    from mlalign_tasks.errors import MlalignError
    from mlalign_tasks.models.model_paths import check_model_name

    check_model_name("tiny", "--model", ("toy", "tiny"))  # built-in
    check_model_name(str(tiny_model_dir), "--model", ("toy", "tiny"))  # a model folder
    with pytest.raises(MlalignError, match="is neither a folder here nor a Hugging Face id"):
        check_model_name("owner/bad name", "--model")
    with pytest.raises(MlalignError, match="did you mean toy"):
        check_model_name("tyo", "--model", ("toy", "tiny"))
    check_model_name("gemma-3-270m", "--model")  # a packaged GGUF model, installed when it is used
    with pytest.raises(MlalignError, match="did you mean gemma-3-270m"):
        check_model_name("gemma-3-27m", "--model")
    with pytest.raises(
        MlalignError, match="^--model nope.gguf: no such GGUF file; pass the path of a .gguf model file$"
    ):
        check_model_name("nope.gguf", "--model")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")  # its content is checked where it is converted
    check_model_name(str(tmp_path / "m.gguf"), "--model")

"""No alarming noise: git's complaint under lm-eval outside a repository, transformers' renames of trainer flags."""

from __future__ import annotations

import subprocess
import warnings

from mlalign_tasks.runtime.quiet import git_hash_quietly


def test_lm_evals_git_hash_is_quiet_outside_a_repository(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert git_hash_quietly() is None
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"])
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_hash_quietly() == head
    assert capfd.readouterr().err == ""


def test_parsing_trainer_flags_raises_no_future_warnings():
    """`mlalign run` parses the trainer's flags before every stage, even when all are skipped."""
    from mlalign_trainer import sft

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sft.parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--gradient_checkpointing", "true"])
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]

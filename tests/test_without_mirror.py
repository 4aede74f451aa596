"""A pip user's first run: mlalign from its wheel in a fresh venv, outside any repository, without the data mirror.

Every file is downloaded from a local HTTP server serving the pinned files under their canonical URLs (the paper
tasks' prompts come from the package), and it shows no library noise.
"""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.slow
# Library noise a user should not see: git outside a repository (lm-eval), bitsandbytes' optional `kernels`,
# transformers' renames, the trainer on a recipe's languages the run replaced.
NOISE = ("fatal: not a git repository", "No module named 'kernels'", "FutureWarning", "replaces --languages")


def test_mlalign_run_from_the_wheel_downloads_what_it_needs(wheel_venv, mirror_http, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLALIGN_DATA_DIR"} | {
        "MLALIGN_DATA_URL": mirror_http.url,
        "MLALIGN_CACHE_DIR": str(tmp_path / "cache"),
        "MLALIGN_OFFLINE": "0",
        "HF_HUB_OFFLINE": "0",
        "PATH": f"{wheel_venv / 'bin'}:{os.environ['PATH']}",
    }
    args = [
        "--model", "tiny", "--langs", "de", "--examples-per-language", "4", "--train-flag=--max_steps=1",
        "--tasks", "mgsm_aligned:de,paper_aligned:de,sentiment_native_aligned:th", "--limit", "2",
        "--max-gen-toks", "4", "--analysis-limit", "2", "--out", "runs/first", "--board", "board",
    ]  # fmt: skip
    proc = subprocess.run(
        ["mlalign", "run", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cached = {p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert {
        "mgsm/mgsm_de.tsv",
        "paper_tasks/snli/snli_de600_test.json",
        "paper_tasks/ap_emotion/emotion_th500_test.json",
        "question_translation/gsm8k/de-en/train.de",
    } <= cached
    assert "paper_tasks/prompts.json" not in cached  # packaged
    assert (tmp_path / "board" / "index.html").is_file() and (tmp_path / "runs/first/pca/pca.json").is_file()
    assert not [n for n in NOISE if n in proc.stdout + proc.stderr], proc.stderr[-3000:]

"""Shared fixtures: offline data from ../shared/data, an isolated cache, and one tiny model per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MLALIGN_DATA_DIR", str(SHARED_DATA))
    os.environ["MLALIGN_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("MLALIGN_CACHE_DIR", str(Path(config.rootpath) / ".pytest_cache" / "mlalign-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data mirror (tests never copy it into the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"offline data mirror not found at {SHARED_DATA}; tests need ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Llama model, built once per test session."""
    from mlalign_tasks.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")

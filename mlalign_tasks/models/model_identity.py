"""A model's identity by content, which a training run records of its base model and compares before it resumes.

A model folder is identified by its config and the weights transformers loads from it (or, for what an evaluation's
answers depend on, by every file at its top level, the tokenizer's and an adapter's too), a single-file model (a
GGUF file) by its own sha256. Each file is hashed streaming, once: a file whose stat (device, inode, size, modification
and change times) matches the one recorded with its hash keeps that hash. The change time cannot be set back, so
rewriting a file at the same path, even with its old size and modification time restored, is hashed again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mlalign_tasks.files.artefacts import MODEL_FILE
from mlalign_tasks.files.data import sha256_file


@dataclass(frozen=True)
class ModelIdentity:
    """What a local model is.

    Parameters:
        sha256: a single file's sha256; for a folder, the sha256 of its files' ``sha256sum`` lines.
        files: each file by name: its ``sha256`` and the ``stat`` it was hashed at (JSON-ready, to reuse later).
    """

    sha256: str
    files: dict[str, dict]


def model_files(path: Path, every_file: bool = False) -> list[Path]:
    """The files that make the model at `path`: a file itself, or a folder's config and its ``*.safetensors`` weights
    (else its ``*.bin`` ones: transformers loads the first kind when a folder holds both); with `every_file`, every
    file at the folder's top level."""
    if path.is_file():
        return [path]
    if every_file:
        return sorted(p for p in path.iterdir() if p.is_file())
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    return [path / MODEL_FILE, *(p for p in weights if p.is_file())]


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def local_model(name: str | Path) -> Path | None:
    """`name` as a local path: itself when it exists, else a Hugging Face id's snapshot folder in the Hub cache (the
    revision transformers loads); None for neither."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(str(name), MODEL_FILE)
    return Path(config).parent if isinstance(config, str) else None


def identify(name: str | Path, known: dict[str, dict] | None = None, every_file: bool = False) -> ModelIdentity | None:
    """The identity of the local model `name` (a folder or a file) by its `model_files`, reusing `known` hashes (a
    `ModelIdentity.files`) of files whose stat is unchanged; None for a name that is not a local path (a Hugging Face
    id: `local_model` finds its snapshot)."""
    path = Path(name).expanduser()
    if not path.exists():
        return None
    files = {}
    for file in model_files(path, every_file):
        stat = _stat(file)
        record = (known or {}).get(file.name)
        same = isinstance(record, dict) and record.get("stat") == stat and isinstance(record.get("sha256"), str)
        files[file.name] = record if same else {"sha256": sha256_file(file), "stat": stat}
    if path.is_file():
        return ModelIdentity(files[path.name]["sha256"], files)
    lines = "".join(f"{record['sha256']}  {file}\n" for file, record in sorted(files.items()))
    return ModelIdentity(hashlib.sha256(lines.encode()).hexdigest(), files)

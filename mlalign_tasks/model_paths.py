"""Model and adapter arguments: a local folder or a Hugging Face id, checked before anything asks the Hub.

transformers and PEFT read a name they cannot open as a folder as a Hub id and retry the Hub for half a minute
when it is out of reach. A name meant as a path (one that exists, or starts with ``.``, ``/`` or ``~``, or has more
than one ``/``, or whose first part is a local folder; for an adapter also one without ``/``, as adapters on the Hub
are ``owner/name``) is checked here instead: absent, or a folder without the file that makes it a model or an
adapter, is an error at once.
"""

from __future__ import annotations

from pathlib import Path

from mlalign_tasks.artefacts import ADAPTER_FILE, MODEL_FILE
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.names import check_name


def missing_local(name: str, bare_hub_ids: bool = True) -> bool:
    """True if `name` is meant as a local path (not shaped like a Hub id: ``owner/name`` where no folder ``owner``
    is here, or with `bare_hub_ids` a bare ``name`` such as ``gpt2``) but is absent."""
    if Path(name).expanduser().exists():
        return False
    if "/" not in name:
        return not bare_hub_ids
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name.split("/")[0]).is_dir()


def check_local(name: str, flag: str, marker: str = MODEL_FILE) -> None:
    """Refuse at once a path-shaped `name` that is absent, or an existing path without `marker` in it."""
    what = "PEFT adapter" if marker == ADAPTER_FILE else "model"
    path = Path(name).expanduser()
    if missing_local(name, bare_hub_ids=marker != ADAPTER_FILE):
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise MlalignError(f"{flag} {name} does not exist{where}; pass a {what} folder or a Hugging Face id")
    if path.exists() and not (path / marker).is_file():
        raise MlalignError(
            f"{flag} {name} is {'a folder' if path.is_dir() else 'a file'} without {marker}, so not a {what}; pass a "
            f"{what} folder (one holding {marker}) or a Hugging Face id"
        )


def check_model_arg(value: str, flag: str) -> None:
    """Refuse a model or adapter path that lm-eval's `model_args` string would split into other settings, or that
    holds a control character or lone surrogate (undecodable bytes on the command line)."""
    check_name(value, flag)
    if "," in value or "=" in value:
        raise MlalignError(
            f"{flag} {value!r} contains ',' or '=', which lm-eval would read as further model settings "
            "(e.g. ',trust_remote_code=True'); rename the folder or link to it from a path without them"
        )

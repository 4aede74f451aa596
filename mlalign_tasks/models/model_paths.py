"""Model and adapter arguments: a built-in name, a local folder or a Hugging Face id, checked before anything asks
the Hub.

transformers and PEFT read a name they cannot open as a folder as a Hub id and retry the Hub for half a minute
when it is out of reach. A name meant as a path (one that exists, or starts with ``.``, ``/`` or ``~``, or has more
than one ``/``, or whose first part is a local folder; for an adapter also one without ``/``, as adapters on the Hub
are ``owner/name``) is checked here instead: absent, or a folder without the file that makes it a model or an
adapter, is an error at once. A name near a built-in one is named as the likely typo, and a Hub id that is not in
the Hugging Face cache is refused at once when the Hub is switched off (HF_HUB_OFFLINE) or does not answer one try.
"""

from __future__ import annotations

import difflib
import functools
import urllib.error
import urllib.request
from collections.abc import Collection
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import ADAPTER_FILE, MODEL_FILE
from mlalign_tasks.files.names import check_name
from mlalign_tasks.models.gguf_models import PACKAGED, gguf_file, is_gguf

HUB_PROBE_TIMEOUT = 5.0  # seconds of the one try that tells whether the Hub answers


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


def check_model_name(name: str, flag: str, builtin: Collection[str] = ()) -> None:
    """Refuse at once a model name that is none of: a `builtin` name, a local model folder, a Hugging Face id that
    is cached or that the Hub can serve now, a packaged model's name (`PACKAGED`), a GGUF file. A bare name near a
    built-in one is named as the likely typo."""
    builtin = (*builtin, *PACKAGED)
    if name in builtin:
        return
    if is_gguf(name):
        gguf_file(name, flag)
        return
    close = difflib.get_close_matches(name, builtin, n=1) if "/" not in name else []
    if close and not Path(name).expanduser().exists():
        raise MlalignError(
            f"{flag} {name} is neither a built-in model ({', '.join(builtin)}) nor a folder here; did you mean "
            f"{close[0]}?"
        )
    check_local(name, flag)
    if not Path(name).expanduser().exists():
        check_hub_id(name, flag)


def check_hub_id(name: str, flag: str) -> None:
    """Refuse a Hub id of the wrong shape, or one not in the Hugging Face cache while the Hub is out of reach."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as e:
        raise MlalignError(f"{flag} {name!r} is neither a folder here nor a Hugging Face id ({e})") from None
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    local = "pass a local model folder, or download it where there is network (`hf download MODEL`)"
    if constants.HF_HUB_OFFLINE:
        raise MlalignError(f"{flag} {name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {local}")
    if reason := hub_unreachable(constants.ENDPOINT):
        raise MlalignError(
            f"{flag} {name} is not in the Hugging Face cache and the Hub ({constants.ENDPOINT}) cannot be reached "
            f"({reason}); {local}"
        )


@functools.cache
def hub_unreachable(endpoint: str) -> str | None:
    """Why `endpoint` does not answer one request (no retries, `HUB_PROBE_TIMEOUT`), or None when it answers."""
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_PROBE_TIMEOUT):
            return None
    except urllib.error.HTTPError:  # an answer, whatever its status
        return None
    except (urllib.error.URLError, OSError) as e:
        return str(getattr(e, "reason", e))

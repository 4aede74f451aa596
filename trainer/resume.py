"""How training resumes: a run's output folder is new, resumed or finished (`check_run_dir`: the settings and the
model it recorded when it started, in ``mlalign_run.json``, must be this run's), and a resumed run goes on from its
last complete checkpoint (`last_complete_checkpoint`). `mlalign_trainer.sft.train_into` asks both, in that order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlalign_trainer.metadata import read_json_file

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import METADATA_FILE, RUN_FILE
from mlalign_tasks.files.atomic import write_json_atomic
from mlalign_tasks.files.output_dirs import check_replaceable


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_run_dir(output_dir: Path, settings: dict) -> str:
    """State of `output_dir` for a run with `settings`: 'new', 'resume' or 'finished'.

    Raises MlalignError when the directory holds something else, or a run with other settings.
    """
    run_file = output_dir / RUN_FILE
    if not run_file.is_file():  # output_dirs' one rule: absent, empty, or a run (holding RUN_FILE)
        check_replaceable(
            output_dir, "--output_dir", kind="an mlalign training run (it holds no mlalign training run)",
            fix="choose a new --output_dir or empty it",
        )  # fmt: skip
        return "new"
    recorded = read_json_file(run_file, "; delete the output directory and start again").get("settings", {})
    if "model_sha256" in recorded and recorded["model_sha256"] != settings.get("model_sha256"):
        raise MlalignError(
            f"output directory {output_dir} holds a run of the model {_model(recorded)}, and {_model(settings)} is "
            "another model; give the run's model to resume it, or choose a new --output_dir"
        )
    previous = _flatten(recorded)
    current = _flatten(settings)
    changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    if changed:
        diffs = "; ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in changed[:6])
        diffs += f"; and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise MlalignError(
            f"output directory {output_dir} holds a run with other settings ({diffs}); rerun with the same "
            f"settings to resume it, or choose a new --output_dir"
        )
    return "finished" if (output_dir / METADATA_FILE).is_file() else "resume"


def _model(settings: dict) -> str:
    """The model a run trains, by path and content (`model_sha256`, see `mlalign_tasks.models.model_identity`)."""
    digest = settings.get("model_sha256")
    path = settings.get("hyperparameters", {}).get("model_name_or_path")
    return f"{path} ({f'sha256 {digest[:16]}' if digest else 'not a local model'})"


def write_run_file(output_dir: Path, settings: dict, model_files: dict) -> None:
    """Record the run's settings, and the model's files as hashed (reused on resume while their stat holds)."""
    write_json_atomic(output_dir / RUN_FILE, {"settings": settings, "model_files": model_files})


def recorded_model_files(output_dir: Path) -> dict:
    """The model files the run in `output_dir` hashed when it started; {} for none (or an unreadable run file)."""
    try:
        files = json.loads((output_dir / RUN_FILE).read_text(encoding="utf-8")).get("model_files")
    except (OSError, ValueError, RecursionError, AttributeError):  # check_run_dir says what is wrong with it
        return {}
    return files if isinstance(files, dict) else {}


def _complete(checkpoint: Path) -> bool:
    """Whether `checkpoint` holds a whole ``trainer_state.json`` (the Trainer writes it last); one nested too deeply
    to read was not cut off but written by something else: an MlalignError, and the checkpoint is kept."""
    state = checkpoint / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    except RecursionError:
        raise MlalignError(
            f"{state} nests its JSON too deeply to be a Trainer state; move {checkpoint} away to resume from the "
            "checkpoint before it"
        ) from None
    return True


def last_complete_checkpoint(output_dir: Path, remove_incomplete: bool = True) -> str | None:
    """The newest ``checkpoint-N`` holding a readable ``trainer_state.json``.

    Newer checkpoints without one were cut off mid-save (e.g. by SIGKILL, or a full disk) and are removed.
    """
    from transformers.trainer_utils import get_last_checkpoint

    while (last := get_last_checkpoint(str(output_dir))) is not None:
        if _complete(Path(last)):
            return last
        if not remove_incomplete:
            return None
        print(f"removing incomplete checkpoint {last} (cut off while saving)")
        shutil.rmtree(last)
    return None

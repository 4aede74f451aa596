"""Run records in the output directory: the settings of a run (``mlalign_run.json``, written when it starts)
and the training metadata of a finished adapter (``mlalign_training.json``, written last; read by the leaderboard).
"""

from __future__ import annotations

import json
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import METADATA_FILE, RUN_FILE
from mlalign_tasks.files.atomic import write_json_atomic
from mlalign_tasks.files.output_dirs import check_replaceable
from mlalign_tasks.files.versions import package_versions

_VERSIONED = ("mlalign", "torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets")


def read_json_file(path: Path, fix: str = "") -> dict:
    """A JSON object that a run wrote; unreadable, nested too deeply or not an object: one clear error, with `fix`
    (e.g. "; start again") appended."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MlalignError(f"cannot read {path} ({e}){fix}") from None
    except RecursionError:
        raise MlalignError(f"cannot read {path} (its JSON nests too deeply){fix}") from None
    if not isinstance(value, dict):
        raise MlalignError(f"cannot read {path} (a JSON {type(value).__name__}, not an object){fix}")
    return value


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


_HISTORY = ("versions", "mlalign_version", "stages", "seen_languages")


def stage_record(meta: dict) -> dict:
    """One training stage as a run's metadata describes it: its data, settings and result (no versions, no history)."""
    return {k: v for k, v in meta.items() if k not in _HISTORY}


def seen_languages(stages: list[dict]) -> list[str]:
    """The languages other than English that any stage trained on (translating from or into), in order."""
    langs = [lang for stage in stages for lang in [*stage.get("languages", []), stage.get("target_language", "en")]]
    return [lang for lang in dict.fromkeys(langs) if lang != "en"]


def training_metadata(
    settings: dict, seed: int, final_loss: float | None, global_step: int, previous_stages=(), **extra
) -> dict:
    """The metadata of a finished run (``mlalign_training.json``, which the leaderboard reads): this stage at the top
    level, and ``stages``, every stage that made the model (those of the ``--init_from`` it continued, then this one);
    ``seen_languages`` is what the leaderboard counts as seen."""
    from mlalign_tasks import __version__

    meta = {
        "base_model": settings["base_model"],
        "model_sha256": settings["model_sha256"],
        "stage": settings["stage"],
        "init_from": settings["init_from"],
        "languages": settings["languages"],
        "target_language": settings["target_language"],
        "examples_per_language": settings["examples_per_language"],
        "data_hash": settings["data_hash"],
        "data_source": settings["data_source"],
        "hyperparameters": settings["hyperparameters"],
        "versions": package_versions(*_VERSIONED),
        "seed": seed,
        "final_loss": final_loss,
        "global_step": global_step,
        "mlalign_version": __version__,
        **extra,
    }
    meta["stages"] = [*previous_stages, stage_record(meta)]
    meta["seen_languages"] = seen_languages(meta["stages"])
    return meta

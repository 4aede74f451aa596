"""The training metadata of a finished adapter (``mlalign_training.json``, written last; read by the leaderboard), and
the reading of the JSON files a run writes. The settings a run records when it starts are `resume`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlalign_tasks.errors import MlalignError
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

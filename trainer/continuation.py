"""Where stage II starts: ``--init_from`` names a stage-I output, a LoRA adapter or a full model.

An adapter goes on training: the base model is loaded as stage I loaded it and the adapter's own LoRA weights are
the trainable ones (its rank, alpha, dropout and target modules replace the flags'). A full model (a merge of a
stage-I adapter, or a full fine-tune) is the model stage II loads, with a new adapter or in full; with
``--merge_init_from`` the run merges the adapter itself, into its output directory (`merged`). Either way the
stage-I run's metadata, when it is there, becomes the first stages of the new run's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mlalign_trainer.metadata import read_json_file

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import ADAPTER_FILE, MERGED_START_DIR, METADATA_FILE, MODEL_FILE


@dataclass(frozen=True)
class StartPoint:
    """A stage-I output that stage II continues."""

    path: Path
    adapter: bool  # a LoRA adapter (else a full model)
    base_model: str  # the model stage I started from
    metadata: dict | None  # its mlalign_training.json

    def record(self) -> dict:
        """What the run's settings say about it (compared on resume, recorded in the metadata)."""
        meta = self.path / METADATA_FILE
        digest = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else None
        return {"path": str(self.path), "kind": "adapter" if self.adapter else "model", "metadata_sha256": digest}

    def previous_stages(self) -> list[dict]:
        """The stages that made it, oldest first (one for a stage-I output whose metadata has no history)."""
        from mlalign_trainer.metadata import stage_record

        if self.metadata is None:
            return []
        return self.metadata.get("stages") or [stage_record(self.metadata)]


def start_point(init_from: str) -> StartPoint:
    """The stage-I output at `init_from`, checked."""
    path = Path(init_from).expanduser().resolve()
    if not path.is_dir():
        raise MlalignError(f"--init_from {init_from}: no such directory (give a stage-I output of `mlalign train`)")
    meta = read_json_file(path / METADATA_FILE) if (path / METADATA_FILE).is_file() else None
    if (path / ADAPTER_FILE).is_file():
        base = read_json_file(path / ADAPTER_FILE).get("base_model_name_or_path")
        if not base:
            raise MlalignError(f"--init_from {init_from}: {ADAPTER_FILE} names no base model")
        return StartPoint(path, True, str(base), meta)
    if (path / MODEL_FILE).is_file():
        return StartPoint(path, False, str((meta or {}).get("base_model") or path), meta)
    raise MlalignError(f"--init_from {init_from} is neither a LoRA adapter ({ADAPTER_FILE}) nor a model ({MODEL_FILE})")


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.resolve() == pb.resolve() if pa.is_dir() and pb.is_dir() else a == b


def configure(start: StartPoint, model_args, merge: bool = False) -> list[str]:
    """Set `model_args` to continue from `start` (`merge`: its adapter merged, by `merged`, under a new adapter of
    the flags' shape); returns notes on the flags it replaced."""
    given = model_args.model_name_or_path
    if given and not _same_model(given, start.base_model):
        raise MlalignError(
            f"--model_name_or_path {given} is not the model {start.path} was trained from ({start.base_model}); "
            "drop it, or give that model"
        )
    if not start.adapter:
        if merge:
            raise MlalignError(
                f"--merge_init_from: --init_from {start.path} is a full model already, with nothing to merge; drop "
                "--merge_init_from"
            )
        model_args.model_name_or_path = str(start.path)
        return []
    if not model_args.use_peft:
        raise MlalignError(
            "--merge_init_from trains a new adapter on the merged model: keep --use_peft true"
            if merge
            else f"--init_from {start.path} is a LoRA adapter, which stage II trains on (--use_peft true); to "
            "fine-tune the whole model from it, merge it first (`mlalign merge`) and give the merged model"
        )
    model_args.model_name_or_path = start.base_model  # with `merge`, until `merged` has written the merged model
    if merge:
        return []  # the new adapter takes the flags' rank and target modules
    config = read_json_file(start.path / ADAPTER_FILE)
    targets = config.get("target_modules")
    adapter = {
        "lora_r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "lora_dropout": config.get("lora_dropout"),
        "lora_target_modules": sorted(targets) if isinstance(targets, list | set) else targets,
    }
    notes = []
    for name, value in adapter.items():
        current = getattr(model_args, name)
        current = sorted(current) if isinstance(current, list) else current
        if value is not None and current != value:
            notes.append(f"--{name} {current} -> {value} (the adapter's)")
            setattr(model_args, name, value)
    return notes


def merged(start: StartPoint, out: Path, dtype: str | None) -> StartPoint:
    """`start`'s adapter merged into its base model in `out`/init-merged (in `dtype`, the one training loads; kept
    from an interrupted attempt of the same run), as the full model that stage II trains a new adapter on."""
    from mlalign_trainer.merge import merge_adapter

    from mlalign_tasks.models.model_loading import DTYPES

    target = out / MERGED_START_DIR
    if not (target / MODEL_FILE).is_file():  # written whole (merge_adapter), or not at all
        merge_adapter(start.path, target, base=start.base_model, dtype=dtype if dtype in DTYPES else "float32")
    return StartPoint(target.resolve(), False, start.base_model, start.metadata)

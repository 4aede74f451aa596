"""What a run records, and how a rerun is checked against it.

The run folder's `STUDY_FILE` holds the run's options (`options_record`) and what they compute (`computed`), which
a board the run published holds too (`BOARD_RECORD`); `check_config` checks the device and folders before the first
stage runs, and refuses a run folder or board holding another configuration's results unless replaced
(`check_same_run`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.output_dirs import check_replaceable
from mlalign_tasks.models.model_loading import resolve_device
from mlalign_tasks.pipeline.study_options import EvalOptions, StudyConfig
from mlalign_tasks.tasks.label_scoring import Gold

STUDY_FILE = "study.json"  # the options of the last run: marks a folder as an `mlalign run` folder
BOARD_RECORD = "mlalign_study.json"  # in a board `mlalign run` published: what the run computed (`computed`)
COMPUTED_KEY = "computed"  # in STUDY_FILE: `computed`'s record
NOT_COMPUTED = ("out", "board", "device", "data_dir", "defaulted")  # options that leave the results as they are


def _evaluation_record(options: EvalOptions) -> dict:
    """The evaluation options as the records hold them: the gold rule only where it is not the default, as runs
    recorded them before it was an option."""
    record = asdict(options)
    if record["gold"] is Gold.english:
        del record["gold"]
    return record


def options_record(cfg: StudyConfig) -> dict:
    """The run's options as JSON values, as `STUDY_FILE` records them: the seed in each stage's options, where
    earlier runs recorded it (their records must stay equal for them to resume)."""
    record = asdict(cfg) | {"evaluation": _evaluation_record(cfg.evaluation)}
    seed = record.pop("seed")
    for options in ("data", "evaluation", "analysis"):
        record[options]["seed"] = seed
    return json.loads(json.dumps(record, default=str))


def computed(cfg: StudyConfig) -> dict:
    """What the run computes (its options but where it writes and runs, `NOT_COMPUTED`), as JSON values: a run
    folder or board holding another one's results is not replaced unasked."""
    record = options_record(cfg)
    record["model"] = cfg.kind or cfg.model
    return {key: value for key, value in record.items() if key not in NOT_COMPUTED}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two records, with both values."""
    found = []
    for key in dict.fromkeys([*new, *old]):  # in the order of the options (model first)
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key} {a} -> {b}")
    return found


def check_same_run(record_file: Path, flag: str, cfg: StudyConfig, replace: bool) -> None:
    """Refuse (one line, nothing written) when `record_file` names another configuration than `cfg`'s, unless
    `replace`."""
    if replace or not record_file.is_file():
        return
    try:
        recorded = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, dict) and record_file.name == STUDY_FILE:  # the run's options, and what they compute
        recorded = recorded.get(COMPUTED_KEY)
    current = computed(cfg)
    if recorded == current:
        return
    changes = (
        _differences(recorded, current)
        if isinstance(recorded, dict)
        else [f"{record_file.name} records none: an earlier mlalign wrote it, or it is damaged"]
    )
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    raise MlalignError(
        f"{flag} {record_file.parent} holds the results of another configuration ({'; '.join(changes[:3])}{more}); "
        f"nothing was written: add --replace to replace them, or choose another {flag}"
    )


def check_config(cfg: StudyConfig, replace: bool = False) -> None:
    """Check what the options cannot check alone (device, data and output folders) before the first stage runs,
    so that no bad flag surfaces after hours of training; a run folder or board holding another configuration's
    results is refused unless `replace`."""
    from mlalign_tasks.files import data
    from mlalign_tasks.leaderboard.folder import check_board_folder

    resolve_device(cfg.device, cfg.evaluation.load_in_4bit)
    data.explicit_dir(cfg.data_dir)  # a --data-dir or MLALIGN_DATA_DIR that is not a folder
    for flag, path in (("--out", cfg.out), ("--board", cfg.board)):
        if any(p.exists() and not p.is_dir() for p in (path, *path.parents)):
            raise MlalignError(f"{flag} {path}: it or a parent folder is a file; choose a folder path")
    check_replaceable(cfg.out, "--out", (STUDY_FILE,), f"an `mlalign run` folder (no {STUDY_FILE})")
    board, out = cfg.board.resolve(), cfg.out.resolve()
    if board.is_relative_to(out) or out.is_relative_to(board):
        raise MlalignError(
            f"--board {cfg.board} and --out {cfg.out} overlap (a stage replaces its whole folder, the board too); "
            "choose a board folder outside --out"
        )
    check_board_folder(cfg.board, "--board")
    check_same_run(cfg.out / STUDY_FILE, "--out", cfg, replace)
    if not replace and cfg.board.is_dir() and any(cfg.board.iterdir()) and not (cfg.board / BOARD_RECORD).is_file():
        raise MlalignError(
            f"--board {cfg.board} holds a leaderboard that `mlalign run` did not publish; nothing was written: add "
            "--replace to replace it, or choose another --board"
        )
    check_same_run(cfg.board / BOARD_RECORD, "--board", cfg, replace)

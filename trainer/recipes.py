"""Shipped configuration files, and how a recipe becomes the trainer's flags.

A recipe is a YAML mapping of trainer flags. A two-stage recipe (QAlign's) also holds ``stages:``, one mapping of
flags per stage (``question``, ``response``) over the shared ones: ``--stage NAME`` picks one, and its flags win
over the shared ones. Flags on the command line win over the recipe.
"""

from __future__ import annotations

from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.yaml_files import read_yaml

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"
STAGES_KEY = "stages"
STAGE_NAMES = ("question", "response")


def shipped_configs() -> dict[str, Path]:
    """Name -> path of every shipped recipe and accelerate config (`mlalign recipes` lists them)."""
    return {p.stem: p for folder in (RECIPES_DIR, ACCELERATE_DIR) for p in sorted(folder.glob("*.yaml"))}


def config_path(name: str) -> Path:
    """A YAML file given by path, or a shipped recipe / accelerate config by name (e.g. 'qwen2.5-1.5b-12gb')."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if found := shipped_configs().get(path.name.removesuffix(".yaml")):
        return found
    recipes = ", ".join(p.stem for p in sorted(RECIPES_DIR.glob("*.yaml")))
    accelerate = ", ".join(p.stem for p in sorted(ACCELERATE_DIR.glob("*.yaml")))
    raise MlalignError(
        f"{name!r} is neither a file nor a shipped recipe (recipes: {recipes}; accelerate configs: {accelerate})"
    )


def recipe_path(name: str) -> Path:
    """A trainer recipe by file path or name (not an accelerate config)."""
    path = config_path(name)
    if path.parent == ACCELERATE_DIR:
        raise MlalignError(f"{name!r} is an accelerate config, not a trainer recipe")
    return path


def read_recipe(path: Path) -> dict:
    """The recipe's mapping, its stages checked."""
    values = read_yaml(path, "recipe") or {}
    if not isinstance(values, dict):
        raise MlalignError(f"recipe {path} must be a mapping of trainer flags")
    stages = values.get(STAGES_KEY, {})
    if (
        not isinstance(stages, dict)
        or set(stages) - set(STAGE_NAMES)
        or not all(isinstance(v, dict) for v in stages.values())
    ):
        raise MlalignError(
            f"recipe {path}: '{STAGES_KEY}' must map stage names ({', '.join(STAGE_NAMES)}) to mappings of flags"
        )
    return values


def stages(values: dict) -> list[str]:
    """The stages a recipe defines, in training order (empty for a one-stage recipe)."""
    return [name for name in STAGE_NAMES if name in values.get(STAGES_KEY, {})]


def stage_flags(values: dict, stage: str, path: Path) -> dict:
    """The flags of `stage`: the shared ones, then the stage's own (a one-stage recipe: all of it)."""
    shared = {k: v for k, v in values.items() if k != STAGES_KEY}
    if not stages(values):
        return shared
    if stage not in values[STAGES_KEY]:
        raise MlalignError(f"recipe {path} has no {stage} stage (it has: {', '.join(stages(values))})")
    return {**shared, "stage": stage, **values[STAGES_KEY][stage]}


def split_config_flag(argv: list[str]) -> tuple[Path | None, list[str]]:
    """(recipe path, the other arguments) from ``--config NAME|FILE`` or ``--config=NAME|FILE`` in `argv`."""
    path, rest = None, []
    args = iter(argv)
    for arg in args:
        if arg == "--config" or arg.startswith("--config="):
            value = arg.split("=", 1)[1] if "=" in arg else next(args, None)
            if value is None:
                raise MlalignError("--config needs a recipe name or a YAML file")
            path = config_path(value)
        else:
            rest.append(arg)
    return path, rest


def stage_flag(argv: list[str]) -> str:
    """The ``--stage`` given in `argv` (the first stage, question, if none)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--stage="):
            return arg.split("=", 1)[1]
        if arg == "--stage" and i + 1 < len(argv):
            return argv[i + 1]
    return STAGE_NAMES[0]

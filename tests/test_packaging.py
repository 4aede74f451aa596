"""The wheel: every file the code reads at run time is inside it and is found from the installed layout (a fresh
venv holding the wheel)."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Run from the unpacked wheel: the packages must come from there, not from the source tree.
PROBE = """
import json, sys
from pathlib import Path
import mlalign_tasks, mlalign_trainer
from mlalign_tasks.files import data
from mlalign_tasks.pipeline import evaluate
from mlalign_tasks.models import tiny_model, toy_model
from mlalign_trainer import recipes
tasks = evaluate.tasks_dir()
print(json.dumps({
    "packages": [mlalign_tasks.__file__, mlalign_trainer.__file__, str(tasks)],
    "recipes": sorted(p.stem for p in recipes.RECIPES_DIR.glob("*.yaml")),
    "configs": {name: str(path) for name, path in recipes.shipped_configs().items()},
    "recipe": str(recipes.recipe_path("qwen2.5-1.5b-12gb")),
    "yaml": len(list(tasks.rglob("*.yaml"))),
    "templates": len(list(tasks.rglob("_template_yaml"))),
    "hooks": len(list(tasks.rglob("*.py"))),
    "accelerate": (Path(mlalign_trainer.__file__).parent / "accelerate" / "cpu_ddp.yaml").is_file(),
    "board_template": (Path(mlalign_tasks.__file__).parent / "leaderboard" / "templates" / "index.html.j2").is_file(),
    "vocab": len(tiny_model.build_tokenizer(512)),
    "registry": len(data.registry()),
    "prompts": str(data.resolve("paper_tasks/prompts.json")),
    "toy_model": toy_model.packaged_record()["weights_sha256"],
}))
"""


def test_wheel_holds_recipes_tasks_and_resources(wheel_venv, tmp_path):
    site = wheel_venv / "lib"
    proc = subprocess.run(
        [wheel_venv / "bin" / "python", "-c", PROBE],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "MLALIGN_DATA_DIR"},  # the prompts: from the package
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(p.startswith(str(site)) for p in got["packages"]), got["packages"]
    assert got["recipes"] == sorted(p.stem for p in (ROOT / "trainer" / "recipes").glob("*.yaml"))
    assert got["recipe"].startswith(str(site))
    assert set(got["configs"]) == {*got["recipes"], "cpu_ddp"}
    assert all(path.startswith(str(site)) for path in got["configs"].values())
    source_tasks = ROOT / "tasks_yaml"
    assert got["yaml"] == len(list(source_tasks.rglob("*.yaml"))) > 80
    assert got["templates"] == len(list(source_tasks.rglob("_template_yaml"))) > 0
    assert got["hooks"] == len(list(source_tasks.rglob("*.py"))) > 0
    assert got["accelerate"] and got["board_template"]
    assert got["vocab"] == 512  # BPE merges learnt from the packaged corpus (bytes alone give 256 + specials)
    assert got["prompts"].startswith(str(site))  # the packaged prompts, verified against their pinned sha256
    assert got["registry"] == len(json.loads((ROOT / "mlalign_tasks" / "data_registry.json").read_text()))
    shipped = ROOT / "mlalign_tasks" / "resources" / "toy_model" / "model.safetensors.xz"
    assert got["toy_model"] == hashlib.sha256(lzma.decompress(shipped.read_bytes())).hexdigest()  # run's default


def _lock() -> dict[str, str]:
    """pylock.toml as {canonical name: version}; one release of each package, every file from PyPI with its sha256."""
    import tomllib

    from packaging.utils import canonicalize_name

    lock = tomllib.loads((ROOT / "pylock.toml").read_text())
    assert lock["lock-version"] == "1.0"
    packages = lock["packages"]
    for pkg in packages:
        files = [*pkg.get("wheels", []), *([pkg["sdist"]] if "sdist" in pkg else [])]
        assert files and all(f["url"].startswith("https://files.pythonhosted.org/") for f in files), pkg["name"]
        assert all(len(f["hashes"]["sha256"]) == 64 for f in files), pkg["name"]
    locked = {canonicalize_name(p["name"]): p["version"] for p in packages}
    assert len(locked) == len(packages) and not {"mlalign", "torch"} & locked.keys()  # torch: the Makefile's pin
    return locked


def _torch_pin() -> str:
    """The torch release `make install` pins beside the lock (the CPU build here, a CUDA build on a GPU machine)."""
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("TORCH ?= "))
    return line.removeprefix("TORCH ?= torch==")


def test_lock_pins_every_dependency_to_a_release_inside_its_range():
    """pylock.toml (`make install` installs it; `make lock` writes it) and the Makefile's torch pin hold each
    dependency of pyproject.toml."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    if os.environ.get("MLALIGN_LOCK") == "":
        pytest.skip("make test-latest: installed without the lock, which may be older than pyproject's ranges")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _lock() | {"torch": _torch_pin()}
    assert locked["torch"] == "2.13.0"
    for dep in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(dep)
        version = locked.get(canonicalize_name(req.name))
        assert version is not None and req.specifier.contains(version, prereleases=True), (dep, version)


@pytest.mark.skipif(not os.environ.get("MLALIGN_LOCK"), reason="only under `make test`, which installs the lock")
def test_make_install_installed_exactly_the_lock():
    """Every locked release is the one installed, and the lock holds every dependency of what it locks."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    locked = _lock() | {"torch": _torch_pin()}
    unlocked = set()
    for name, version in [*locked.items(), ("mlalign", None)]:
        dist = distribution(name)
        if version is not None:  # the CPU build of torch carries a local label (2.13.0+cpu) the lock leaves out
            assert Version(dist.version).public == version, f"{name} {dist.version} installed, {version} locked"
        extras = ("test",) if name == "mlalign" else ()
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                unlocked |= {canonicalize_name(req.name)} - locked.keys()
    assert not unlocked, f"dependencies missing from {os.environ['MLALIGN_LOCK']}: {sorted(unlocked)}; run make lock"


def test_version_is_the_projects():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = subprocess.run([sys.executable, "-m", "mlalign_tasks.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == f"mlalign {version}\n", done

"""Build the toy world's pretrained model and store it in the package (`mlalign_tasks/resources/toy_model`).

    python scripts/build_toy_model.py                      # rebuild (about 6 minutes on two CPU cores) and store it
    python scripts/build_toy_model.py --check              # rebuild and compare with the packaged weights, byte for byte
    python scripts/build_toy_model.py --seed 3 --out DIR   # another pretraining seed of the same world, into DIR

The build is deterministic for a given torch version and CPU kind (two threads, fixed seeds, full determinism);
the packaged weights are the build's in bfloat16, xz-compressed (`model.safetensors.xz`). The package ships seed 0;
`--out` writes a model folder as `mlalign toy-model` writes the shipped one (its weights through bfloat16), which
`mlalign run --model DIR` evaluates.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import tempfile
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.models import toy_model

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "mlalign_tasks" / toy_model.PACKAGED


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the packaged one")
    parser.add_argument("--seed", type=int, help="pretraining seed (model initialisation and data order; default 0)")
    parser.add_argument("--out", type=Path, help="write the built model to this folder instead of the package")
    args = parser.parse_args()
    if args.out is not None and args.check:
        parser.error("--check compares with the package and --out writes elsewhere: give one of them")
    if args.seed not in (None, 0) and args.out is None:
        parser.error(f"--seed {args.seed}: the package ships seed 0; give --out DIR to build another seed")
    cfg = dataclasses.replace(toy_model.ToyModelConfig(), seed=args.seed or 0)
    try:
        return build(cfg, args.out, args.check)
    except MlalignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def build(cfg: toy_model.ToyModelConfig, out: Path | None, check: bool) -> int:
    """Build the model of `cfg`, then store it in the package, compare it with the packaged one (`check`) or write
    it to `out`."""
    if out is not None:
        toy_model.check_out(out)
    with tempfile.TemporaryDirectory() as tmp:
        built = toy_model.build_toy_model(Path(tmp) / "model", cfg)
        target = Path(tmp) / "packaged" if check or out else DEST
        toy_model.package(built, target)
        if out is not None:  # as the package would ship it: its weights through bfloat16
            toy_model.write_packaged(out, target)
            print(f"toy model (seed {cfg.seed}) written to {out}")
            return 0
        if not check:
            print(f"toy model stored in {DEST}")
            return 0
        mismatched = [
            f.name
            for f in sorted(target.iterdir())
            if hashlib.sha256(f.read_bytes()).digest() != hashlib.sha256((DEST / f.name).read_bytes()).digest()
        ]
    if mismatched:
        print(f"the fresh build differs from the packaged model in: {', '.join(mismatched)}", file=sys.stderr)
        return 1
    print("the fresh build matches the packaged toy model byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())

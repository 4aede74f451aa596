"""Build the toy world's pretrained model and store it in the package (`mlalign_tasks/resources/toy_model`).

    python scripts/build_toy_model.py            # rebuild (about 6 minutes on two CPU cores) and store it
    python scripts/build_toy_model.py --check    # rebuild and compare with the packaged weights, byte for byte

The build is deterministic for a given torch version and CPU kind (two threads, fixed seeds, full determinism);
the packaged weights are the build's in bfloat16, xz-compressed (`model.safetensors.xz`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

from mlalign_tasks.models import toy_model

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "mlalign_tasks" / toy_model.PACKAGED


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the packaged one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built = toy_model.build_toy_model(Path(tmp) / "model")
        target = Path(tmp) / "packaged" if args.check else DEST
        toy_model.package(built, target)
        if not args.check:
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

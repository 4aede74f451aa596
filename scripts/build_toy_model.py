"""Build the toy world's model into the package (``mlalign_tasks/resources/toy_model``), or check that it rebuilds.

The build is deterministic: the corpus, the tokenizer and the pretraining (a fixed number of CPU threads,
seeded, transformers' full determinism) depend only on `ToyModelConfig` and the library versions, so
``--check`` rebuilds into a temporary folder and compares every file byte for byte with the packaged one.
It takes minutes (the pretraining); the tests check the cheap part on every run (the packaged model
records the configuration and corpus hash of the current code).

Usage: python scripts/build_toy_model.py [--check] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from mlalign_tasks.data import sha256_file
from mlalign_tasks.toy_model import build_toy_model, packaged_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare")
    parser.add_argument("--out", type=Path, help="build here instead of into the package")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not args.check:
        out = build_toy_model(args.out or packaged_dir())
        print(f"toy model written to {out} in {time.perf_counter() - start:.0f} s")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        built = build_toy_model(Path(tmp) / "model")
        packaged = packaged_dir()
        names = sorted({p.name for p in built.iterdir()} | {p.name for p in packaged.iterdir()})
        differ = [
            n for n in names if not (built / n).is_file() or not (packaged / n).is_file()
            or sha256_file(built / n) != sha256_file(packaged / n)
        ]  # fmt: skip
    for name in differ:
        print(f"differs: {name}")
    print(f"rebuilt in {time.perf_counter() - start:.0f} s: {len(names) - len(differ)} of {len(names)} files identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

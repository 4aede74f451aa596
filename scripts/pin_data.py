"""Regenerate mlalign_tasks/data_registry.json (canonical URL parts + sha256) from a data mirror.

Usage: python scripts/pin_data.py ../shared/data
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

QALIGN = ("NJUNLP/QAlign", "a65ee63836e41896466a1b81834d8db0deaf4324")
LEARNER = ("Shimao-Zhang/LLM-Multilingual-Learner", "5605459cab2d9c2c170a30268c0ab84cf17bb66a")
RESOURCES = Path(__file__).resolve().parent.parent / "mlalign_tasks" / "resources"  # files shipped in the package
PROMPT_SCRIPTS = ("emotion_eval_2shot_enout.py", "snli_eval_6shot_enout.py", "paws_eval_4shot_enout.py")


def canonical(name: str) -> dict:
    """Where a mirrored file comes from: repository, commit, path, and how it is converted."""
    top, _, rest = name.partition("/")
    if name == "mgsm/exemplars.json":
        return {"repo": QALIGN[0], "commit": QALIGN[1], "path": "evaluate/scripts/data/mgsm/exemplars.py",
                "transform": "python_literals_to_json"}  # fmt: skip
    if top in ("mgsm", "msvamp"):
        return {"repo": QALIGN[0], "commit": QALIGN[1], "path": f"evaluate/scripts/data/{name}"}
    if name == "gsm8k/train_en.jsonl":
        return {"repo": QALIGN[0], "commit": QALIGN[1], "path": "data/gsm8kinstruct/en/train.txt"}
    if top == "question_translation":
        return {"repo": QALIGN[0], "commit": QALIGN[1],
                "path": "data/gsmtrans/gsm8kinstruct_question/" + rest.removeprefix("gsm8k/")}  # fmt: skip
    if name == "paper_tasks/prompts.json":
        return {"repo": LEARNER[0], "commit": LEARNER[1], "path": None, "extracted_from": list(PROMPT_SCRIPTS),
                "packaged": "paper_prompts.json"}  # fmt: skip
    if top == "paper_tasks":
        return {"repo": LEARNER[0], "commit": LEARNER[1], "path": f"data/{rest}"}
    raise SystemExit(f"no canonical source known for {name}; add it to scripts/pin_data.py")


def main(mirror: str) -> None:
    root = Path(mirror)
    if not (root / "mgsm").is_dir():
        raise SystemExit(f"{mirror} is not a data mirror (no mgsm/ folder); usage: python scripts/pin_data.py DIR")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.md")
    registry = {}
    for p in files:
        name = p.relative_to(root).as_posix()
        data = p.read_bytes()
        registry[name] = {**canonical(name), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        packaged = RESOURCES / registry[name].get("packaged", "")
        if packaged != RESOURCES and (not packaged.is_file() or packaged.read_bytes() != data):
            raise SystemExit(f"{packaged} differs from the mirror's {name}: review the change, then copy it there")
    out = RESOURCES.parent / "data_registry.json"
    out.write_text(json.dumps(registry, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(registry)} entries to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")

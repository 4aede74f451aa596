"""Regenerate mlalign_tasks/data_registry.json (canonical URL parts + checksums) from a data mirror.

Mirrored files are pinned by sha256 and size; the files the mirror's README lists as not mirrored, by the git blob
id it gives for each. Usage: python scripts/pin_data.py [--check] ../shared/data
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

QALIGN = ("NJUNLP/QAlign", "a65ee63836e41896466a1b81834d8db0deaf4324")
LEARNER = ("Shimao-Zhang/LLM-Multilingual-Learner", "5605459cab2d9c2c170a30268c0ab84cf17bb66a")
RESOURCES = Path(__file__).resolve().parent.parent / "mlalign_tasks" / "resources"  # files shipped in the package
PROMPT_SCRIPTS = ("emotion_eval_2shot_enout.py", "snli_eval_6shot_enout.py", "paws_eval_4shot_enout.py")
REGISTRY = RESOURCES.parent / "data_registry.json"
QT_PREFIX = "data/gsmtrans/gsm8kinstruct_question/"
# Files neither mirrored nor in the mirror README's table, pinned by the blob ids of QAlign's tree at its commit:
# GSM8KInstruct's training sets in the nine non-English languages (QAlign's multilingual-SFT baseline).
UPSTREAM_BLOBS = {
    "data/gsm8kinstruct/bn/train.txt": "cc4644b6585500c7f4a7a4acb13a071037ffa1de",
    "data/gsm8kinstruct/de/train.txt": "fd67ba825dbbe63cccecd34c0228a543f136266f",
    "data/gsm8kinstruct/es/train.txt": "34edd62fccf24ef91ed36b0f1d484ff78c2d3856",
    "data/gsm8kinstruct/fr/train.txt": "ba5393a144c47f03f5a144c59d43e712193e03a4",
    "data/gsm8kinstruct/ja/train.txt": "554a09d1f9719a8dca8318a04380317a9e207ced",
    "data/gsm8kinstruct/ru/train.txt": "e57d3cd8921209b3b0b1b37d08fb5f0a192d8ecf",
    "data/gsm8kinstruct/sw/train.txt": "f1e838b9da1b11aa2cea1ddf8b665521fd49b195",
    "data/gsm8kinstruct/th/train.txt": "ac544ac98f1c4d99c8dbecc6ffe6f863e83cb48d",
    "data/gsm8kinstruct/zh/train.txt": "e36f900002036b1bed63fa62781cc0f55501ca4d",
}
# A row of the README's table of files not mirrored: | owner/repo @ commit | `path` | `blob id` |
BLOB_ROW = re.compile(
    r"^\| (?P<repo>[\w.-]+/[\w.-]+) @ (?P<commit>[0-9a-f]{40}) \| `(?P<path>[^`]+)` \| `(?P<blob>[0-9a-f]{40})` \|$"
)


def canonical(name: str) -> dict:
    """Where a mirrored file comes from: repository, commit, path, and how it is converted."""
    top, _, rest = name.partition("/")
    if name == "mgsm/exemplars.json":
        return {"repo": QALIGN[0], "commit": QALIGN[1], "path": "evaluate/scripts/data/mgsm/exemplars.py",
                "transform": "python_literals_to_json"}  # fmt: skip
    if top in ("mgsm", "msvamp"):
        return {"repo": QALIGN[0], "commit": QALIGN[1], "path": f"evaluate/scripts/data/{name}"}
    if top == "gsm8k":  # train_{lang}.jsonl
        lang = rest.removeprefix("train_").removesuffix(".jsonl")
        return {"repo": QALIGN[0], "commit": QALIGN[1], "path": f"data/gsm8kinstruct/{lang}/train.txt"}
    if top == "question_translation":
        return {"repo": QALIGN[0], "commit": QALIGN[1],
                "path": "data/gsmtrans/gsm8kinstruct_question/" + rest.removeprefix("gsm8k/")}  # fmt: skip
    if name == "paper_tasks/prompts.json":
        return {"repo": LEARNER[0], "commit": LEARNER[1], "path": None, "extracted_from": list(PROMPT_SCRIPTS),
                "packaged": "paper_prompts.json"}  # fmt: skip
    if top == "paper_tasks":
        return {"repo": LEARNER[0], "commit": LEARNER[1], "path": f"data/{rest}"}
    raise SystemExit(f"no canonical source known for {name}; add it to scripts/pin_data.py")


def mirror_name(repo: str, commit: str, path: str) -> str:
    """The mirror-layout name of an upstream file (the inverse of `canonical`)."""
    if (repo, commit) == QALIGN and path.startswith(QT_PREFIX):
        return "question_translation/gsm8k/" + path.removeprefix(QT_PREFIX)
    if (repo, commit) == QALIGN and path.startswith("data/gsm8kinstruct/"):
        return f"gsm8k/train_{path.split('/')[2]}.jsonl"
    if (repo, commit) == LEARNER and path.startswith("data/"):
        return "paper_tasks/" + path.removeprefix("data/")
    raise SystemExit(f"no mirror name known for {repo}@{commit}:{path}; add it to scripts/pin_data.py")


def blob_pinned(readme: Path) -> dict[str, dict]:
    """Registry entries of the files the mirror's README lists as not mirrored, pinned by their git blob ids."""
    entries = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        if m := BLOB_ROW.match(line.strip()):
            name = mirror_name(m["repo"], m["commit"], m["path"])
            entries[name] = {**canonical(name), "git_blob": m["blob"]}
            if entries[name]["path"] != m["path"]:
                raise SystemExit(f"{readme}: {m['path']} does not map back to itself (via {name})")
    return entries


def registry_text(mirror: Path) -> str:
    files = sorted(p for p in mirror.rglob("*") if p.is_file() and p.name != "README.md")
    registry = {}
    for p in files:
        name = p.relative_to(mirror).as_posix()
        data = p.read_bytes()
        registry[name] = {**canonical(name), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        packaged = RESOURCES / registry[name].get("packaged", "")
        if packaged != RESOURCES and (not packaged.is_file() or packaged.read_bytes() != data):
            raise SystemExit(f"{packaged} differs from the mirror's {name}: review the change, then copy it there")
    upstream = {mirror_name(*QALIGN, path): {"path": path, "git_blob": blob} for path, blob in UPSTREAM_BLOBS.items()}
    for name, entry in (blob_pinned(mirror / "README.md") | upstream).items():
        if name in registry:
            raise SystemExit(f"{name} is both mirrored and listed as not mirrored in {mirror / 'README.md'}")
        registry[name] = {**canonical(name), **entry}
    return json.dumps(dict(sorted(registry.items())), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    mirror = Path(args[0] if args else "../shared/data")
    if not (mirror / "mgsm").is_dir():
        raise SystemExit(f"{mirror} is not a data mirror (no mgsm/ folder); usage: python scripts/pin_data.py DIR")
    text = registry_text(mirror)
    if check:
        if REGISTRY.read_text(encoding="utf-8") != text:
            raise SystemExit(f"{REGISTRY} is not what {mirror} pins; run python scripts/pin_data.py {mirror}")
        print(f"{REGISTRY} matches {mirror}")
        return
    REGISTRY.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text))} entries to {REGISTRY}")


if __name__ == "__main__":
    main(sys.argv[1:])

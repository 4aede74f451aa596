"""Question alignment in the toy world over pretraining seeds: does the effect hold beyond the shipped build?

For each seed, the study `mlalign run` runs on the toy model (data, stage I, stage II, the base, stage I alone and
stage I + II evaluated on the same items, the board; not the analyses), then, for each aligned model against the
base and each toy task: the change in English, in the seen languages, in the unseen language of their family and in
the other families, in percentage points, with the exact McNemar p of the items pooled over those languages (math in
English only unless --tasks says more: generation is most of the time). For the unseen languages of the seen family,
their sentiment items split by whether the review has a judging word (`toy_world.POSITIVE`/`NEGATIVE`) that the
language shares with a seen one: the only words through which stage I can reach it.
Seed 0 is the packaged model; seed N > 0 the folder MODELS/seedN that
`python scripts/build_toy_model.py --seed N --out MODELS/seedN` builds (about 6 minutes each, once).
Each seed's run folder resumes, so a rerun with the same recipe rebuilds the table from the finished runs in seconds
(`stages_seconds` then names only the stages that ran).

Usage: python bench/toy_seeds.py --seeds 0,1,2,3,4 --models /work/toyseeds [--recipe toy-world-qalign]
       [--tasks TASKS] [--runs DIR] [--json PATH]   (default JSON: bench/results/toy-seeds-RECIPE.json)
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

os.environ.setdefault("MLALIGN_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLALIGN_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

from mlalign_trainer import recipes  # noqa: E402

from mlalign_tasks.files.atomic import write_json_atomic  # noqa: E402
from mlalign_tasks.leaderboard.samples import load_samples  # noqa: E402
from mlalign_tasks.leaderboard.stats import mcnemar_exact  # noqa: E402
from mlalign_tasks.models import toy_model  # noqa: E402
from mlalign_tasks.pipeline.stages import run_stages  # noqa: E402
from mlalign_tasks.pipeline.study import build_stages  # noqa: E402
from mlalign_tasks.pipeline.study_options import BUILTIN, TOY, configure  # noqa: E402
from mlalign_tasks.pipeline.study_record import COMPUTED_KEY, STUDY_FILE, computed, options_record  # noqa: E402
from mlalign_tasks.tasks import toy_tasks  # noqa: E402
from mlalign_tasks.tasks.languages import TOY_LANGUAGES  # noqa: E402
from mlalign_tasks.tasks.toy_world import NEGATIVE, POSITIVE  # noqa: E402

TOY_DEFAULTS = BUILTIN[TOY]
ANALYSES = ("logit-lens", "pca")  # not what this table measures
SENTIMENT = "toy_sentiment_aligned"
TASKS = {SENTIMENT: "sentiment", "toy_math_aligned": "math"}
# Every language of the sentiment task (label scoring: seconds); math (generation: most of the time) in English,
# where stage I costs the worked solutions and stage II must give them back.
TASKS_RUN = "toy_sentiment_aligned,toy_math_aligned:en"


def groups(seen: list[str]) -> dict[str, list[str]]:
    """The languages each column pools: English, the seen ones, the rest of their family, the other families."""
    families = {TOY_LANGUAGES[code].family for code in seen}
    rest = [code for code in TOY_LANGUAGES if code not in seen]
    return {
        "english": ["en"],
        "seen": seen,
        "unseen_family": [code for code in rest if TOY_LANGUAGES[code].family in families],
        "other_families": [code for code in rest if TOY_LANGUAGES[code].family not in families],
    }


def pooled(rows: list[dict]) -> dict:
    """Base and aligned accuracy (percent) over the pooled items of `rows` (the board's comparisons), their change
    and the exact McNemar p of the pooled discordant items."""
    n = sum(int(r["n_paired"]) for r in rows)
    base = sum(float(r["base_value"]) * int(r["n_paired"]) for r in rows) / n
    aligned = sum(float(r["aligned_value"]) * int(r["n_paired"]) for r in rows) / n
    only_base, only_aligned = (sum(int(r[key]) for r in rows) for key in ("only_base", "only_aligned"))
    return {
        "base": round(100 * base, 2),
        "aligned": round(100 * aligned, 2),
        "delta_pp": round(100 * (aligned - base), 2),
        "p": mcnemar_exact(only_base, only_aligned),
        "items": n,
        "languages": [r["language"] for r in rows],
    }


def summary(board: Path, seen: list[str]) -> dict:
    """Per aligned model (stage I, stage I + II) and task: each group's pooled change (`pooled`)."""
    with open(board / "comparisons.csv", newline="") as f:
        comparisons = list(csv.DictReader(f))
    out: dict[str, dict] = {}
    for aligned in dict.fromkeys(r["aligned"] for r in comparisons):
        model = "stage I" if aligned.endswith("(stage I)") else "stage I + II"
        for family, task in TASKS.items():
            rows = {r["language"]: r for r in comparisons if r["aligned"] == aligned and r["family"] == family}
            out.setdefault(model, {})[task] = {
                group: pooled([rows[code] for code in codes])
                for group, codes in groups(seen).items()
                if all(code in rows for code in codes)  # a group the run evaluated
            }
    return out


def shared_judging(lang: str, seen: list[str]) -> frozenset[str]:
    """The English judging words whose word in `lang` is that of a seen language."""
    lexicons = toy_tasks.DEFAULT_WORLD.lexicons
    return frozenset(e for e in (*POSITIVE, *NEGATIVE) if lexicons[lang][e] in {lexicons[s][e] for s in seen})


def _sentiment_scores(eval_dir: Path, lang: str) -> dict[int, float]:
    (path,) = eval_dir.glob(f"*/samples_{SENTIMENT}_{lang}_*.jsonl")
    items = load_samples(path, "acc,none")
    return dict(zip(items.keys.tolist(), items.scores.tolist(), strict=True))


def by_shared_words(out: Path, seen: list[str]) -> dict:
    """Per unseen language of the seen family and aligned model: its sentiment items with a shared judging word
    (`shared_judging`) and the rest, each pooled as `pooled` pools a group (base, aligned, change, p)."""
    english = toy_tasks.reviews("en")
    result: dict[str, dict] = {}
    for lang in groups(seen)["unseen_family"]:
        shared = shared_judging(lang, seen)
        base = _sentiment_scores(out / "eval-base", lang)
        for model, stage in (("stage I", "eval-question"), ("stage I + II", "eval-aligned")):
            aligned = _sentiment_scores(out / stage, lang)
            for part, keep in (("shared", True), ("not shared", False)):
                ids = [i for i in base if bool(shared & set(english[i].split())) is keep]
                rows = [
                    {
                        "language": f"{lang} ({part})",
                        "n_paired": len(ids),
                        "base_value": sum(base[i] for i in ids) / len(ids),
                        "aligned_value": sum(aligned[i] for i in ids) / len(ids),
                        "only_base": sum(base[i] > aligned[i] for i in ids),
                        "only_aligned": sum(aligned[i] > base[i] for i in ids),
                    }
                ]
                result.setdefault(model, {}).setdefault(lang, {})[part] = pooled(rows)
    return result


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.01 else f"{p:.0e}".replace("e-0", "e-")


def markdown_cells(model: dict) -> str:
    """One aligned model's cells of the README's table: English (both tasks), then each group's sentiment change
    (base → aligned, p) with the math change beside it."""
    sentiment, math = model["sentiment"], model["math"]
    cells = [
        f"{sentiment['english']['delta_pp']:+.1f}, {math['english']['delta_pp']:+.1f} (p {_p(math['english']['p'])})"
    ]
    for group in list(sentiment)[1:]:
        change = sentiment[group]
        cell = f"{change['base']:.1f} → {change['aligned']:.1f} (p {_p(change['p'])})"
        if group in math:
            cell += f"; math {math[group]['delta_pp']:+.1f} (p {_p(math[group]['p'])})"
        cells.append(cell)
    return " | ".join(cells)


def model_folder(seed: int, models: Path, runs: Path) -> Path:
    """Seed 0: the packaged model, written once into `runs`; else the build in `models`."""
    if seed == 0:
        folder = runs / "seed0-model"
        return folder if toy_model.read_marker(folder) else toy_model.write_packaged(folder)
    folder = models / f"seed{seed}"
    record = toy_model.read_marker(folder)
    if record is None or record["config"]["seed"] != seed:
        raise SystemExit(
            f"{folder} is not the toy model of seed {seed}: build it with "
            f"`python scripts/build_toy_model.py --seed {seed} --out {folder}`"
        )
    return folder


def run_seed(seed: int, recipe: str, tasks: str, models: Path, runs: Path) -> dict:
    """The study on one seed's model (resumed when its run folder holds finished stages), and its `summary`."""
    scale = TOY_DEFAULTS.scale
    cfg = configure(
        model=str(model_folder(seed, models, runs)), recipe=recipe, eval_tasks=tasks,
        out=runs / f"seed{seed}", board=runs / f"seed{seed}-board", languages=TOY_DEFAULTS.languages,
        qt_source=TOY_DEFAULTS.qt_source.value, examples_per_language=scale.examples_per_language,
        eval_limit=scale.eval_limit, max_gen_toks=scale.max_gen_toks, batch_size=scale.batch_size,
        analysis_limit=scale.analysis_limit,
    )  # fmt: skip
    stages, _ = build_stages(cfg, replace=True)  # other --tasks: the stages whose configuration changed run again
    write_json_atomic(cfg.out / STUDY_FILE, options_record(cfg) | {COMPUTED_KEY: computed(cfg)})  # as run_study
    results = run_stages([stage for stage in stages if stage.name not in ANALYSES], cfg.out)
    timed = {r.name: round(r.seconds, 1) for r in results if r.status == "ran"}  # a finished stage: not timed again
    print(f"seed {seed}: " + ", ".join(f"{r.name} {timed.get(r.name, r.status)}" for r in results), flush=True)
    seen = cfg.data.languages.split(",")
    return {"stages_seconds": timed} | summary(cfg.board, seen) | {"shared_words": by_shared_words(cfg.out, seen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="pretraining seeds, comma-separated")
    parser.add_argument("--models", type=Path, default=Path("/work/toyseeds"), help="folder of the seedN builds")
    parser.add_argument("--recipe", default=TOY_DEFAULTS.recipe, help="a recipe name or YAML file (two stages)")
    parser.add_argument("--tasks", default=TASKS_RUN, help="evaluation tasks, as for `mlalign run --tasks`")
    parser.add_argument("--runs", type=Path, help="run folders (default: runs/toy-seeds/RECIPE)")
    parser.add_argument("--json", type=Path, help="where to write the table")
    args = parser.parse_args()
    name = Path(args.recipe).stem
    runs = (args.runs or Path("runs") / "toy-seeds" / name).resolve()
    seeds = {
        int(seed): run_seed(int(seed), args.recipe, args.tasks, args.models, runs) for seed in args.seeds.split(",")
    }
    path = args.json or Path(__file__).parent / "results" / f"toy-seeds-{name}.json"
    recipe_values = recipes.read_recipe(recipes.recipe_path(args.recipe))
    write_json_atomic(path, {"recipe": name, "recipe_values": recipe_values, "seeds": seeds})
    print(
        "| seed | model | English Δ: sentiment, math | seen (qaa, qab) | unseen, same family (qac) | other families |"
    )
    print("|---|---|---|---|---|---|")
    for seed, table in seeds.items():
        for model in ("stage I", "stage I + II"):
            print(f"| {seed} | {model} | {markdown_cells(table[model])} |")
    print("\n| seed | model | language: reviews with a judging word shared with a seen language | the others |")
    print("|---|---|---|---|")
    for seed, table in seeds.items():
        for model, langs in table["shared_words"].items():
            for lang, parts in langs.items():
                cells = [
                    f"{c['base']:.1f} → {c['aligned']:.1f} (p {_p(c['p'])}, {c['items']} items)" for c in parts.values()
                ]
                print(f"| {seed} | {model} | {lang}: {cells[0]} | {cells[1]} |")
    print(f"written to {path}")


if __name__ == "__main__":
    main()

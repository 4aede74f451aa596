"""Every number on the board traced back to its input files: each results.csv row names the folder whose
results_*.json reports it; intervals, paired tests, consistency and averages are recomputed here from those
results and samples files (JSON parsed plainly, scipy for the statistics); every number in the README's score,
average and group tables is one of them."""

from __future__ import annotations

import csv
import json
import random
import re
import statistics
from pathlib import Path

import pytest
import yaml
from scipy.stats import binomtest

from mlalign_tasks.leaderboard import make_leaderboard
from mlalign_tasks.leaderboard.synthetic import Item, write_run

LANGS = ("en", "de", "fr")


def run_tasks(rng: random.Random, p_right: float) -> tuple[dict[str, list[Item]], set[str]]:
    tasks: dict[str, list[Item]] = {}
    for lang in LANGS:
        tasks[f"snli_aligned_{lang}"] = [Item(0 if rng.random() < p_right else 1 + i % 2, 0) for i in range(12)]
        tasks[f"mgsm_aligned_{lang}"] = [Item("7" if rng.random() < p_right else str(i), "7") for i in range(8)]
    for lang in ("en", "de"):
        tasks[f"xnli_{lang}"] = [Item(1 if rng.random() < p_right else 2, 1) for _ in range(10)]
    return tasks, {f"mgsm_aligned_{lang}" for lang in LANGS}


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trace")
    rng = random.Random(7)
    for folder, args, p_right in (("base", "pretrained=org/base", 0.4), ("qa", "pretrained=org/base,peft=ad/qa", 0.7)):
        tasks, generative = run_tasks(rng, p_right)
        path = write_run(root / "runs" / folder, args, tasks, generative=generative)
        data = json.loads(path.read_text())
        group = {"alias": "xnli", "acc,none": rng.random(), "acc_stderr,none": 0.01}
        data["results"]["xnli"] = data.setdefault("groups", {})["xnli"] = group
        data["group_subtasks"]["xnli"] = ["xnli_en", "xnli_de"]
        path.write_text(json.dumps(data))
    (root / "m.yaml").write_text(yaml.safe_dump({"models": [{"match": "ad/qa", "languages": ["de"]}]}))
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def input_file(source: Path, task: str) -> dict:
    (found,) = [d for p in source.glob("results_*.json") if task in (d := json.loads(p.read_text()))["results"]]
    return found


def samples(source: Path, task: str, metric: str) -> dict[int, tuple[object, float]]:
    """doc_id -> (the model's answer, its score) from a samples JSONL, read with a plain JSON parse."""
    (path,) = source.glob(f"samples_{task}_*.jsonl")
    name, _, filt = metric.partition(",")
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["filter"] == filt:
            resp = rec["filtered_resps"]
            if isinstance(resp[0], list):  # log-likelihood per choice: the answer is the argmax
                answer = max(range(len(resp)), key=lambda i: float(resp[i][0]))
            else:
                answer = float(resp[0])
            out[rec["doc_id"]] = (answer, rec[name])
    return out


def test_every_number_traces_back_to_its_input_files(board: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(board)
    make_leaderboard([Path("runs")], Path("board"), Path("m.yaml"))
    rows = read_csv(Path("board/results.csv"))
    # results.csv holds every number of every input file (task and group) once, each as that file reports it
    reported = {
        (source.as_posix(), task, key)
        for source in (Path("runs/base/org__base"), Path("runs/qa/ad__qa"))
        for task, entry in input_file(source, "xnli")["results"].items()
        for key in entry
        if "," in key and "_stderr" not in key
    }
    assert {(r["source"], r["task"], r["metric"]) for r in rows} == reported and len(rows) == len(reported)
    primary: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in rows:
        data = input_file(Path(r["source"]), r["task"])
        entry, (name, _, filt) = data["results"][r["task"]], r["metric"].partition(",")
        assert float(r["value"]) == entry[r["metric"]]
        assert float(r["stderr"]) == entry[f"{name}_stderr,{filt}"]
        if r["level"] == "group":
            # a group's n: its tasks' items; lm-eval's aggregate has no Wilson interval here
            assert int(r["n"]) == sum(data["n-samples"][t]["effective"] for t in data["group_subtasks"][r["task"]])
            assert r["ci_low"] == r["ci_high"] == ""
            continue
        n = data["n-samples"][r["task"]]["effective"]
        assert int(r["n"]) == n == len(samples(Path(r["source"]), r["task"], r["metric"]))
        ci = binomtest(round(float(r["value"]) * n), n).proportion_ci(method="wilson")
        assert float(r["ci_low"]) == pytest.approx(ci.low, abs=1e-12)
        assert float(r["ci_high"]) == pytest.approx(ci.high, abs=1e-12)
        if r["metric"] in ("acc,none", "exact_match,last_number"):
            primary[(r["model"], r["family"], r["language"])] = r

    # paired tests: from both models' samples files
    comparisons = read_csv(Path("board/comparisons.csv"))
    assert len(comparisons) == 8
    for c in comparisons:
        b, a = primary[("base", c["family"], c["language"])], primary[("qa", c["family"], c["language"])]
        assert (float(c["base_value"]), float(c["aligned_value"])) == (float(b["value"]), float(a["value"]))
        assert float(c["delta_pp"]) == pytest.approx((float(a["value"]) - float(b["value"])) * 100, abs=1e-9)
        sb = samples(Path(b["source"]), b["task"], b["metric"])
        sa = samples(Path(a["source"]), a["task"], a["metric"])
        only_base = sum(sb[i][1] == 1 and sa[i][1] == 0 for i in sb)
        only_aligned = sum(sb[i][1] == 0 and sa[i][1] == 1 for i in sb)
        assert (int(c["n_paired"]), int(c["only_base"]), int(c["only_aligned"])) == (len(sb), only_base, only_aligned)
        expected_p = binomtest(only_aligned, only_base + only_aligned).pvalue if only_base + only_aligned else 1.0
        assert float(c["p_value"]) == pytest.approx(expected_p, abs=1e-12)

    # consistency with English: from one model's samples files in both languages
    consistency = read_csv(Path("board/consistency.csv"))
    assert len(consistency) == 2 * (2 * 2 + 1)
    for c in consistency:
        row, en = primary[(c["model"], c["family"], c["language"])], primary[(c["model"], c["family"], "en")]
        x = samples(Path(row["source"]), row["task"], row["metric"])
        e = samples(Path(en["source"]), en["task"], en["metric"])
        assert float(c["same_answer"]) == pytest.approx(statistics.fmean(x[i][0] == e[i][0] for i in x))
        assert float(c["both_correct"]) == pytest.approx(statistics.fmean(x[i][1] == e[i][1] == 1 for i in x))

    # averages: per family the mean over its languages of a split, over all families the mean of family means
    averages = read_csv(Path("board/averages.csv"))
    splits = {"english": ["en"], "seen": ["de"], "unseen": ["fr"], "non_english": ["de", "fr"]}
    for model, split_of in (("qa", splits), ("base", {"english": ["en"], "non_english": ["de", "fr"]})):
        means: dict[str, list[float]] = {}
        for family in ("mgsm_aligned", "snli_aligned", "xnli"):
            for split, langs in split_of.items():
                values = [float(primary[(model, family, g)]["value"]) for g in langs if (model, family, g) in primary]
                if values:
                    means.setdefault(split, []).append(statistics.fmean(values))
                    (avg,) = [a for a in averages if (a["model"], a["family"], a["split"], a["aligned"]) ==
                              (model, family, split, "")]  # fmt: skip
                    assert float(avg["value"]) == pytest.approx(statistics.fmean(values), abs=1e-12)
        for split, values in means.items():
            (avg,) = [a for a in averages if (a["model"], a["family"], a["split"], a["aligned"]) ==
                      (model, "all", split, "")]  # fmt: skip
            assert float(avg["value"]) == pytest.approx(statistics.fmean(values), abs=1e-12)

    # the README shows nothing else: each number of its score, average, consistency and group tables is one of
    # those above
    shown = {f"{float(r[k]) * 100:.1f}" for r in rows for k in ("value", "stderr", "ci_low", "ci_high") if r[k]}
    shown |= {f"{float(a['value']) * 100:.1f}" for a in averages}
    shown |= {f"{float(c[k]) * 100:.1f}" for c in consistency for k in ("same_answer", "both_correct")}
    shown |= {f"{float(c['delta_pp']):+.1f}" for c in comparisons} | {f"{float(c['p_value']):.3g}" for c in comparisons}
    for d in read_csv(Path("board/deltas.csv")):
        shown |= {f"{float(d[k]):+.1f}" for k in ("delta_pp", "ci_low_pp", "ci_high_pp") if d[k]}
    readme = Path("board/README.md").read_text(encoding="utf-8")
    tables = re.findall(r"\n## (Averages \(all task families\)|lm-eval group scores|mgsm_aligned|snli_aligned|xnli)\n(.*?)(?=\n## |\Z)",
                        readme, flags=re.S)  # fmt: skip
    assert len(tables) == 5
    numbers = [
        number
        for _, text in tables
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| language") and not line.startswith("| model")
        for cell in line.split(" | ")[1:]
        for number in re.findall(r"[-+]?\d+\.\d+(?:e-\d+)?|(?<=p=)\d", cell)
    ]
    assert len(numbers) > 100 and set(numbers) <= shown, sorted(set(numbers) - shown)

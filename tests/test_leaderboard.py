"""Leaderboard: numbers carried over exactly, paired test and consistency on known data, bad input, atomicity."""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy.stats import binomtest

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
from mlalign_tasks.leaderboard.escape import md_text
from mlalign_tasks.leaderboard.items import NO_ANSWER, Items, answer_code
from mlalign_tasks.leaderboard.samples import load_samples
from mlalign_tasks.leaderboard.stats import PairedTest, consistency, mcnemar_exact, paired_test, wilson
from mlalign_tasks.leaderboard.synthetic import Item, sample_record, write_run
from mlalign_tasks.leaderboard.tables import interval_text
from mlalign_tasks.runtime import parallel

N = 10
GOLD_MC = [i % 3 for i in range(N)]
GOLD_GEN = [str(10 + i) for i in range(N)]


def mc(right: int, wrong_shift: int = 1) -> list[Item]:
    """Items 0..right-1 answered correctly, the others with the choice gold+wrong_shift."""
    return [Item(g if i < right else (g + wrong_shift) % 3, g) for i, g in enumerate(GOLD_MC)]


def gen(right: int, wrong: str = "[invalid]") -> list[Item]:
    return [Item(g if i < right else wrong, g) for i, g in enumerate(GOLD_GEN)]


BASE_TASKS = {
    "snli_aligned_en": mc(5),
    "snli_aligned_de": mc(2),
    "snli_aligned_fr": mc(1),
    "mgsm_aligned_en": gen(3),
    "mgsm_aligned_de": gen(1),
    "mgsm_aligned_sw": gen(0),
}
ALIGNED_TASKS = {
    "snli_aligned_en": mc(6, wrong_shift=2),
    "snli_aligned_de": mc(10),
    "snli_aligned_fr": mc(4),
    "mgsm_aligned_en": gen(4, wrong="7"),
    "mgsm_aligned_de": gen(3, wrong="7"),
    "mgsm_aligned_sw": gen(2),
}
GENERATIVE = {t for t in BASE_TASKS if t.startswith("mgsm")}


def write_inputs(root: Path, base_samples: bool = True) -> tuple[Path, Path, Path]:
    """Base results as plain lm_eval writes them (model_args dict) and aligned as `mlalign eval` (string)."""
    adapter = root / "adapters" / "qalign"
    adapter.mkdir(parents=True)
    meta = {"base_model": "org/tiny-base", "languages": ["de"], "examples_per_language": 100, "seed": 0}
    (adapter / "mlalign_training.json").write_text(json.dumps(meta))
    base = root / "runs" / "base"
    aligned = root / "runs" / "aligned"
    write_run(base, {"pretrained": "org/tiny-base"}, BASE_TASKS, GENERATIVE, with_samples=base_samples)
    write_run(aligned, f"pretrained=org/tiny-base,peft={adapter}", ALIGNED_TASKS, GENERATIVE)
    return base, aligned, adapter


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("lb")
    base, aligned, _ = write_inputs(root)
    out = root / "boards" / "demo"
    make_leaderboard([base, aligned], out)
    return out, base, aligned


def test_mcnemar_matches_scipy_on_known_tables() -> None:
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024, rel=1e-15)  # textbook: 2 * P(X <= 1), X ~ B(10, 1/2)
    assert mcnemar_exact(0, 8) == pytest.approx(2 / 256, rel=1e-15)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(7, 7) == 1.0 and mcnemar_exact(0, 1) == 1.0
    rng = random.Random(0)
    for _ in range(300):
        b, c = rng.randint(0, 150), rng.randint(0, 150)
        if b + c:
            assert mcnemar_exact(b, c) == pytest.approx(binomtest(c, b + c, 0.5).pvalue, rel=1e-9)


def items(log: dict[int, tuple[str | int | None, float]]) -> Items:
    """Items from {doc id: (answer, score)}."""
    return Items.of(list(log), [answer_code(a) for a, _ in log.values()], [s for _, s in log.values()])


def test_paired_test_table_and_non_binary_scores() -> None:
    base = items({i: (0, s) for i, s in enumerate([1, 1, 0, 0, 0, 1])})
    aligned = items({i: (0, s) for i, s in enumerate([1, 0, 1, 1, 0, 1, 1])})  # item 6 is not in base
    t = paired_test(base, aligned)
    assert (t.n, t.both_right, t.only_base, t.only_aligned, t.both_wrong) == (6, 2, 1, 2, 1)
    assert t.p_value == pytest.approx(binomtest(2, 3, 0.5).pvalue)
    assert paired_test(aligned, base) == PairedTest(6, 2, 2, 1, 1, t.p_value)
    assert paired_test(base, items({0: (0, 0.5)})) is None
    assert paired_test(base, items({0: (0, float("nan"))})) is None
    assert paired_test(base, items({})) is None


def test_consistency_on_hand_made_logs() -> None:
    english = items({3: (None, 0.0), 0: (2, 1.0), 1: (0, 0.0), 2: ("12.0", 1.0)})
    other = items({0: (2, 1.0), 1: (1, 0.0), 2: ("12.0", 0.0), 3: (None, 0.0), 9: (0, 1.0)})
    c = consistency(other, english)
    # items 0..3 in both; same answer on 0 and 2 (no answer never agrees: item 3); right in both: item 0
    assert (c.n, c.same_answer, c.both_correct) == (4, 0.5, 0.25)
    assert consistency(other, items({})) is None
    assert consistency(items({0: ("12", 0.0)}), items({0: ("12.0", 0.0)})).same_answer == 0.0  # texts compared


def test_items_sorted_last_logged_kept_and_answer_codes() -> None:
    got = items({5: ("a", 1.0), 2: (1, float("inf")), 7: (None, 0.0)})
    assert got.keys.tolist() == [2, 5, 7]
    assert got.answers.tolist() == [1, answer_code("a"), NO_ANSWER]
    assert [str(s) for s in got.scores] == ["nan", "1.0", "0.0"]  # not finite: no score
    twice = Items.of([3, 1, 3], [1, 2, 0], [0.0, 1.0, 1.0])
    assert (twice.keys.tolist(), twice.answers.tolist(), twice.scores.tolist()) == ([1, 3], [2, 0], [1.0, 1.0])
    assert answer_code("a") == answer_code("a") != answer_code("b")
    assert min(answer_code(t) for t in ("a", "12.0", "")) > 1 << 61  # above every choice index


def test_fast_sample_reader_equals_json(tmp_path: Path) -> None:
    lines = [
        sample_record("mgsm_aligned_de", 0, Item("1,234.", "1234"), True, "last_number", 50),
        sample_record("mgsm_aligned_de", 1, Item('say "x" \\ done', "5"), True, "last_number", 50),
        sample_record("mgsm_aligned_de", 2, Item("[invalid]", "5"), True, "last_number", 50),
        sample_record("mgsm_aligned_de", 2, Item("5", "5"), True, "strict", 50),  # another filter: ignored
    ]
    lines[0]["doc"]["question"] = 'nested "filtered_resps": [1], "filter": "x" inside a string'
    reordered = dict(
        reversed(list(sample_record("mgsm_aligned_de", 3, Item("9", "9"), True, "last_number", 50).items()))
    )
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in [*lines, reordered]) + "\n")
    got = load_samples(path, "exact_match,last_number")
    want = items({0: (repr(1234.0), 0.0), 1: ('say "x" \\ done', 0.0), 2: (None, 0.0), 3: (repr(9.0), 1.0)})
    assert all(x.tolist() == y.tolist() for x, y in zip(got, want, strict=True))
    mc = [sample_record("snli_aligned_de", i, Item(i % 3, 1), False, "none", 50) for i in range(3)]
    path.write_text("\n".join(json.dumps(x) for x in mc))
    got = load_samples(path, "acc,none")
    assert (got.keys.tolist(), got.answers.tolist(), got.scores.tolist()) == ([0, 1, 2], [0, 1, 2], [0.0, 1.0, 0.0])
    path.write_text('{"doc_id": 0, "oops"\n')
    with pytest.raises(MlalignError, match="not an lm-eval sample record"):
        load_samples(path, "acc,none")


def _input_values(results_dir: Path) -> dict:
    data = json.loads(next(results_dir.rglob("results_*.json")).read_text())
    return data["results"], data["n-samples"]


def test_every_csv_number_equals_the_input_json(board_dir) -> None:
    out, base, aligned = board_dir
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    inputs = {"tiny-base": _input_values(base), "qalign": _input_values(aligned)}
    assert {r["model"] for r in rows} == set(inputs)
    assert len(rows) == 2 * len(BASE_TASKS)
    for r in rows:
        results, n_samples = inputs[r["model"]]
        metric, _, filt = r["metric"].partition(",")
        assert float(r["value"]) == results[r["task"]][r["metric"]]
        assert float(r["stderr"]) == results[r["task"]][f"{metric}_stderr,{filt}"]
        assert int(r["n"]) == n_samples[r["task"]]["effective"]
    by_key = {(r["model"], r["task"]): r for r in rows}
    assert by_key[("qalign", "snli_aligned_de")]["split"] == "seen"
    assert by_key[("qalign", "snli_aligned_fr")]["split"] == "unseen"
    assert by_key[("qalign", "mgsm_aligned_en")]["split"] == "english"
    assert by_key[("qalign", "mgsm_aligned_en")]["metric"] == "exact_match,last_number"
    assert by_key[("qalign", "mgsm_aligned_en")]["adapter"].endswith("adapters/qalign")
    for r in rows:  # the Wilson interval of each cell, from its value and n (hand formula in test_wilson_...)
        assert (float(r["ci_low"]), float(r["ci_high"])) == wilson(round(float(r["value"]) * 10), 10)
    assert json.loads((out / "results.json").read_text())["rows"] == [
        {
            **r,
            **{k: float(r[k]) for k in ("value", "stderr", "ci_low", "ci_high")},
            "n": int(r["n"]),
            "seed": None,
            "primary": True,
        }
        for r in rows
    ]


def test_deltas_tests_consistency_and_averages(board_dir) -> None:
    out, _, _ = board_dir
    data = json.loads((out / "results.json").read_text())
    comps = {(c["family"], c["language"]): c for c in data["comparisons"]}
    de = comps[("snli_aligned", "de")]
    assert de["delta_pp"] == pytest.approx(80.0) and (de["only_base"], de["only_aligned"]) == (0, 8)
    assert de["p_value"] == pytest.approx(2 / 256)
    assert comps[("snli_aligned", "fr")]["p_value"] == pytest.approx(0.25)
    assert comps[("snli_aligned", "en")]["p_value"] == 1.0
    assert comps[("mgsm_aligned", "sw")]["delta_pp"] == pytest.approx(20.0)
    cons = {(c["model"], c["family"], c["language"]): c for c in data["consistency"]}
    assert (
        cons[("tiny-base", "snli_aligned", "de")]["same_answer"],
        cons[("tiny-base", "snli_aligned", "de")]["both_correct"],
    ) == (0.7, 0.2)
    assert (
        cons[("qalign", "snli_aligned", "de")]["same_answer"],
        cons[("qalign", "snli_aligned", "de")]["both_correct"],
    ) == (0.6, 0.6)
    assert (
        cons[("qalign", "mgsm_aligned", "de")]["same_answer"],
        cons[("qalign", "mgsm_aligned", "de")]["both_correct"],
    ) == (0.9, 0.3)
    assert cons[("tiny-base", "mgsm_aligned", "de")]["same_answer"] == 0.1  # "[invalid]" never agrees
    avg = {(a["model"], a["base"], a["aligned"], a["family"], a["split"]): a["value"] for a in data["averages"]}
    expected = {
        ("qalign", "english"): 0.5, ("qalign", "seen"): 0.65, ("qalign", "unseen"): 0.3, ("qalign", "non_english"): 0.475,
        ("tiny-base", "english"): 0.4, ("tiny-base", "seen"): 0.15, ("tiny-base", "unseen"): 0.05, ("tiny-base", "non_english"): 0.1,
    }  # fmt: skip
    for (model, split), value in expected.items():
        assert avg[(model, "tiny-base", "qalign", "all", split)] == pytest.approx(value)
    # as a pair (same cells) and each model over all its own cells (here the same cells; the base has no split)
    assert {k[:3] for k in avg} == {
        ("tiny-base", "tiny-base", "qalign"), ("qalign", "tiny-base", "qalign"), ("tiny-base", None, None),
        ("qalign", None, None),
    }  # fmt: skip
    for (model, split), value in expected.items():
        if model == "qalign" or split in ("english", "non_english"):
            assert avg[(model, None, None, "all", split)] == pytest.approx(value)
    with (out / "averages.csv").open() as f:
        rows = list(csv.DictReader(f))
    none = {"base": None, "aligned": None}  # empty in the CSV: a model's average over all its own cells
    assert [{**r, "value": float(r["value"]), "n": int(r["n"])} | (none if not r["base"] else {}) for r in rows] == (
        data["averages"]
    )


def test_readme_html_plots_and_model_card(board_dir) -> None:
    out, base, aligned = board_dir
    readme = (out / "README.md").read_text()
    assert f"mlalign leaderboard {out}/inputs --out {out} --manifest {out}/inputs/manifest.yaml\n" in readme
    copied = sorted(p.relative_to(out / "inputs").as_posix() for p in (out / "inputs").rglob("*.json*"))
    originals = sorted(
        f"{m}/{p.name}" for d, m in ((base, "tiny-base"), (aligned, "qalign")) for p in d.rglob("*.json*")
    )
    assert copied == originals
    assert "## snli_aligned" in readme and "## mgsm_aligned" in readme
    assert "+80.0* (p=0.00781)" in readme and "| de | qalign |" in readme
    deltas = {(d["family"], d["split"]): d for d in json.loads((out / "results.json").read_text())["deltas"]}
    shown = [interval_text(deltas[("all", s)]) for s in ("english", "seen", "unseen", "non_english")]
    assert [s.split(" [")[0] for s in shown] == ["+10.0", "+50.0", "+25.0", "+37.5"]
    assert f"| **Δ qalign − tiny-base** (pp) |  | {' | '.join(map(md_text, shown))} |" in readme
    shown = [interval_text(deltas[("snli_aligned", s)]) for s in ("english", "seen", "unseen", "non_english")]
    assert [s.split(" [")[0] for s in shown] == ["+10.0", "+80.0", "+30.0", "+55.0"]  # snli_aligned alone
    assert f"| **Δ qalign − tiny-base** (pp) |  | {' | '.join(map(md_text, shown))} |" in readme
    for name in ("delta_heatmap", "split_averages"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / "plots" / f"{name}.svg").read_bytes()[:400]
    page = (out / "index.html").read_text()
    assert "data:image/svg+xml;base64," in page and "<script" in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    card = yaml.safe_load((out / "model_cards" / "qalign.yaml").read_text())["model-index"][0]
    values = {r["dataset"]["name"]: r["metrics"][0]["value"] for r in card["results"]}
    assert values == {t: json.loads(next(aligned.rglob("results_*.json")).read_text())["results"][t][m] for t, m in
                      ((t, "acc,none" if t.startswith("snli") else "exact_match,last_number") for t in ALIGNED_TASKS)}  # fmt: skip
    assert not (out / "model_cards" / "tiny-base.yaml").exists()


def test_documented_columns_are_the_written_ones(board_dir) -> None:
    out, _, _ = board_dir
    docs = (Path(__file__).parents[1] / "leaderboards" / "README.md").read_text()
    for name in ("results", "comparisons", "consistency", "averages", "deltas", "settings"):
        header = (out / f"{name}.csv").read_text().splitlines()[0].replace(",", ", ")
        assert f"| `{name}.csv`" in docs and header in docs, (name, header)


def test_missing_samples_still_builds_and_says_so(tmp_path: Path) -> None:
    base, aligned, _ = write_inputs(tmp_path, base_samples=False)
    board = make_leaderboard([base, aligned], tmp_path / "board")
    assert all(c["p_value"] is None for c in board.comparisons) and len(board.comparisons) == 6
    assert {c["model"] for c in board.consistency} == {"qalign"}
    readme = (tmp_path / "board" / "README.md").read_text()
    assert "no per-sample logs for tiny-base (6 task(s)" in readme
    assert "+80.0 |" in readme


def test_manifest_names_pairs_and_languages(tmp_path: Path) -> None:
    base, aligned, adapter = write_inputs(tmp_path)
    (adapter / "mlalign_training.json").unlink()
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "title": "Tiny board",
                "description": "From a tiny random-weight model: the numbers mean nothing.",
                "models": [
                    {"match": "org/tiny-base", "name": "Base"},
                    {"match": "adapters/qalign", "name": "Aligned", "base": "org/tiny-base", "languages": ["de", "fr"]},
                ],
            }
        )
    )
    board = make_leaderboard([base, aligned], tmp_path / "b", manifest)
    assert [m.name for m in board.models] == ["Base", "Aligned"]
    assert {c["language"]: c["split"] for c in board.comparisons if c["family"] == "snli_aligned"} == {
        "en": "english",
        "de": "seen",
        "fr": "seen",
    }
    readme = (tmp_path / "b" / "README.md").read_text()
    assert readme.startswith("# Tiny board\n\nFrom a tiny random-weight model")
    assert "--manifest" in readme and "--no-embed-inputs" not in readme
    for bad, match in (
        ({"models": [{"match": "nothing-like-it"}]}, "fits 0 models"),
        ({"models": [{"match": "org/tiny-base", "languages": "de,xx"}]}, "unknown language code 'xx'"),
        ({"metrics": {"snli_aligned": "acc_norm,none"}}, r"reported there: acc,none"),
        ({"modles": []}, "expected a mapping with keys"),
        ({"metrics": ["acc,none"]}, "'metrics' must map task families"),
        ({"models": [{"match": "org/tiny-base", "languages": ["de", False]}]}, "quote codes that YAML reads as"),
    ):
        manifest.write_text(yaml.safe_dump(bad))
        with pytest.raises(MlalignError, match=match):
            make_leaderboard([base, aligned], tmp_path / "c", manifest)


def test_unknown_training_languages_are_reported(tmp_path: Path) -> None:
    base, aligned, adapter = write_inputs(tmp_path)
    (adapter / "mlalign_training.json").unlink()
    board = make_leaderboard([base, aligned], tmp_path / "b")
    assert any("training languages of" in n for n in board.notes)
    assert {c["split"] for c in board.comparisons} == {"english", "n/a"}


@pytest.mark.parametrize(
    ("meta", "seen"),
    [
        ({"languages": ["de", "en"], "target_language": "fr", "seen_languages": ["de", "fr"]}, {"de", "fr"}),  # X->fr
        ({"languages": ["en"], "seen_languages": ["de"]}, {"de"}),  # QAlign's stage II after stage I on de
        ({"languages": ["en"], "seen_languages": []}, set()),  # stage II alone (MetaMath): nothing seen
    ],
)
def test_seen_languages_are_every_stage_and_the_target(tmp_path: Path, meta: dict, seen: set) -> None:
    base, aligned, adapter = write_inputs(tmp_path)
    (adapter / "mlalign_training.json").write_text(json.dumps({"base_model": "org/tiny-base", **meta}))
    board = make_leaderboard([base, aligned], tmp_path / "b")
    splits = {c["language"]: c["split"] for c in board.comparisons}
    assert splits == {"en": "english"} | {lang: "seen" if lang in seen else "unseen" for lang in ("de", "fr", "sw")}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"hello": 1}, "is not an lm-eval results file"),
        ({"results": [], "config": {}, "lm_eval_version": "0.4.13"}, "'results' must map task names"),
        ({"results": {"snli_aligned_de": {"acc,none": 0.5}}, "config": {"model_args": ""}, "lm_eval_version": "0.4.13"}, "does not name the model"),
        ({"results": {"arc_easy": {"acc,none": 0.5}}, "config": {"model_args": "pretrained=x"}, "lm_eval_version": "0.4.13"}, "holds no task of a known suite"),
        ({"results": {"snli_aligned_de": {"acc,none": 1.7}}, "config": {"model_args": "pretrained=x"}, "lm_eval_version": "0.4.13"}, r"acc,none = 1.7, impossible for a proportion"),
        ({"results": {"snli_aligned_de": {"acc,none": 0.5, "acc_stderr,none": -0.1}}, "config": {"model_args": "pretrained=x"}, "lm_eval_version": "0.4.13"}, r"acc_stderr,none = -0.1, impossible"),
        ({"results": {"snli_aligned_de": {"acc,none": 0.5}}, "config": {"model_args": "pretrained=x"}, "lm_eval_version": "0.3.0"}, "written by lm-eval 0.3.0"),
    ],
)  # fmt: skip
def test_bad_results_files(tmp_path: Path, content: dict, match: str) -> None:
    path = tmp_path / "results_2026-01-01T00-00-00.json"
    path.write_text(json.dumps(content))
    with pytest.raises(MlalignError, match=match):
        make_leaderboard([path], tmp_path / "board")
    assert not (tmp_path / "board").exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp folder left behind


def test_duplicate_models_and_empty_dir(tmp_path: Path) -> None:
    base, aligned, _ = write_inputs(tmp_path)
    again = tmp_path / "again"
    write_run(again, "pretrained=org/tiny-base", {"snli_aligned_de": mc(3)}, date_id="2026-02-02T00-00-00.000000")
    with pytest.raises(MlalignError, match="duplicate model: org/tiny-base has results for snli_aligned_de"):
        make_leaderboard([base, aligned, again], tmp_path / "board")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlalignError, match="no lm-eval results file"):
        make_leaderboard([tmp_path / "empty"], tmp_path / "board")
    with pytest.raises(MlalignError, match="does not exist"):
        make_leaderboard([tmp_path / "nope"], tmp_path / "board")


def test_errors_never_touch_a_previous_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, aligned, _ = write_inputs(tmp_path)
    out = tmp_path / "board"
    make_leaderboard([base, aligned], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(MlalignError):
        make_leaderboard([base, aligned, bad], out)

    def broken_html(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("mlalign_tasks.leaderboard.write.html", broken_html)
    with pytest.raises(RuntimeError, match="disk full"):
        make_leaderboard([base], out)  # fails after plots, README and CSVs were written to the temp folder
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapters", "bad.json", "board", "runs"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(MlalignError, match="not a leaderboard; refusing"):
        make_leaderboard([base], tmp_path / "notes")


def test_board_rebuilds_from_its_embedded_inputs(tmp_path: Path) -> None:
    base, aligned, _ = write_inputs(tmp_path)
    out = tmp_path / "board"
    make_leaderboard([base, aligned], out)
    first = json.loads((out / "results.json").read_text())
    assert first["command"] == f"mlalign leaderboard {out}/inputs --out {out} --manifest {out}/inputs/manifest.yaml"
    make_leaderboard([out / "inputs"], out, out / "inputs" / "manifest.yaml")
    second = json.loads((out / "results.json").read_text())
    for key in ("comparisons", "consistency", "averages"):
        assert second[key] == first[key]
    # the same rows, each now read from its copy in the board's inputs/
    assert [{**r, "source": ""} for r in second["rows"]] == [{**r, "source": ""} for r in first["rows"]]
    copies = {(out / "inputs" / r["source"]).resolve() for r in second["rows"]}
    assert copies == {p.parent for p in (out / "inputs").resolve().rglob("results_*.json")} and len(copies) == 2


def test_board_inside_the_searched_results_folder_rebuilds(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    runs = tmp_path / "runs"
    first = make_leaderboard([runs], runs / "board")
    second = make_leaderboard([runs], runs / "board")  # its embedded copies in runs/board/inputs are not inputs
    assert second.rows == first.rows and len(second.comparisons) == 6


def test_several_boards_inside_the_searched_results_folder(tmp_path: Path) -> None:
    base, aligned, _ = write_inputs(tmp_path)
    runs, other = tmp_path / "runs", tmp_path / "runs" / "other"
    first = make_leaderboard([runs], other / "b1")
    second = make_leaderboard([runs], other / "b2")  # b1/inputs holds copies of the same runs: not read
    again = make_leaderboard([runs], other / "b1")  # with b2 beside it
    originals = sorted(p.resolve() for p in runs.rglob("results_*.json") if "other" not in p.parts)
    data = {b: json.loads((other / b / "results.json").read_text()) for b in ("b1", "b2")}
    for board in (second, again):
        assert sorted(r.path for m in board.models for r in m.runs) == originals
        assert (board.rows, board.comparisons, board.consistency, board.averages) == (
            first.rows, first.comparisons, first.consistency, first.averages
        )  # fmt: skip
    for key in ("rows", "comparisons", "consistency", "averages"):
        assert data["b2"][key] == data["b1"][key]
    assert data["b1"]["averages"] and len(data["b1"]["comparisons"]) == 6
    # a board named explicitly (or its inputs) is read: it rebuilds from its embedded copies
    from_inputs = make_leaderboard([other / "b2" / "inputs"], other / "b2", other / "b2" / "inputs" / "manifest.yaml")
    from_board = make_leaderboard([other / "b1"], tmp_path / "b3")
    for board in (from_inputs, from_board):
        assert {r.path.parent.parent for m in board.models for r in m.runs} != {runs}
        assert (board.comparisons, board.averages) == (first.comparisons, first.averages)
        assert [{**r, "source": ""} for r in board.rows] == [{**r, "source": ""} for r in first.rows]  # the copies
    with pytest.raises(MlalignError, match=r"no lm-eval results file .* outside the board\(s\) .*b1, .*b2"):
        make_leaderboard([other], tmp_path / "b4")
    assert (base, aligned) == (runs / "base", runs / "aligned")


def write_adapter(root: Path, name: str, languages: list[str]) -> Path:
    """An adapter folder with the trainer's metadata (its training languages)."""
    adapter = root / "adapters" / name
    adapter.mkdir(parents=True)
    (adapter / "mlalign_training.json").write_text(json.dumps({"base_model": "org/tiny-base", "languages": languages}))
    return adapter


def pair_averages(board, family: str = "all", own: bool = False) -> dict[tuple[str, str | None], dict[str, float]]:
    """(model, aligned model of its pair) -> split -> mean (%); `own`: the models' averages over all their cells."""
    out: dict[tuple[str, str | None], dict[str, float]] = {}
    for a in board.averages:
        if a["family"] == family and (a["aligned"] is None) == own:
            out.setdefault((a["model"], a["aligned"]), {})[a["split"]] = round(a["value"] * 100, 9)
    return out


PAPER_LANGS = ("en", "zh", "de", "fr", "es", "it", "nl", "ja", "ru", "sv", "sl", "pl", "bg", "no", "ms", "is", "hi", "th", "sw", "bn")  # fmt: skip


def write_partial_language_runs(root: Path) -> Path:
    """Base on all 20 sentiment_aligned languages; the aligned model (trained on zh, de, sw) only on de, en, fr,
    with the base's answers there: every Δ is 0."""
    adapter = write_adapter(root, "qalign", ["zh", "de", "sw"])
    right = dict.fromkeys(PAPER_LANGS, 2) | {"en": 5, "de": 4, "fr": 6, "zh": 1, "sw": 1}
    base = {f"sentiment_aligned_{lang}": mc(k) for lang, k in right.items()}
    write_run(root / "runs", {"pretrained": "org/tiny-base"}, base)
    aligned = {t: base[t] for t in ("sentiment_aligned_en", "sentiment_aligned_de", "sentiment_aligned_fr")}
    write_run(root / "runs", f"pretrained=org/tiny-base,peft={adapter}", aligned)
    return root / "runs"


def test_averages_of_a_pair_are_over_the_languages_both_have(tmp_path: Path) -> None:
    board = make_leaderboard([write_partial_language_runs(tmp_path)], tmp_path / "board")
    assert [(c["language"], c["delta_pp"], c["p_value"]) for c in board.comparisons] == [
        ("en", 0.0, 1.0), ("de", 0.0, 1.0), ("fr", 0.0, 1.0)
    ]  # fmt: skip
    same = {"english": 50.0, "seen": 40.0, "unseen": 60.0, "non_english": 50.0}  # en; de; fr; de and fr
    for family in ("sentiment_aligned", "all"):
        assert pair_averages(board, family) == {("tiny-base", "qalign"): same, ("qalign", "qalign"): same}
    assert (
        "qalign vs tiny-base: averages over the 3 (family, language) cells both evaluated; 17 cells only one of them "
        "has are left out (only tiny-base has sentiment_aligned: zh, es, it, nl, ja, ru, sv, sl, … (+9))"
    ) in board.notes
    # each model over all its own cells: the base over 20 languages (no split of its own), qalign over its 3
    assert pair_averages(board, own=True) == {
        ("tiny-base", None): {"english": 50.0, "non_english": round(420 / 19, 9)}, ("qalign", None): same
    }  # fmt: skip
    readme = (tmp_path / "board" / "README.md").read_text()
    zero = md_text("+0.0 [+0.0, +0.0]")  # every item answered alike: every resample has Δ 0
    assert readme.count(f"| **Δ qalign − tiny-base** (pp) |  | {zero} | {zero} | {zero} | {zero} |") == 2
    assert "| tiny-base | qalign vs tiny-base | 50.0 | 40.0 | 60.0 | 50.0 |" in readme
    assert "| tiny-base | all its cells | 50.0 | – | – | 22.1 |" in readme
    assert f"| zh | qalign | {md_text('10.0 [1.8, 40.4]')} | – | – |" in readme  # one model's cells stay in the table
    assert f"| sw | qalign | {md_text('10.0 [1.8, 40.4]')} | – | – |" in readme
    assert f"| bn |  | {md_text('20.0 [5.7, 51.0]')} | – | – |" in readme


def test_averages_of_a_pair_are_over_the_families_both_have(tmp_path: Path) -> None:
    """Base on mgsm and the paper families; qalign (de) only on mgsm, other (sw) only on snli en, sw."""
    qalign, other = write_adapter(tmp_path, "qalign", ["de"]), write_adapter(tmp_path, "other", ["sw"])
    base = {t: items for t, items in BASE_TASKS.items() if t.startswith("mgsm")}
    for family, right in (("snli_aligned", (9, 8, 7)), ("paws_aligned", (8, 8, 8)), ("sentiment_aligned", (8, 8, 8))):
        base |= {f"{family}_{lang}": mc(k) for lang, k in zip(("en", "de", "sw"), right, strict=True)}
    runs = tmp_path / "runs"
    write_run(runs, {"pretrained": "org/tiny-base"}, base, GENERATIVE)
    mgsm = {t: items for t, items in ALIGNED_TASKS.items() if t.startswith("mgsm")}
    write_run(runs, f"pretrained=org/tiny-base,peft={qalign}", mgsm, GENERATIVE)
    write_run(runs, f"pretrained=org/tiny-base,peft={other}", {"snli_aligned_en": mc(7), "snli_aligned_sw": mc(6)})
    board = make_leaderboard([runs], tmp_path / "board")
    assert [m.name for m in board.models] == ["tiny-base", "other", "qalign"]  # runs in path order
    # each pair over its own common cells: the base's numbers differ per pair (mgsm en/de/sw vs snli en/sw)
    expected = {
        ("tiny-base", "qalign"): {"english": 30.0, "seen": 10.0, "unseen": 0.0, "non_english": 5.0},
        ("qalign", "qalign"): {"english": 40.0, "seen": 30.0, "unseen": 20.0, "non_english": 25.0},
        ("tiny-base", "other"): {"english": 90.0, "seen": 70.0, "non_english": 70.0},
        ("other", "other"): {"english": 70.0, "seen": 60.0, "non_english": 60.0},
    }
    assert pair_averages(board) == expected
    assert pair_averages(board, "mgsm_aligned") == {k: v for k, v in expected.items() if k[1] == "qalign"}
    assert pair_averages(board, "snli_aligned") == {k: v for k, v in expected.items() if k[1] == "other"}
    assert {(a["family"], a["n"]) for a in board.averages if a["aligned"] == "qalign"} == {
        ("mgsm_aligned", 1), ("mgsm_aligned", 2), ("all", 1)
    }  # fmt: skip
    readme = (tmp_path / "board" / "README.md").read_text()
    assert re.search(
        r"\| \*\*Δ qalign − tiny-base\*\* \(pp\) \|  \| \+10\.0 \\\[.*\| \+20\.0 \\\[.*\| \+20\.0 \\\[", readme
    )
    assert re.search(r"\| \*\*Δ other − tiny-base\*\* \(pp\) \|  \| -20\.0 \\\[.*\| -10\.0 \\\[.*\| – \| -10", readme)
    assert (
        "qalign vs tiny-base: averages over the 3 (family, language) cells both evaluated; 9 cells only one of them "
        "has are left out (only tiny-base has snli_aligned: en, de, sw; paws_aligned: en, de, sw; "
        "sentiment_aligned: en, de, sw)"
    ) in board.notes
    assert (
        "other vs tiny-base: averages over the 2 (family, language) cells both evaluated; 10 cells only one of them "
        "has are left out (only tiny-base has mgsm_aligned: en, de, sw; snli_aligned: de; paws_aligned: en, de, sw; "
        "sentiment_aligned: en, de, sw)"
    ) in board.notes
    with (tmp_path / "board" / "averages.csv").open() as f:
        assert {(r["model"], r["base"], r["aligned"]) for r in csv.DictReader(f)} == {
            ("tiny-base", "tiny-base", "qalign"), ("qalign", "tiny-base", "qalign"),
            ("tiny-base", "tiny-base", "other"), ("other", "tiny-base", "other"),
            ("tiny-base", "", ""), ("qalign", "", ""), ("other", "", ""),
        }  # fmt: skip


def test_a_model_in_no_pair_is_averaged_over_its_own_cells(tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path, "qalign", ["de"])
    write_run(
        tmp_path / "runs",
        f"pretrained=org/absent-base,peft={adapter}",
        {"snli_aligned_en": mc(4), "snli_aligned_de": mc(8)},
    )
    board = make_leaderboard([tmp_path / "runs"], tmp_path / "board")
    assert pair_averages(board) == {}
    assert pair_averages(board, own=True) == {("qalign", None): {"english": 40.0, "seen": 80.0, "non_english": 80.0}}
    assert "| qalign | all its cells | 40.0 | 80.0 | – | 80.0 |" in (tmp_path / "board" / "README.md").read_text()
    with (tmp_path / "board" / "averages.csv").open() as f:
        assert {(r["base"], r["aligned"]) for r in csv.DictReader(f)} == {("", "")}


def test_names_that_reduce_to_one_file_name_get_distinct_files(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    other = tmp_path / "adapters" / "other"
    other.mkdir()
    write_run(tmp_path / "runs" / "other", f"pretrained=org/tiny-base,peft={other}", {"snli_aligned_de": mc(7)})
    manifest = tmp_path / "m.yaml"
    models = [{"match": "adapters/qalign", "name": "QA 1"}, {"match": "adapters/other", "name": "QA/1"}]
    manifest.write_text(yaml.safe_dump({"models": models}))
    out = tmp_path / "board"
    make_leaderboard([tmp_path / "runs"], out, manifest)
    assert sorted(p.name for p in (out / "model_cards").iterdir()) == ["QA_1-2.yaml", "QA_1.yaml"]
    embedded = {p.parent.name: p for p in (out / "inputs").rglob("results_*.json")}
    assert sorted(embedded) == ["QA_1", "QA_1-2", "tiny-base"]
    assert "peft=" + str(other) in embedded["QA_1-2"].read_text()


def test_cli_one_line_error_and_success(tmp_path: Path, board_dir) -> None:
    (tmp_path / "empty").mkdir()
    cmd = [
        sys.executable,
        "-m",
        "mlalign_tasks.cli",
        "leaderboard",
        str(tmp_path / "empty"),
        "--out",
        str(tmp_path / "b"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no lm-eval results file") and proc.stderr.count("\n") == 1
    _, base, aligned = board_dir
    cmd[4:5] = [str(base), str(aligned)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / "index.html").is_file() and (tmp_path / "b" / "inputs" / "manifest.yaml").is_file()
    proc = subprocess.run([*cmd, "--no-embed-inputs"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "b" / "inputs").exists()
    assert f"--out {tmp_path / 'b'} --no-embed-inputs" in (tmp_path / "b" / "README.md").read_text()


def test_group_entries_are_skipped_and_foreign_tasks_noted(tmp_path: Path) -> None:
    path = write_run(tmp_path / "runs", "pretrained=org/m", {"snli_aligned_de": mc(4), "snli_aligned_en": mc(5)})
    data = json.loads(path.read_text())
    data["results"]["snli_aligned"] = {"alias": "snli_aligned", "acc,none": 0.45, "acc_stderr,none": 0.1}
    data["results"]["arc_easy"] = {"alias": "arc_easy", "acc,none": 0.3}
    data["group_subtasks"] = {"snli_aligned": ["snli_aligned_de", "snli_aligned_en"]}
    path.write_text(json.dumps(data))
    board = make_leaderboard([path], tmp_path / "board")
    assert sorted((r["task"], r["level"], r["value"]) for r in board.rows) == [
        ("snli_aligned", "group", 0.45), ("snli_aligned_de", "language", 0.4), ("snli_aligned_en", "language", 0.5)
    ]  # fmt: skip
    assert board.notes == [
        f"{path.name}: ignored tasks of no known suite and not named <family>_<language>: arc_easy"
    ]  # fmt: skip
    assert "| snli_aligned | acc,none | 45.0 ± 10.0 |" in (tmp_path / "board" / "README.md").read_text()


def _set_label_scoring(results_dir: Path, scoring: str, gold: str = "english") -> None:
    """Mark the paper tasks of a results file as `mlalign eval --label-scoring --gold` records them."""
    (path,) = results_dir.glob("*/results_*.json")
    data = json.loads(path.read_text())
    for task, config in data["configs"].items():
        if task.startswith("snli_aligned"):
            config["metadata"] = {"version": 1.0, "label_scoring": scoring, "gold": gold}
    path.write_text(json.dumps(data))


def _set_precision(results_dir: Path, preset: str | None) -> None:
    """Mark a results file as `mlalign eval --load-in-4bit --nf4-preset PRESET` records it (None: full precision)."""
    (path,) = results_dir.glob("*/results_*.json")
    data = json.loads(path.read_text())
    data["mlalign"] = {**data.get("mlalign", {}), "load_in_4bit": preset is not None, "nf4_preset": preset}
    path.write_text(json.dumps(data))


def test_precisions_must_agree(tmp_path: Path) -> None:
    base, aligned, _ = write_inputs(tmp_path)
    _set_precision(aligned, "paper")
    with pytest.raises(
        MlalignError, match=r"was evaluated with different precisions \(tiny-base: full; qalign: nf4-paper\)"
    ):
        make_leaderboard([base, aligned], tmp_path / "mixed")
    _set_precision(base, "mlalign")
    with pytest.raises(MlalignError, match="nf4-mlalign.*nf4-paper.*--load-in-4bit --nf4-preset"):
        make_leaderboard([base, aligned], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    _set_precision(base, "paper")
    make_leaderboard([base, aligned], tmp_path / "board")
    assert "4-bit NF4 as in the papers' scripts" in (tmp_path / "board" / "README.md").read_text()


def test_label_scorings_must_agree(tmp_path: Path) -> None:
    base, aligned, _ = write_inputs(tmp_path)
    _set_label_scoring(aligned, "first-token")
    with pytest.raises(
        MlalignError, match=r"snli_aligned_\w+ was evaluated with different label scorings \(tiny-base: label; "
    ):
        make_leaderboard([base, aligned], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    _set_label_scoring(base, "first-token")
    make_leaderboard([base, aligned], tmp_path / "board")
    assert "scored on the probability of each label's first token" in (tmp_path / "board" / "README.md").read_text()


def test_gold_rules_must_agree(tmp_path: Path) -> None:
    """Upstream's gold rule (`--gold upstream`: SNLI ja and bn lose a class) is never compared with ours."""
    base, aligned, _ = write_inputs(tmp_path)
    _set_label_scoring(base, "paper")
    _set_label_scoring(aligned, "paper", gold="upstream")
    with pytest.raises(
        MlalignError,
        match=r"snli_aligned_\w+ was evaluated with different label scorings \(tiny-base: paper; qalign: paper, gold "
        r"upstream\); evaluate every model with the same `mlalign eval --label-scoring` and `--gold`",
    ):
        make_leaderboard([base, aligned], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    _set_label_scoring(base, "paper", gold="upstream")
    make_leaderboard([base, aligned], tmp_path / "board")
    settings = (tmp_path / "board" / "settings.csv").read_text()
    scorings = {r["family"]: r["scoring"] for r in csv.DictReader(settings.splitlines())}
    assert scorings["snli_aligned"] == "paper, gold upstream"


def test_rebuild_with_nothing_changed_is_byte_identical(tmp_path: Path) -> None:
    """The same inputs give the same bytes, also when they come from a re-run (new lm-eval dates in the file names)."""
    write_inputs(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "board"

    def snapshot() -> dict[str, bytes]:
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    options = BoardOptions(embed=False)
    make_leaderboard([runs], out, options=options)
    first = snapshot()
    make_leaderboard([runs], out, options=options)
    assert snapshot() == first
    for path in runs.rglob("*_2026-01-01T00-00-00.000000.json*"):  # what a re-run of the same evaluation writes
        path.rename(path.with_name(path.name.replace("2026-01-01T00-00-00.000000", "2026-03-04T05-06-07.080910")))
    make_leaderboard([runs], out, options=options)
    assert snapshot() == first


def test_one_core_writes_the_same_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plots and page, written by a second process beside the tables, come out as one process writes them."""
    write_inputs(tmp_path)
    runs = tmp_path / "runs"
    boards = {}
    for cores in (2, 1):
        monkeypatch.setattr(parallel, "_cores", lambda cores=cores: cores)
        out = tmp_path / "board"
        make_leaderboard([runs], out, options=BoardOptions(embed=False))
        boards[cores] = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        shutil.rmtree(out)
    assert "index.html" in boards[1] and "plots/delta_heatmap.svg" in boards[1]
    assert boards[2] == boards[1]


def test_heatmap_encodes_significance_and_rounds_like_the_tables(board_dir) -> None:
    out, _, _ = board_dir
    svg = (out / "plots" / "delta_heatmap.svg").read_text()
    assert "+80.0*" in svg and "+10.0<" in svg and "+20.0<" in svg  # one decimal, * only where p < 0.05
    assert "faded, hatched: not significant" in svg
    # the hatch over the 5 non-significant cells: a row's adjacent cells are one rectangle, as wide as they are
    veiled = re.findall(r'<path d="M ([\d.]+) [\d.]+ \nL ([\d.]+) [^"]*"[^>]*url\(#h', svg)
    assert svg.count("<pattern ") == 1 and len(veiled) == svg.count("url(#h") == 4
    widths = sorted(float(right) - float(left) for left, right in veiled)
    assert [round(w / widths[0], 6) for w in widths] == [1, 1, 1, 2]


def test_generation_tasks_are_scored_by_their_extraction_rules() -> None:
    """The settings table names what a task's answers are scored by: a generation task its filters (extraction
    rules), a multiple-choice task its label scoring."""
    from mlalign_tasks.leaderboard.runs import _scoring

    qalign = {"output_type": "generate_until", "filter_list": [{"name": "qalign"}, {"name": "last_number"}]}
    assert _scoring(qalign) == "extraction qalign+last_number"
    assert _scoring({"output_type": "multiple_choice", "metadata": {"label_scoring": "paper"}}) == "paper"
    assert _scoring({"output_type": "multiple_choice"}) == "label"
    assert _scoring({"metadata": {"label_scoring": "paper", "gold": "english"}}) == "paper"
    settings = (Path(__file__).resolve().parents[1] / "leaderboards" / "demo" / "settings.csv").read_text()
    demo = {(r["family"], r["scoring"]) for r in csv.DictReader(settings.splitlines())}
    assert demo == {("toy_sentiment_aligned", "paper"), ("toy_math_aligned", "extraction last_number")}


def test_a_value_label_sits_above_its_base_models_tick() -> None:
    """In split_averages.png a bar's value label is drawn above the bar, or above the base model's tick where the
    tick lies just above the bar (it covered the label); a tick far above or below leaves the label on its bar."""
    from mlalign_tasks.leaderboard.plots import label_positions

    nan = float("nan")
    got = label_positions([0.0, 1.0, 2.0, 3.0, 4.0], [36.1, 50.0, nan, 20.0, 55.8], [37.0, 40.0, 10.0, nan, 100.0])
    assert got == [(0.0, 37.0, 36.1), (1.0, 50.0, 50.0), (3.0, 20.0, 20.0), (4.0, 55.8, 55.8)]

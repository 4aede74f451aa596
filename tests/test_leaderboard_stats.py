"""The board's statistics against references: Wilson (scipy), Holm and Benjamini-Hochberg (scipy, hand), the paired
bootstrap of the averages' deltas (normal approximation, determinism), chance normalisation and seeds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from scipy.stats import binomtest, false_discovery_control

from mlalign_tasks.leaderboard import BoardOptions, Correction, make_leaderboard
from mlalign_tasks.leaderboard.stats import adjust, wilson
from mlalign_tasks.leaderboard.synthetic import Item, write_run


def test_wilson_matches_scipy() -> None:
    assert wilson(5, 10) == pytest.approx((0.2365930905, 0.7634069095), abs=1e-9)  # the textbook example
    for k, n in ((0, 1), (1, 1), (0, 10), (3, 8), (250, 250), (117, 600)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_holm_and_bh_match_references() -> None:
    rng = random.Random(0)
    for _ in range(50):
        ps = [rng.random() ** 3 for _ in range(rng.randint(1, 20))]
        assert adjust(ps, Correction.bh) == pytest.approx(list(false_discovery_control(ps, method="bh")))
        order = sorted(range(len(ps)), key=ps.__getitem__)
        holm, running = [0.0] * len(ps), 0.0
        for rank, i in enumerate(order):  # Holm (1979): max over the smaller p's of (m - rank) * p, capped at 1
            running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
            holm[i] = running
        assert adjust(ps, Correction.holm) == pytest.approx(holm)
    assert adjust([0.01, None, 0.04], Correction.holm) == [0.02, None, 0.04]
    assert adjust([0.01, None], Correction.none) == [None, None]


def mc(right: list[bool]) -> list[Item]:
    return [Item(1 if r else 2, 1) for r in right]


def pair(root: Path, base: dict[str, list[bool]], aligned: dict[str, list[bool]], seed: int = 0) -> list[Path]:
    adapter = root / "adapters" / "qa"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "mlalign_training.json").write_text(json.dumps({"languages": ["de"]}))
    paths = [root / "base", root / "aligned"]
    write_run(paths[0], "pretrained=org/b", {t: mc(r) for t, r in base.items()})
    write_run(paths[1], f"pretrained=org/b,peft={adapter}", {t: mc(r) for t, r in aligned.items()})
    return paths


def test_bootstrap_interval_agrees_with_the_normal_approximation(tmp_path: Path) -> None:
    """One cell of 400 items: the percentile interval of the paired bootstrap is close to mean ± 1.96 sd/√n."""
    rng = random.Random(1)
    base = [rng.random() < 0.5 for _ in range(400)]
    aligned = [b if rng.random() < 0.7 else not b for b in base]
    paths = pair(tmp_path, {"snli_aligned_de": base}, {"snli_aligned_de": aligned})
    board = make_leaderboard(paths, tmp_path / "board", options=BoardOptions(bootstrap=4000))
    (d,) = [d for d in board.deltas if d["family"] == "all" and d["split"] == "seen"]
    diffs = [a - b for a, b in zip(aligned, base, strict=True)]
    mean = sum(diffs) / len(diffs)
    sd = (sum((x - mean) ** 2 for x in diffs) / (len(diffs) - 1)) ** 0.5
    half = 1.96 * sd / len(diffs) ** 0.5 * 100
    assert d["delta_pp"] == pytest.approx(mean * 100)
    assert d["ci_low_pp"] == pytest.approx(mean * 100 - half, abs=0.6)
    assert d["ci_high_pp"] == pytest.approx(mean * 100 + half, abs=0.6)
    assert d["resamples"] == 4000
    again = make_leaderboard(paths, tmp_path / "board", options=BoardOptions(bootstrap=4000))
    assert again.deltas == board.deltas  # seeded
    other = make_leaderboard(paths, tmp_path / "board", options=BoardOptions(bootstrap=4000, seed=7))
    assert other.deltas != board.deltas
    assert not any(
        d["ci_low_pp"] for d in make_leaderboard(paths, tmp_path / "b0", options=BoardOptions(bootstrap=0)).deltas
    )


def test_bootstrap_resamples_items_jointly_over_parallel_languages(tmp_path: Path) -> None:
    """de and fr share their items (parallel test sets): a gain on the same items in both widens the interval of
    their mean against independent resampling; here the gains coincide, so the interval equals one language's."""
    rng = random.Random(2)
    base = [rng.random() < 0.4 for _ in range(200)]
    aligned = [b or rng.random() < 0.3 for b in base]
    tasks = {f"snli_aligned_{lang}": None for lang in ("de", "fr")}
    paths = pair(tmp_path, dict.fromkeys(tasks, base), dict.fromkeys(tasks, aligned))
    board = make_leaderboard(paths, tmp_path / "board")
    by = {(d["family"], d["split"]): d for d in board.deltas}
    seen, unseen, both = by[("all", "seen")], by[("all", "unseen")], by[("all", "non_english")]
    assert (seen["ci_low_pp"], seen["ci_high_pp"]) == (unseen["ci_low_pp"], unseen["ci_high_pp"])
    assert (both["ci_low_pp"], both["ci_high_pp"]) == pytest.approx((seen["ci_low_pp"], seen["ci_high_pp"]))


def test_correction_and_chance_normalisation_on_the_board(tmp_path: Path) -> None:
    langs = ("en", "de", "fr")
    base = {f"snli_aligned_{lang}": [i < 3 for i in range(10)] for lang in langs}
    aligned = {f"snli_aligned_{lang}": [i < k for i in range(10)] for lang, k in zip(langs, (4, 10, 9), strict=True)}
    paths = pair(tmp_path, base, aligned)
    plain = make_leaderboard(paths, tmp_path / "plain")
    holm = make_leaderboard(paths, tmp_path / "holm", options=BoardOptions(correction=Correction.holm))
    ps = [c["p_value"] for c in plain.comparisons]
    assert [c["p_adjusted"] for c in holm.comparisons] == adjust(ps, Correction.holm)
    assert all(c["p_adjusted"] is None for c in plain.comparisons)
    readme = (tmp_path / "holm" / "README.md").read_text()
    assert "Holm-adjusted across the languages of each pair and task family" in readme
    assert f"(p={ps[1]:.3g}, adj. {holm.comparisons[1]['p_adjusted']:.3g})" in readme
    chance = make_leaderboard(paths, tmp_path / "chance", options=BoardOptions(chance_normalised=True))
    third = 1 / 3
    assert chance.cells[("qa", "snli_aligned", "de")]["value"] == pytest.approx((1.0 - third) / (1 - third))
    assert chance.cells[("b", "snli_aligned", "de")]["value"] == pytest.approx((0.3 - third) / (1 - third))
    (c,) = [c for c in chance.comparisons if c["language"] == "de"]
    assert c["delta_pp"] == pytest.approx(70 / (1 - third)) and c["p_value"] == ps[1]
    with (tmp_path / "chance" / "results.csv").open() as f:
        assert "0.3," in f.read()  # lm-eval's own value stays in results.csv
    assert "chance-normalised" in (tmp_path / "chance" / "README.md").read_text()


def test_runs_with_several_seeds_are_mean_and_sd(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, k in ((0, 4), (1, 6), (2, 8)):
        path = write_run(runs / f"s{seed}", "pretrained=org/m", {"snli_aligned_de": mc([i < k for i in range(10)])})
        data = json.loads(path.read_text())
        data["config"]["random_seed"] = seed
        path.write_text(json.dumps(data))
    board = make_leaderboard([runs], tmp_path / "board")
    view = board.cells[("m", "snli_aligned", "de")]
    assert view["value"] == pytest.approx(0.6) and view["sd"] == pytest.approx(0.2) and view["runs"] == 3
    assert "60.0 ± 20.0 sd (3 runs)" in (tmp_path / "board" / "README.md").read_text()
    assert sorted(r["seed"] for r in board.rows) == [0, 1, 2]

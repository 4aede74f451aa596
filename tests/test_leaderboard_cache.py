"""The parse cache (a rebuild parses only what changed, and the board is the same with it or without it), the
parsing workers, and the batched statistics against their one-at-a-time definitions."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest

import mlalign_tasks.leaderboard.cache as cache_module
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
from mlalign_tasks.leaderboard.averages import percentiles
from mlalign_tasks.leaderboard.items import Items, answer_code
from mlalign_tasks.leaderboard.stats import consistencies, consistency, paired_test, paired_tests
from mlalign_tasks.leaderboard.synthetic import Item, write_run
from mlalign_tasks.runtime import parallel


def write_board_inputs(root: Path, models: int = 3) -> list[Path]:
    """`models` runs: a base and aligned adapters of it, three tasks, two languages each, 12 items per cell."""
    rng = random.Random(0)
    paths = []
    for m in range(models):
        args = "pretrained=org/base" + (f",peft=adapters/a{m}" if m else "")
        tasks = {
            f"{family}_{lang}": [Item(rng.randint(0, 2), 1) for _ in range(12)]
            for family in ("snli_aligned", "paper_aligned")
            for lang in ("en", "de")
        }
        tasks |= {
            f"mgsm_aligned_{lang}": [Item(str(rng.randint(1, 3)), "2") for _ in range(12)] for lang in ("en", "de")
        }
        paths.append(root / f"run{m}")
        write_run(paths[-1], args, tasks, generative={"mgsm_aligned_en", "mgsm_aligned_de"})
    return paths


def board_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


class Parses:
    """Counts the samples files parsed and the results files read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.samples: list[str] = []
        self.runs: list[Path] = []
        load_samples, load_runs = cache_module.load_all_samples, cache_module.load_all_runs
        monkeypatch.setattr(
            cache_module, "load_all_samples", lambda jobs: self.samples.extend(p for p, _ in jobs) or load_samples(jobs)
        )
        monkeypatch.setattr(cache_module, "load_all_runs", lambda paths: self.runs.extend(paths) or load_runs(paths))

    def reset(self) -> None:
        self.samples.clear()
        self.runs.clear()


def test_rebuild_from_the_cache_parses_nothing_and_writes_the_same_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = write_board_inputs(tmp_path / "runs")
    parses = Parses(monkeypatch)
    out = tmp_path / "board"
    without = make_leaderboard(runs, out, options=BoardOptions(embed=False))
    assert len(parses.samples) == 3 * 6 and len(parses.runs) == 3  # no cache: everything parsed
    plain = board_files(out)
    parses.reset()
    cached = BoardOptions(embed=False, cache=tmp_path / "cache")
    make_leaderboard(runs, out, options=cached)
    assert len(parses.samples) == 3 * 6 and len(parses.runs) == 3
    assert len(list((tmp_path / "cache").glob("*.entry"))) == 3  # one cache file per results file
    assert board_files(out) == plain
    parses.reset()
    again = make_leaderboard(runs, out, options=cached)
    assert parses.samples == [] and parses.runs == []
    assert board_files(out) == plain
    assert again.comparisons == without.comparisons and again.deltas == without.deltas


def test_a_changed_file_is_parsed_again_and_only_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = write_board_inputs(tmp_path / "runs")
    cached = BoardOptions(embed=False, cache=tmp_path / "cache")
    make_leaderboard(runs[:2], tmp_path / "board", options=cached)
    parses = Parses(monkeypatch)
    make_leaderboard(runs, tmp_path / "board", options=cached)  # one more model: only its files are read
    assert len(parses.samples) == 6 and all(Path(p).is_relative_to(runs[2].resolve()) for p in parses.samples)
    assert len(parses.runs) == 1
    parses.reset()
    samples = next(runs[1].rglob("samples_snli_aligned_de_*.jsonl"))
    lines = samples.read_text().splitlines()
    flipped = [line.replace('"acc": 1.0', '"acc": 0.0') for line in lines]
    assert flipped != lines
    samples.write_text("\n".join(flipped) + "\n")  # the same size: the stamp's times and inode still tell
    board = make_leaderboard(runs, tmp_path / "board", options=cached)
    assert parses.samples == [str(samples.resolve())] and parses.runs == []
    rebuilt = board_files(tmp_path / "board")
    make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False))
    assert board_files(tmp_path / "board") == rebuilt
    (tested,) = [
        c for c in board.comparisons if (c["aligned"], c["family"], c["language"]) == ("a1", "snli_aligned", "de")
    ]
    assert tested["n_paired"] == 12 and tested["only_aligned"] == 0  # the new log: a1 right on no item there


def test_a_damaged_or_unwritable_cache_costs_a_warning_never_the_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runs = write_board_inputs(tmp_path / "runs", models=2)
    folder = tmp_path / "cache"
    make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=folder))
    expected = board_files(tmp_path / "board")
    for i, entry in enumerate(sorted(folder.glob("*.entry"))):
        entry.write_bytes(b"not a cache file" if i == 0 else entry.read_bytes()[:100])  # garbage, cut short
    parses = Parses(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=folder))
    assert len(parses.runs) == 2 and len(parses.samples) == 2 * 6  # parsed again, as if there were no cache
    assert sum("ignoring unreadable board cache file" in r.message for r in caplog.records) == 2
    assert board_files(tmp_path / "board") == expected
    parses.reset()
    make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=folder))
    assert parses.samples == [] and parses.runs == []  # and rewritten
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=blocked / "cache"))
    assert any("board cache not written" in r.message for r in caplog.records)
    assert board_files(tmp_path / "board") == expected


def test_cache_folder_defaults_and_cli_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLALIGN_BOARD_CACHE", str(tmp_path / "mine"))
    assert cache_module.default_folder() == tmp_path / "mine"
    monkeypatch.delenv("MLALIGN_BOARD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_module.default_folder() == tmp_path / "xdg" / "mlalign" / "leaderboard"
    from typer.testing import CliRunner

    from mlalign_tasks.cli import app

    runs = write_board_inputs(tmp_path / "runs", models=2)
    monkeypatch.setenv("MLALIGN_BOARD_CACHE", str(tmp_path / "env-cache"))
    args = ["leaderboard", *map(str, runs), "--no-embed-inputs"]
    assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b1")]).exit_code == 0
    assert len(list((tmp_path / "env-cache").glob("*.entry"))) == 2
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b2"), "--cache-dir", str(tmp_path / "given")])
    assert result.exit_code == 0 and len(list((tmp_path / "given").glob("*.entry"))) == 2
    assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b3"), "--no-cache"]).exit_code == 0
    assert {
        k: v for k, v in board_files(tmp_path / "b1").items() if k not in ("results.json", "index.html", "README.md")
    } == {k: v for k, v in board_files(tmp_path / "b3").items() if k not in ("results.json", "index.html", "README.md")}
    assert "cache" not in (tmp_path / "b1" / "results.json").read_text().split('"options"')[1].split("}")[0]


def random_items(rng: random.Random, keys: list[int]) -> Items:
    scores = [
        rng.choice([0.0, 1.0, 1.0, float("nan")]) if rng.random() < 0.05 else float(rng.random() < 0.5) for _ in keys
    ]
    answers = [rng.choice([0, 1, 2, None, "7", "8.0"]) for _ in keys]
    return Items.of(keys, [answer_code(a) for a in answers], scores)


def test_batched_tests_equal_one_at_a_time_and_percentiles_equal_numpys() -> None:
    rng = random.Random(3)
    pairs = []
    for _ in range(300):
        keys = sorted(rng.sample(range(40), rng.randint(0, 30)))
        other = keys if rng.random() < 0.7 else sorted(rng.sample(range(40), rng.randint(0, 30)))
        pairs.append((random_items(rng, keys), random_items(rng, other)))
    assert paired_tests(pairs) == [paired_test(x, y) for x, y in pairs]
    assert consistencies(pairs) == [consistency(x, y) for x, y in pairs]
    for x, y in pairs:  # one at a time, from the definitions (dicts of items)
        common = sorted(set(x.keys.tolist()) & set(y.keys.tolist()))
        xs = dict(zip(x.keys.tolist(), zip(x.answers.tolist(), x.scores.tolist(), strict=True), strict=True))
        ys = dict(zip(y.keys.tolist(), zip(y.answers.tolist(), y.scores.tolist(), strict=True), strict=True))
        c = consistency(x, y)
        if not common:
            assert c is None and paired_test(x, y) is None
            continue
        same = sum(xs[k][0] == ys[k][0] and xs[k][0] != -1 for k in common)
        right = sum(xs[k][1] == 1.0 and ys[k][1] == 1.0 for k in common)
        assert (c.n, c.same_answer, c.both_correct) == (len(common), same / len(common), right / len(common))
        t = paired_test(x, y)
        if any(xs[k][1] not in (0.0, 1.0) or ys[k][1] not in (0.0, 1.0) for k in common):
            assert t is None
        else:
            assert (t.only_base, t.only_aligned) == (
                sum(xs[k][1] == 1.0 and ys[k][1] == 0.0 for k in common),
                sum(xs[k][1] == 0.0 and ys[k][1] == 1.0 for k in common),
            )
    draws = np.random.default_rng(0).normal(size=(50, 400))
    draws[1, :2] = np.nan  # 99.5% finite: the finite ones count
    draws[2, :10] = np.inf  # 97.5%: too few
    got = percentiles(draws, (2.5, 50.0, 97.5))
    for i, row in enumerate(draws):
        if i == 2:
            assert np.isnan(got[i]).all()
        else:
            assert got[i] == pytest.approx(np.percentile(row[np.isfinite(row)], [2.5, 50.0, 97.5]), abs=1e-12)


def test_worker_processes_give_the_same_board_and_raise_what_a_worker_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlalign_tasks.leaderboard.workers as load

    runs = write_board_inputs(tmp_path / "runs")
    out = tmp_path / "board"
    monkeypatch.setattr(load, "PARALLEL_MIN_FILES", 10**9)
    monkeypatch.setattr(load, "PARALLEL_MIN_RUNS", 10**9)
    make_leaderboard(runs, out, options=BoardOptions(embed=False))
    here = board_files(out)
    monkeypatch.setattr(load, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(load, "PARALLEL_MIN_RUNS", 1)
    pools = []

    class Pool(parallel.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:
            pools.append(kwargs["max_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", Pool)
    make_leaderboard(runs, out, options=BoardOptions(embed=False))
    assert board_files(out) == here and len(pools) == 2  # the results files, then the samples files
    next(runs[2].rglob("samples_mgsm_aligned_de_*.jsonl")).write_text('{"doc_id": 0, "oops"\n')
    with pytest.raises(MlalignError, match="not an lm-eval sample record"):
        make_leaderboard(runs, out, options=BoardOptions(embed=False))
    assert board_files(out) == here


def test_a_planted_pickle_or_fifo_in_the_cache_runs_nothing_and_hangs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pickle that would run code when loaded, under the old name and the new one, and a FIFO in an entry's place:
    nothing runs, nothing blocks, the files are parsed again and the board is the same."""
    import pickle

    runs = write_board_inputs(tmp_path / "runs", models=2)
    folder = tmp_path / "cache"
    make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=folder))
    expected = board_files(tmp_path / "board")
    first, second = sorted(folder.glob("*.entry"))
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(ran),))

    planted = pickle.dumps(Payload())
    first.write_bytes(planted)
    first.with_suffix(".pkl").write_bytes(planted)  # where the pickle cache kept its entries
    second.unlink()
    os.mkfifo(second)
    parses = Parses(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=folder))
    assert not ran.exists()
    assert len(parses.runs) == 2 and len(parses.samples) == 2 * 6
    assert any("not a regular file of yours" in r.message for r in caplog.records)
    assert board_files(tmp_path / "board") == expected


def test_a_cache_folder_others_can_write_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    """In a folder anyone can write, an entry edited to publish a forged score (well formed, its input's digest
    kept) would be trusted: such a folder, or another user's, is refused with one line and no board is written."""
    from mlalign_tasks.leaderboard.cache import MAGIC

    runs = write_board_inputs(tmp_path / "runs", models=2)
    folder = tmp_path / "shared-cache"
    make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=folder))
    honest = board_files(tmp_path / "board")
    for entry in folder.glob("*.entry"):
        data = entry.read_bytes()
        forged = data.replace(b'"acc,none": ', b'"acc,none": 0.987654, "x": ')
        assert forged != data and forged.startswith(MAGIC)
        size = len(forged) - len(data) + int.from_bytes(data[len(MAGIC) : len(MAGIC) + 8], "little")
        entry.write_bytes(MAGIC + size.to_bytes(8, "little") + forged[len(MAGIC) + 8 :])
    folder.chmod(0o777)
    with pytest.raises(MlalignError, match=r"cache folder .* is writable by others \(777\).*chmod go-w") as caught:
        make_leaderboard(runs, tmp_path / "forged", options=BoardOptions(embed=False, cache=folder))
    assert "\n" not in str(caught.value) and not (tmp_path / "forged").exists()
    if os.getuid() == 0:  # only root can give a folder away
        folder.chmod(0o700)
        os.chown(folder, 65534, 65534)
        with pytest.raises(MlalignError, match="belongs to another user"):
            make_leaderboard(runs, tmp_path / "forged", options=BoardOptions(embed=False, cache=folder))
        assert not (tmp_path / "forged").exists()
    assert board_files(tmp_path / "board") == honest
    fresh = tmp_path / "fresh" / "cache"
    make_leaderboard(runs, tmp_path / "board", options=BoardOptions(embed=False, cache=fresh))
    assert fresh.stat().st_mode & 0o777 == 0o700  # created private


def test_entries_are_tied_to_content_and_to_the_parsing_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A samples file rewritten with the same size and modification time is parsed again (its digest differs), and
    an entry written by other parsing code (another `parser_key`) is not used."""
    runs = write_board_inputs(tmp_path / "runs", models=2)
    cached = BoardOptions(embed=False, cache=tmp_path / "cache")
    make_leaderboard(runs, tmp_path / "board", options=cached)
    samples = next(runs[1].rglob("samples_snli_aligned_de_*.jsonl"))
    before = samples.stat()
    flipped = samples.read_text().replace('"acc": 1.0', '"acc": 0.0')
    samples.write_text(flipped)
    os.utime(samples, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert samples.stat().st_size == before.st_size and samples.stat().st_mtime_ns == before.st_mtime_ns
    parses = Parses(monkeypatch)
    make_leaderboard(runs, tmp_path / "board", options=cached)
    assert parses.samples == [str(samples.resolve())] and parses.runs == []
    parses.reset()
    key = cache_module.parser_key().encode()
    for entry in (tmp_path / "cache").glob("*.entry"):
        entry.write_bytes(entry.read_bytes().replace(key, b"0" * len(key)))
    make_leaderboard(runs, tmp_path / "board", options=cached)
    assert len(parses.runs) == 2 and len(parses.samples) == 2 * 6
    parses.reset()
    make_leaderboard(runs, tmp_path / "board", options=cached)
    assert parses.samples == [] and parses.runs == []  # rewritten by today's code

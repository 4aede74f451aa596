"""An interrupted evaluation resumes from lm-eval's request cache: the rerun computes only the requests that had no
answer yet, and its results equal an uninterrupted run's; a cache of another model or settings is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mlalign_tasks.errors import Interrupted, MlalignError
from mlalign_tasks.models.hf_lm import BatchAnswers
from mlalign_tasks.pipeline import evaluate
from mlalign_tasks.pipeline.request_cache import DB_SUFFIX, RequestCache, prepare

pytestmark = pytest.mark.slow


class Answers:
    """Counts the answers the model computes (each one reaches the cache hook as it finishes) and, when `stop_after`
    is given, stops the evaluation as Ctrl-C does at that answer."""

    def __init__(self, monkeypatch, stop_after: int | None = None) -> None:
        self.count, self.stop_after = 0, stop_after
        recorded = BatchAnswers.add_partial

        def add_partial(hook, attr, req, res) -> None:
            recorded(hook, attr, req, res)
            self.count += 1
            if self.count == self.stop_after:
                raise Interrupted

        monkeypatch.setattr(BatchAnswers, "add_partial", add_partial)


def requests_in(out: Path) -> int:
    """How many requests the samples files of an evaluation's output folder answer (one per argument list)."""
    return sum(len(json.loads(line)["arguments"]) for path in out.glob("*/samples_*.jsonl") for line in path.open())


def samples(out: Path) -> dict[str, bytes]:
    """Each samples file's bytes, by task (the date lm-eval puts in the names left out)."""
    return {p.name.rpartition("_")[0]: p.read_bytes() for p in out.glob("*/samples_*.jsonl")}


def answers_kept(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute('SELECT COUNT(*) FROM "unnamed"').fetchone()[0]


@pytest.mark.parametrize(
    ("tasks", "scoring"),
    [("snli_aligned:en,de,sentiment_aligned:ja", "paper"), ("mgsm_aligned:en,de,paws_aligned:en", "label")],
    ids=["paper-label-scoring", "generation-and-whole-label-loglikelihood"],
)
def test_an_interrupted_eval_reruns_only_the_unanswered_requests(tmp_path, tiny_model_dir, monkeypatch, tasks, scoring):
    def request(name: str) -> evaluate.EvalRequest:
        return evaluate.EvalRequest(
            model=str(tiny_model_dir), tasks=evaluate.parse_tasks(tasks), limit=4, batch_size=3, device="cpu",
            gen_kwargs={"max_gen_toks": 6}, output_path=tmp_path / name, label_scoring=scoring,
            use_cache=RequestCache(tmp_path / f"{name}-cache"),
        )  # fmt: skip

    whole = Answers(monkeypatch)
    expected = evaluate.run(request("whole"))
    total = requests_in(tmp_path / "whole")
    assert whole.count == total > 10  # every request's answer was kept as it finished

    stop = total // 2 + 1
    with pytest.raises(Interrupted):
        Answers(monkeypatch, stop_after=stop)
        evaluate.run(request("resumed"))
    assert not (tmp_path / "resumed").exists()  # nothing of the interrupted run's results is left
    kept = answers_kept(tmp_path / f"resumed-cache{DB_SUFFIX}")
    assert 0 < kept < stop  # the whole batches before the one the interruption cut

    rerun = Answers(monkeypatch)
    resumed = evaluate.run(request("resumed"))
    assert rerun.count == total - kept  # the kept answers are replayed, only the rest computed
    assert resumed["results"] == expected["results"]
    assert samples(tmp_path / "resumed") == samples(tmp_path / "whole")  # the same batches: the same bytes


def test_a_cache_of_another_model_or_settings_is_refused(tmp_path, tiny_model_dir, monkeypatch):
    cache = RequestCache(tmp_path / "cache")
    req = evaluate.EvalRequest(
        model=str(tiny_model_dir), tasks=evaluate.parse_tasks("paws_aligned:en"), limit=2, batch_size=2, device="cpu",
        label_scoring="paper", use_cache=cache,
    )  # fmt: skip
    evaluate.run(req)
    for other, why in (({"batch_size": 1}, "batch_size differ"), ({"label_scoring": "label"}, "label token sets")):
        with pytest.raises(MlalignError, match=f"holds answers of another evaluation \\({why}"):
            evaluate.run(evaluate.EvalRequest(**{**req.__dict__, **other}))
    with sqlite3.connect(cache.db) as conn:  # as lm-eval alone leaves it, with an answer of another model
        conn.execute("DROP TABLE mlalign_answer_key")
        conn.execute('INSERT INTO "unnamed" VALUES (?, ?)', ("another model's", b""))
    with pytest.raises(MlalignError, match=r"name no model and settings \(lm_eval's own cache\?\); pass another path"):
        evaluate.run(req)
    assert answers_kept(cache.db) == 2 * 2 + 1  # refused: nothing lost
    stale = evaluate.EvalRequest(**{**req.__dict__, "use_cache": RequestCache(cache.path, fresh_when_stale=True)})
    evaluate.run(stale)  # a stage's own cache starts afresh instead
    assert answers_kept(cache.db) == 2 * 2  # 2 items x 2 labels, computed anew
    again = Answers(monkeypatch)
    evaluate.run(stale)
    assert again.count == 0  # and recorded for these settings: all replayed


def test_a_file_that_is_no_request_cache_is_refused_or_for_a_stage_started_afresh(tmp_path):
    cache, key = RequestCache(tmp_path / "cache"), {"model": ["m", "0" * 64]}
    cache.db.write_text("my notes\n" * 200)
    with pytest.raises(MlalignError, match=r"cache_rank0.db is not a request cache \(sqlite file\); pass another path"):
        prepare(cache, key)
    assert cache.db.read_text().startswith("my notes")
    prepare(RequestCache(cache.path, fresh_when_stale=True), key)
    prepare(cache, key)  # now recorded for `key`
    with pytest.raises(MlalignError, match=r"another evaluation \(model differ\)"):
        prepare(cache, {"model": ["m", "1" * 64]})

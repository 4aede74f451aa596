"""Question-translation dataset builder: real GSM8K / SNLI question translations and user files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlalign_trainer import qt_data

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.languages import UnknownLanguageError


def _gsm8k_lines(shared_data, lang):
    base = shared_data / f"question_translation/gsm8k/{lang}-en"
    return (base / f"train.{lang}").read_text(encoding="utf-8").splitlines(), (base / "train.en").read_text(
        encoding="utf-8"
    ).splitlines()


def test_gsm8k_prompt_completion_pairs_are_aligned_questions_without_answers(shared_data):
    build = qt_data.build_qt_dataset("gsm8k", "de,ja", 20, seed=3)
    rows = build.dataset.to_list()
    assert len(rows) == 40 and {r["lang"] for r in rows} == {"de", "ja"}
    assert [build.stats[lang].selected for lang in ("de", "ja")] == [20, 20]
    src_lines, en_lines = _gsm8k_lines(shared_data, "de")
    english_of = dict(zip(src_lines, en_lines, strict=True))
    for row in (r for r in rows if r["lang"] == "de"):
        question, instruction, tail = row["prompt"].rsplit("\n", 2)
        assert instruction == "Translate the input from German to English:" and tail == ""
        assert row["completion"] == english_of[question].strip()  # the English question, line-aligned
        assert "####" not in row["completion"]  # no answers
    ja = next(r for r in rows if r["lang"] == "ja")
    assert ja["prompt"].endswith("\nTranslate the input from Japanese to English:\n")


def test_cleaning_counts_on_real_data():
    build = qt_data.build_qt_dataset("gsm8k", "zh", 5, seed=0)
    s = build.stats["zh"]
    assert s.read == 7363 and s.empty == 0
    # The zh file holds untranslated lines (the English question copied): they are dropped and counted.
    assert s.untranslated > 0
    assert s.usable == s.read - s.empty - s.duplicate - s.untranslated - s.misaligned


def test_seed_determinism_hash_and_per_language_independence():
    a = qt_data.build_qt_dataset("gsm8k", "de,fr", 10, seed=1)
    b = qt_data.build_qt_dataset("gsm8k", "de,fr", 10, seed=1)
    c = qt_data.build_qt_dataset("gsm8k", "de,fr", 10, seed=2)
    assert a.data_hash == b.data_hash and len(a.data_hash) == 64
    assert a.data_hash != c.data_hash
    with_sw = qt_data.build_qt_dataset("gsm8k", "de,fr,sw", 10, seed=1)
    de = lambda build: sorted(r["prompt"] for r in build.dataset.to_list() if r["lang"] == "de")  # noqa: E731
    assert de(with_sw) == de(a)  # adding a language leaves the others' samples as they were


def test_snli_instruction_is_stripped_and_rebuilt_once():
    build = qt_data.build_qt_dataset("snli", "it,zh", 5, seed=0)
    for row in build.dataset.to_list():
        assert row["prompt"].count("Translate the input from") == 1
        name = {"it": "Italian", "zh": "Chinese"}[row["lang"]]
        assert row["prompt"].endswith(f'"\nTranslate the input from {name} to English:\n')
        assert row["completion"].startswith("Premise:") and row["completion"].endswith('Answer: "')


def test_chat_format_holds_messages():
    row = qt_data.build_qt_dataset("gsm8k", "fr", 2, seed=0, fmt="chat").dataset[0]
    assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].endswith("French to English:\n")
    assert row["completion"][0]["role"] == "assistant"


def test_user_text_files_drop_and_count_bad_pairs(tmp_path):
    src = ["Wie alt ist Anna?", "", "Wie alt ist Anna?", "Same text", "Ein Hund bellt laut.", "x", "Wo ist Bob?"]
    tgt = ["How old is Anna?", "Empty source", "How old is Anna?", "Same text", "A dog barks loudly.", "y" * 200, "Where is Bob?"]  # fmt: skip
    (tmp_path / "q.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "q.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    build = qt_data.build_qt_dataset("files", "de", None, src_file=tmp_path / "q.de", tgt_file=tmp_path / "q.en")
    s = build.stats["de"]
    assert (s.read, s.empty, s.duplicate, s.untranslated, s.misaligned, s.usable) == (7, 1, 1, 1, 1, 3)
    assert sorted(build.dataset["completion"]) == ["A dog barks loudly.", "How old is Anna?", "Where is Bob?"]


def test_user_jsonl_with_named_fields(tmp_path):
    rows = [{"q": f"Frage {i}?", "en": f"Question {i}?"} for i in range(6)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    build = qt_data.build_qt_dataset("files", "de", 4, jsonl=path, source_field="q", target_field="en")
    assert len(build.dataset) == 4 and all(c.startswith("Question ") for c in build.dataset["completion"])
    with pytest.raises(DataError, match="lacks the fields 'source' and 'target'"):
        qt_data.build_qt_dataset("files", "de", 4, jsonl=path)


def test_bad_inputs(tmp_path):
    (tmp_path / "a.txt").write_text("eins\nzwei\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("one\n", encoding="utf-8")
    with pytest.raises(DataError, match="line counts differ: .* 2 lines, .* 1"):
        qt_data.build_qt_dataset("files", "de", None, src_file=tmp_path / "a.txt", tgt_file=tmp_path / "b.txt")
    with pytest.raises(DataError, match="not found"):
        qt_data.build_qt_dataset("files", "de", None, src_file=tmp_path / "nope", tgt_file=tmp_path / "b.txt")
    with pytest.raises(UnknownLanguageError, match="unknown language code 'xx'.*Valid codes: en, zh"):
        qt_data.build_qt_dataset("gsm8k", "de,xx", 5)
    with pytest.raises(UnknownLanguageError, match="no gsm8k question translations for it; available: de, es, fr"):
        qt_data.build_qt_dataset("gsm8k", "it", 5)  # it exists for SNLI only
    with pytest.raises(DataError, match=r"sw: only \d+ usable pairs \(of 10000 read\), asked for 20000"):
        qt_data.build_qt_dataset("snli", "sw", 20000)
    with pytest.raises(MlalignError, match="unknown question-translation source"):
        qt_data.build_qt_dataset("wiki", "de", 5)
    with pytest.raises(MlalignError, match="must be positive"):
        qt_data.build_qt_dataset("gsm8k", "de", 0)


def test_save_is_atomic_and_loads_back(tmp_path):
    build = qt_data.build_qt_dataset("gsm8k", "sw", 8, seed=0)
    out = qt_data.save_build(build, tmp_path / "qt")
    dataset, info = qt_data.load_build(out)
    assert dataset.to_list() == build.dataset.to_list()
    assert info["data_hash"] == build.data_hash and info["stats"]["sw"]["selected"] == 8
    with pytest.raises(MlalignError, match="not empty"):
        qt_data.save_build(build, out)
    assert [p.name for p in tmp_path.iterdir()] == ["qt"]  # no temp dirs left behind
    (tmp_path / "file").write_text("mine")
    with pytest.raises(MlalignError, match="not empty"):
        qt_data.save_build(build, tmp_path / "file")
    with pytest.raises(DataError, match="not a dataset built by"):
        qt_data.load_build(tmp_path)


def test_cli_build_qt_and_one_line_error(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "mlalign_tasks.cli", "data", "build-qt", "--out", str(tmp_path / "d"), "--langs", "es",
         "--n", "3"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "3 examples written" in ok.stdout and (tmp_path / "d" / "qt_build.json").is_file()
    smaller = subprocess.run(
        [sys.executable, "-m", "mlalign_tasks.cli", "data", "build-qt", "--out", str(tmp_path / "d"), "--langs", "es",
         "--n", "1", "--data-dir", str(tmp_path / "no-data")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert smaller.returncode == 2 and smaller.stderr.count("\n") == 1, smaller.stderr
    assert f"--out {tmp_path / 'd'} (a folder) exists and is not empty; refusing to replace it" in smaller.stderr
    assert len(qt_data.load_build(tmp_path / "d")[0]) == 3  # the earlier set is kept
    bad = subprocess.run(
        [sys.executable, "-m", "mlalign_tasks.cli", "data", "build-qt", "--out", str(tmp_path / "e"), "--langs", "de,q"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2
    assert (
        bad.stderr.strip().startswith("error: unknown language code 'q'") and len(bad.stderr.strip().splitlines()) == 1
    )
    assert not (tmp_path / "e").exists()

"""Question-translation dataset builder: real GSM8K / SNLI question translations and user files."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest
from mlalign_trainer import qt_data

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data
from mlalign_tasks.tasks.languages import GSM8K_QT_LANGS, UnknownLanguageError


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
    raw = qt_data.build_qt_dataset("gsm8k", "zh", None, seed=0, clean=False)  # the file as it is, as upstream trained
    assert raw.stats["zh"].read == raw.stats["zh"].selected == len(raw.dataset) == 7363
    assert sum(r["prompt"].split("\nTranslate the input")[0] == r["completion"] for r in raw.dataset) >= s.untranslated
    assert raw.info()["clean"] is False and raw.data_hash != qt_data.build_qt_dataset("gsm8k", "zh", None).data_hash


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


def _protocols_span(text: str, before: str) -> str:
    """The code span after `before` in PROTOCOLS.md, as Markdown renders it (a line break in a span is a space),
    with its written escapes (``\\n``) as the characters they stand for."""
    span = re.search(re.escape(before) + r"\s*\(?`([^`]+)`", text).group(1)
    return re.sub(r"\s*\n\s*", " ", span).replace("\\n", "\n")


def test_qalign_stage_one_is_byte_for_byte_the_protocol(shared_data):
    """QAlign's stage I as ../shared/PROTOCOLS.md states it: its instruction inside the Alpaca no-input template."""
    text = (shared_data.parent / "PROTOCOLS.md").read_text(encoding="utf-8")
    template = _protocols_span(text, "in the Alpaca no-input template")
    instruction = _protocols_span(text, "the others about 7.4k), instruction")
    assert template.endswith("### Instruction:\n{instruction}\n\n### Response:")
    assert instruction == "Translate the following sentences from {Language} to English. {question}"
    languages = re.search(r"GSM8K questions in 9 languages \(([a-z ]+);", text).group(1).split()
    assert GSM8K_QT_LANGS == tuple(languages) == ("bn", "de", "es", "fr", "ja", "ru", "sw", "th", "zh")
    build = qt_data.build_qt_dataset("gsm8k", "de,ja", 3, seed=0, fmt="qalign")
    for row in build.dataset:
        source = {"de": "German", "ja": "Japanese"}[row["lang"]]
        src_lines, en_lines = _gsm8k_lines(shared_data, row["lang"])
        question = next(q for q in src_lines if row["prompt"].endswith(f"{q.strip()}\n\n### Response:"))
        filled = instruction.replace("{Language}", source).replace("{question}", question.strip())
        assert row["prompt"] == template.replace("{instruction}", filled)
        assert row["completion"] == en_lines[src_lines.index(question)].strip()  # the English question, no answer


def test_qalign_bengali_and_thai_come_from_the_blob_pinned_files_and_fail_offline_naming_them(tmp_path):
    for lang in ("bn", "th"):
        with pytest.raises(DataError, match=f"question_translation/gsm8k/{lang}-en/train.{lang} not found.*offline"):
            qt_data.build_qt_dataset("gsm8k", lang, 5, fmt="qalign")


def test_any_target_language_joins_the_pairs_on_their_english_side(shared_data):
    build = qt_data.build_qt_dataset("gsm8k", "de,en", 10, seed=0, target="zh")
    de, de_en = _gsm8k_lines(shared_data, "de")
    zh, zh_en = _gsm8k_lines(shared_data, "zh")
    english_of = {q.strip(): en.strip() for q, en in zip(de, de_en, strict=True)}
    chinese_of: dict[str, str] = {}
    for q, en in zip(zh, zh_en, strict=True):
        chinese_of.setdefault(en.strip(), q.strip())
    assert build.info()["target_language"] == "zh" and {r["lang"] for r in build.dataset} == {"de", "en"}
    for row in build.dataset:
        question, instruction, _ = row["prompt"].rsplit("\n", 2)
        english = english_of[question] if row["lang"] == "de" else question
        assert row["completion"] == chinese_of[english]  # the same question, in Chinese
        assert instruction == f"Translate the input from {'German' if row['lang'] == 'de' else 'English'} to Chinese:"
    row = qt_data.build_qt_dataset("snli", "de", 1, seed=0, target="it", fmt="qalign").dataset[0]
    assert "Translate the following sentences from German to Italian. Prämisse:" in row["prompt"]
    assert row["completion"].startswith("Premessa:")
    with pytest.raises(MlalignError, match="zh is the target language"):
        qt_data.build_qt_dataset("gsm8k", "de,zh", 5, target="zh")
    with pytest.raises(UnknownLanguageError, match="no gsm8k question translations into it; targets: en, bn"):
        qt_data.build_qt_dataset("gsm8k", "de", 5, target="it")
    with pytest.raises(UnknownLanguageError, match="unknown target language code 'xx'"):
        qt_data.build_qt_dataset("gsm8k", "de", 5, target="xx")


def test_the_papers_files_in_plain_format_are_their_own_text(shared_data):
    """Unclean, in the plain format, an item of the paper's file is trained as the file holds it: input -> answer."""
    rows = json.loads((shared_data / "paper_tasks/snli/snli_it10k_train_question.json").read_text(encoding="utf-8"))
    answer_of = {r["input"]: r["answer"] for r in rows}
    build = qt_data.build_qt_dataset("snli", "it", 50, seed=0, clean=False)
    assert all(answer_of[r["prompt"]] == r["completion"] for r in build.dataset)


def test_every_source_and_language_of_the_paper_is_pinned_and_offline_names_its_file():
    for source, langs in qt_data.SOURCES.items():
        for lang in langs:
            name = qt_data.paper_file(source, lang) if source in qt_data.PAPER_FILES else None
            assert name is None or data.lookup(name).commit  # in the registry
    assert set(qt_data.mixtures("sentiment")) >= {"swhi", "zhde", "en2zhja2zh", "ja2zhit2zh", "sw2zhhi2zh", "zhdeit"}
    assert qt_data.mixtures("paws") == ["swhi", "zhde", "zhes", "zhit"]
    assert qt_data.mixtures("snli") == ["swbn", "swhi", "zhde", "zhes", "zhit"]
    for source, lang, name in (
        ("sentiment", "sw", "paper_tasks/ap_emotion/emotion_sw10k_question.json"),
        ("paws", "hi", "paper_tasks/paws/paws_hi10k_train_question.json"),
        ("snli", "bn", "paper_tasks/snli/snli_bn10k_train_question.json"),
    ):
        with pytest.raises(DataError, match=f"data file {name} not found .*offline mode is on"):
            qt_data.build_qt_dataset(source, lang, 5)
    with pytest.raises(DataError, match="paper_tasks/ap_emotion/emotion_swhi10k_question.json not found"):
        qt_data.build_qt_dataset("sentiment", None, 5, mixture="swhi")
    assert "en" in qt_data.mixtures("sentiment")  # the English sentiment questions: pinned, selectable by --mixture
    with pytest.raises(DataError, match="paper_tasks/ap_emotion/emotion_en10k_question.json not found"):
        qt_data.build_qt_dataset("sentiment", None, 5, mixture="en")
    with pytest.raises(MlalignError, match="no paws mixture 'swth'; the paper's mixtures are snli: swbn"):
        qt_data.build_qt_dataset("paws", None, 5, mixture="swth")


@pytest.fixture
def zhde_mixture(shared_data, tmp_path, monkeypatch):
    """A data directory whose SNLI mixture `zhde` is 30 real zh items then 30 real de items, pinned by its blob id
    (the real file is not in the offline mirror; its items are the one-language files' kind)."""
    name = qt_data.paper_file("snli", "zhde")
    rows = []
    for lang in ("zh", "de"):
        rows += json.loads((shared_data / qt_data.paper_file("snli", lang)).read_text(encoding="utf-8"))[:30]
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    pinned = {**data.registry(), name: dataclasses.replace(data.lookup(name), git_blob=git.stdout.strip())}
    monkeypatch.setattr(data, "registry", lambda: pinned)
    return rows, tmp_path / "data"


def test_a_mixture_takes_its_languages_from_each_items_instruction(zhde_mixture):
    rows, data_dir = zhde_mixture
    build = qt_data.build_qt_dataset("snli", None, None, seed=0, clean=False, mixture="zhde", data_dir=data_dir)
    assert (build.languages, build.target, build.info()["mixture"]) == (["zh", "de"], "en", "zhde")
    assert {lang: s.selected for lang, s in build.stats.items()} == {"zh": 30, "de": 30}
    answer_of = {r["input"]: r["answer"] for r in rows}
    assert all(answer_of[r["prompt"]] == r["completion"] for r in build.dataset)  # each item as the file holds it
    assert {r["lang"] for r in build.dataset if "Prämisse" in r["prompt"]} == {"de"}
    with pytest.raises(MlalignError, match="mixture zhde holds zh,de: drop the languages, or give exactly those"):
        qt_data.build_qt_dataset("snli", "zh,it", None, mixture="zhde", data_dir=data_dir)
    with pytest.raises(MlalignError, match="mixture zhde translates into en, not zh"):
        qt_data.build_qt_dataset("snli", None, None, mixture="zhde", data_dir=data_dir, target="zh")


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
    with pytest.raises(UnknownLanguageError, match="no gsm8k question translations for it; available: bn, de, es, fr"):
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

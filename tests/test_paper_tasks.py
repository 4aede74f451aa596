"""The paper's SNLI / PAWS / sentiment tasks: exact prompts, gold labels from English, real lm-eval runs, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files import data
from mlalign_tasks.tasks import paper_prompts
from mlalign_tasks.tasks.languages import PAPER_LANGS, UnknownLanguageError

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks_yaml"
FILES = {
    "snli": "paper_tasks/snli/snli_{}600_test.json",
    "paws": "paper_tasks/paws/paws_{}500_test.json",
    "sentiment": "paper_tasks/ap_emotion/emotion_{}500_test.json",
}
# (task, lang, item index) checked character for character against lm-eval's requests.
PROMPT_CASES = [
    ("snli", "en", 0),
    ("snli", "ja", 3),
    ("snli", "bn", 7),
    ("paws", "en", 1),
    ("paws", "nl", 4),
    ("sentiment", "en", 2),
    ("sentiment", "hi", 5),
    ("sentiment", "zh", 0),
]


def _rows(shared: Path, task: str, lang: str) -> list[dict]:
    return json.loads((shared / FILES[task].format(lang)).read_text(encoding="utf-8"))


def _by_hand(shared: Path, task: str, lang: str, idx: int) -> str:
    """The prompt as the original scripts build it: prefix + '\\n' + labelled fields + the opening quote."""
    prompts = json.loads((shared / "paper_tasks/prompts.json").read_text(encoding="utf-8"))[task]
    row, prefix = _rows(shared, task, lang)[idx], prompts["fewshot_prefix"][lang]
    if lang == "en":  # the scripts' literal English wording, independent of query_template
        query = {
            "snli": f'Premise: {row.get("premise")}\nHypothesis: {row.get("hypothesis")}\nAnswer: "',
            "paws": f'Sentence 1: {row.get("sentence1")}\nSentence 2: {row.get("sentence2")}\nAnswer: "',
            "sentiment": f'{row.get("input")}\nEmotion: "',
        }[task]
        return prefix + "\n" + query
    query = prompts["query_template"][lang]
    for slot, field in {"{p}": "premise", "{h}": "hypothesis", "{s1}": "sentence1", "{s2}": "sentence2"}.items():
        query = query.replace(slot, row.get(field, slot))
    return prefix + query.replace("{i}", row.get("input", "{i}"))


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


@pytest.fixture(scope="module")
def lm_tasks(task_manager) -> dict:
    names = sorted({f"{paper_prompts.PAPER_TASKS[t]}_{lang}" for t, lang, _ in PROMPT_CASES})
    return task_manager.load(names)["tasks"]


@pytest.mark.parametrize(("task", "lang", "idx"), PROMPT_CASES)
def test_lm_eval_prompt_equals_hand_built(shared_data, lm_tasks, task, lang, idx):
    lm_task = lm_tasks[f"{paper_prompts.PAPER_TASKS[task]}_{lang}"]
    lm_task.build_all_requests(samples=[idx])
    requests = [inst.arguments for inst in lm_task.instances]
    expected = _by_hand(shared_data, task, lang, idx)
    english = {"snli": ["entailment", "neutral", "contradiction"], "paws": ["same", "different"]}.get(
        task, ["positive", "negative"]
    )
    assert expected.endswith('"') and expected.count("\n") >= 3
    # one request per English label word: the full prompt, then the bare label word after the opening quote
    assert requests == [(expected, word) for word in english]
    assert lm_task.config.target_delimiter == "" and lm_task.OUTPUT_TYPE == "multiple_choice"
    doc = lm_task.instances[0].doc
    assert doc["idx"] == idx
    assert lm_task.doc_to_target(doc) == english.index(_rows(shared_data, task, "en")[idx]["answer"])
    assert paper_prompts.load_items(task, lang, limit=idx + 1)[idx]["prompt"] == expected


@pytest.mark.parametrize(("lang", "data_word", "script_word", "english"), [("ja", "中性", "中立", "neutral"), ("bn", "ধারণ করে", "এনটেইলমেন্ট", "entailment")])  # fmt: skip
def test_snli_gold_from_english_not_script_words(shared_data, lang, data_word, script_word, english):
    rows, en_rows = _rows(shared_data, "snli", lang), _rows(shared_data, "snli", "en")
    assert script_word in paper_prompts.native_labels("snli", lang)
    assert not any(r["answer"] == script_word for r in rows)  # a string match with the script's word finds nothing
    gold = paper_prompts.gold_labels("snli", lang)
    labels = paper_prompts.english_labels("snli")
    assert gold == [labels.index(r["answer"]) for r in en_rows]
    with_data_word = [i for i, r in enumerate(rows) if r["answer"] == data_word]
    assert len(with_data_word) == 200 and {gold[i] for i in with_data_word} == {labels.index(english)}


def test_all_languages_parallel_with_english():
    for task in paper_prompts.PAPER_TASKS:
        english = paper_prompts.gold_labels(task, "en")
        assert len(english) == {"snli": 600}.get(task, 500)
        for lang in PAPER_LANGS:
            assert paper_prompts.gold_labels(task, lang) == english, (task, lang)


def test_label_tables():
    assert paper_prompts.PAPER_TASKS == {
        "snli": "snli_aligned",
        "paws": "paws_aligned",
        "sentiment": "sentiment_aligned",
    }
    assert paper_prompts.english_labels("snli") == ["entailment", "neutral", "contradiction"]
    assert paper_prompts.english_labels("paws") == ["same", "different"]
    assert paper_prompts.english_labels("sentiment") == ["positive", "negative"]
    assert paper_prompts.native_labels("sentiment", "de") == ["positiv", "negativ"]
    assert paper_prompts.native_labels("paws", "nl") == ["", ""]
    items = paper_prompts.load_items("paws", "de", limit=2)
    assert [set(i) for i in items] == [{"idx", "prompt", "label"}] * 2 and [i["idx"] for i in items] == [0, 1]


@pytest.mark.slow
def test_lm_eval_run_on_tiny_model(tiny_model_dir, task_manager):
    from lm_eval import simple_evaluate

    names = {"snli_aligned_de": 3, "paws_aligned_sw": 2, "sentiment_aligned_th": 2}
    out = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_model_dir}",
        tasks=list(names),
        task_manager=task_manager,
        limit=3,
        log_samples=True,
        device="cpu",
        batch_size=4,
    )
    for name, n_choices in names.items():
        result, samples = out["results"][name], out["samples"][name]
        assert len(samples) == 3
        correct = []
        for s in samples:
            assert len(s["arguments"]) == n_choices and len(s["resps"]) == n_choices
            assert s["target"] == s["doc"]["label"] == paper_prompts.gold_labels(name.split("_")[0], "en")[s["doc_id"]]
            scores = [r[0][0] for r in s["resps"]]
            correct.append(float(scores.index(max(scores)) == s["target"]))
            assert s["acc"] == correct[-1]
        assert 0.0 <= result["acc,none"] <= 1.0 and "acc_norm,none" in result
        assert result["acc,none"] == pytest.approx(sum(correct) / 3)


# The papers' variant scripts' prompt prefixes, as their published code holds them (emotion_eval_2shot.py,
# emotion_eval_2shot_irrelative.py at LML @ 5605459): typed here by hand.
NATIVE_PREFIX_DE = (
    "Es fängt etwas langsam an, aber sobald die Witze über die Produktplatzierung beginnen, geht es los.\n"
    'Emotion: "positiv"\nIch habe dieses Buch mit großer Erwartung gelesen, es war durchweg sehr langweilig\n'
    'Emotion: "negativ"'
)
NATIVE_PREFIX_ZH = '一开始有点慢，但一旦植入式笑话开始，它就会起飞。\n情感: "积极"\n我带着很大的期待读了这本书，整本书都很无聊\n情感: "消极"'
IRRELEVANT_PREFIX_EN = (
    'It starts off a bit slow, but once the product placement jokes start it takes off.\nEmotion: "ox"             \n'
    'I\'ve read this book with much expectation, it was very boring all through out the book\nEmotion: "horse"'
)


def test_variant_tables_match_the_protocols(shared_data):
    protocols = (shared_data.parent / "PROTOCOLS.md").read_text(encoding="utf-8")
    assert '"ox" and "horse"' in protocols and paper_prompts.IRRELEVANT_WORDS == ("ox", "horse")
    assert f"`{paper_prompts.THAI_NATIVE_SUFFIX}` is appended to the prompt" in protocols
    assert "`{}` vs `{}` are compared".format(*paper_prompts.THAI_NATIVE_LABELS) in protocols
    labels = json.loads((shared_data / "paper_tasks/prompts.json").read_text(encoding="utf-8"))["sentiment"]["labels"]
    Words = paper_prompts.LabelWords
    for lang in PAPER_LANGS:
        native = [labels["positive_answers"][lang], labels["negative_answers"][lang]]
        expected = [*paper_prompts.THAI_NATIVE_LABELS] if lang == "th" else native
        assert paper_prompts.variant("sentiment", lang, Words.native) == paper_prompts.Variant(
            native, expected, paper_prompts.THAI_NATIVE_SUFFIX if lang == "th" else ""
        )
        irrelevant = paper_prompts.variant("sentiment", lang, Words.irrelevant)
        assert irrelevant.shots == irrelevant.paper_labels == ["ox", "horse"] and not irrelevant.paper_suffix
    assert set(paper_prompts.LABEL_VARIANTS) <= set(paper_prompts.label_families())


@pytest.mark.parametrize(
    ("words", "lang", "prefix"),
    [("native", "de", NATIVE_PREFIX_DE), ("native", "zh", NATIVE_PREFIX_ZH), ("irrelevant", "en", IRRELEVANT_PREFIX_EN),
     ("native", "th", None)],
)  # fmt: skip
def test_variant_prompts_equal_the_scripts(shared_data, words, lang, prefix):
    items = paper_prompts.load_items("sentiment", lang, limit=3, words=paper_prompts.LabelWords(words))
    english = paper_prompts.load_items("sentiment", lang, limit=3)
    enout_prefix = json.loads((shared_data / "paper_tasks/prompts.json").read_text(encoding="utf-8"))["sentiment"][
        "fewshot_prefix"
    ][lang]
    for item, plain in zip(items, english, strict=True):
        query = plain["prompt"].removeprefix(enout_prefix)  # the same query, after the variant's shots
        assert (
            item["prompt"]
            == (prefix or enout_prefix.replace('"positive"', '"เชิงบวก"').replace('"negative"', '"เชิงลบ"')) + query
        )
        assert item["label"] == plain["label"] and item["idx"] == plain["idx"]


@pytest.mark.slow
def test_variant_families_run_in_lm_eval_with_each_scoring(tiny_model_dir, tmp_path):
    from mlalign_tasks.pipeline import evaluate

    spec = "sentiment_native_aligned:de,th,zh,sentiment_irrelevant_aligned:en,ja"
    for scoring in ("paper", "label"):
        out = tmp_path / scoring
        req = evaluate.EvalRequest(
            model=str(tiny_model_dir), tasks=evaluate.parse_tasks(spec), limit=2, device="cpu", output_path=out,
            label_scoring=scoring,
        )  # fmt: skip
        results = evaluate.run(req)
        assert set(results["results"]) >= {"sentiment_native_aligned_th", "sentiment_irrelevant_aligned_ja"}
        configs = results["configs"]
        assert configs["sentiment_native_aligned_th"]["metadata"]["label_scoring"] == scoring
        (samples_file,) = out.glob("*/samples_sentiment_native_aligned_th_*.jsonl")
        sample = json.loads(samples_file.read_text(encoding="utf-8").splitlines()[0])
        # the papers' script scores บวก vs ลบ after the ids of "เชิง" (the prompt's tail, recorded in the results);
        # the whole-word scoring scores เชิงบวก vs เชิงลบ
        labels = ["บวก", "ลบ"] if scoring == "paper" else ["เชิงบวก", "เชิงลบ"]
        assert sample["arguments"]["gen_args_0"]["arg_0"].endswith('อารมณ์: "')
        assert [a["arg_1"] for a in sample["arguments"].values()] == labels
        suffix = configs["sentiment_native_aligned_th"]["metadata"].get("prompt_suffix")
        assert (suffix["text"], suffix["tokens"][0]) == ("เชิง", "<s>") if scoring == "paper" else suffix is None
    sets = results["configs"]["sentiment_irrelevant_aligned_en"]["metadata"].get("label_token_sets")
    assert sets is None  # label scoring ran last
    paper = json.loads(next((tmp_path / "paper").glob("*/results_*.json")).read_text(encoding="utf-8"))
    assert set(paper["configs"]["sentiment_irrelevant_aligned_ja"]["metadata"]["label_token_sets"]) == {"ox", "horse"}


def test_native_labels_sharing_a_token_are_refused_by_token_sets(tiny_model_dir, tmp_path):
    from mlalign_tasks.pipeline import evaluate

    req = evaluate.EvalRequest(
        model=str(tiny_model_dir), tasks=evaluate.parse_tasks("sentiment_native_aligned:ja"), limit=1, device="cpu",
        output_path=tmp_path / "out", label_scoring="token-sets",
    )  # fmt: skip
    with pytest.raises(MlalignError, match=r"sentiment_native_aligned_ja: labels 'ポジティブ' and 'ネガティブ' share"):
        evaluate.run(req)
    assert not (tmp_path / "out").exists()


def test_unknown_task_and_language():
    with pytest.raises(UnknownLanguageError, match=r"unknown snli language code 'xx'.*Valid codes: en, zh"):
        paper_prompts.load_items("snli", "xx")
    with pytest.raises(UnknownLanguageError, match="te"):  # Telugu is an MGSM language, not a paper language
        paper_prompts.native_labels("paws", "te")
    with pytest.raises(MlalignError, match="unknown paper task 'nli'; valid tasks: snli, paws, sentiment"):
        paper_prompts.english_labels("nli")
    with pytest.raises(MlalignError, match="limit must be a positive integer"):
        paper_prompts.load_items("snli", "de", limit=0)


def _copy_data(shared: Path, tmp_path: Path, names: list[str]) -> Path:
    """A private data dir holding copies of only the named files."""
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / name, tmp_path / name)
    return tmp_path


def _rewrite(monkeypatch, root: Path, name: str, rows: list[dict] | dict) -> None:
    """Replace a data file and re-pin its checksum, as a user-pinned but broken version would be."""
    path = root / name
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entries = {**data.registry(), name: dataclasses.replace(data.lookup(name), sha256=digest)}
    monkeypatch.setattr(data, "registry", lambda: entries)


@pytest.fixture
def snli_de_dir(shared_data, tmp_path, monkeypatch) -> Path:
    names = ["paper_tasks/prompts.json", FILES["snli"].format("en"), FILES["snli"].format("de")]
    root = _copy_data(shared_data, tmp_path, names)
    monkeypatch.setenv("MLALIGN_DATA_DIR", str(root))
    monkeypatch.setenv("MLALIGN_CACHE_DIR", str(tmp_path / "empty-cache"))
    return root


def test_corrupt_file_fails_checksum(snli_de_dir):
    path = snli_de_dir / FILES["snli"].format("de")
    path.write_bytes(path.read_bytes().replace(b"Widerspruch", b"Widerspruc!", 1))
    with pytest.raises(DataError, match=r"checksum mismatch for paper_tasks/snli/snli_de600_test\.json"):
        paper_prompts.load_items("snli", "de")
    assert len(paper_prompts.load_items("snli", "en")) == 600  # the intact files still work


def test_truncated_language_file_is_not_parallel(snli_de_dir, monkeypatch):
    name = FILES["snli"].format("de")
    _rewrite(monkeypatch, snli_de_dir, name, json.loads((snli_de_dir / name).read_text(encoding="utf-8"))[:-1])
    with pytest.raises(DataError, match="has 599 items but the English file has 600; the test sets must be parallel"):
        paper_prompts.load_items("snli", "de")


def test_shifted_language_file_is_not_parallel(snli_de_dir, monkeypatch):
    name = FILES["snli"].format("de")
    rows = json.loads((snli_de_dir / name).read_text(encoding="utf-8"))
    _rewrite(monkeypatch, snli_de_dir, name, rows[1:] + rows[:1])
    with pytest.raises(DataError, match="is not parallel to English"):
        paper_prompts.gold_labels("snli", "de")


def test_english_answer_outside_labels(snli_de_dir, monkeypatch):
    name = FILES["snli"].format("en")
    rows = json.loads((snli_de_dir / name).read_text(encoding="utf-8"))
    rows[5]["answer"] = "Neutral"
    _rewrite(monkeypatch, snli_de_dir, name, rows)
    with pytest.raises(DataError, match=r"item 5 has answer 'Neutral', not one of the English labels"):
        paper_prompts.load_items("snli", "de")


def test_missing_field(snli_de_dir, monkeypatch):
    name = FILES["snli"].format("de")
    rows = json.loads((snli_de_dir / name).read_text(encoding="utf-8"))
    del rows[2]["hypothesis"]
    _rewrite(monkeypatch, snli_de_dir, name, rows)
    with pytest.raises(DataError, match="item 2 lacks string fields premise, hypothesis, answer"):
        paper_prompts.load_items("snli", "de")


def test_offline_and_missing_names_the_file(snli_de_dir):
    with pytest.raises(DataError, match=r"paper_tasks/snli/snli_fr600_test\.json not found"):
        paper_prompts.load_items("snli", "fr")


def test_bad_query_template(snli_de_dir, monkeypatch):
    name = "paper_tasks/prompts.json"
    prompts = json.loads((snli_de_dir / name).read_text(encoding="utf-8"))
    prompts["snli"]["query_template"]["de"] = '\nPrämisse: {premise}\nAntwort: "'
    _rewrite(monkeypatch, snli_de_dir, name, prompts)
    with pytest.raises(DataError, match=r"snli query template for 'de' has an unexpected placeholder.*\{p\}, \{h\}"):
        paper_prompts.load_items("snli", "de")

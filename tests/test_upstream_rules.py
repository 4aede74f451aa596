"""The papers' rules, item by item, against replicas of the upstream scripts' own logic (Zhang et al. 2024,
LLM-Multilingual-Learner @ 5605459: ``process_tokens``, the tie branches and the gold comparison of
``snli_eval_6shot_enout.py``, ``emotion_eval_2shot*.py``, ``paws_eval_4shot_enout.py``), on real tokenizers:
Mistral-7B's SentencePiece model from the mistral-common wheel, and a Qwen-like byte-level BPE trained here."""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
import zipfile
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.pipeline import evaluate
from mlalign_tasks.tasks import paper_prompts
from mlalign_tasks.tasks.label_scoring import Gold, UpstreamTies
from mlalign_tasks.tasks.label_tokens import (
    Vocabulary,
    check_token_sets,
    generic_token_set,
    paper_token_set,
    shared_tokens,
    vocabulary,
)
from mlalign_tasks.tasks.languages import PAPER_LANGS

MISTRAL_WHEEL = Path(sys.prefix) / "test-wheels" / "mistral_common-1.13.1-py3-none-any.whl"


# --- replicas of the upstream scripts (their logic, transcribed) ---


def upstream_process_tokens(token_str: str, tokenizer, qwen: bool) -> list[int]:
    """``process_tokens``: prefixes as is and behind ``▁``, the first byte's ``<0xNN>``, and for a model named Qwen
    the first id of ``tokenizer(prefix)`` (a Qwen tokenizer adds no special token; this one neither)."""
    vocab = tokenizer.get_vocab()
    prefixes = [token_str[:i] for i in range(1, len(token_str) + 1)]
    final = [vocab[t] for t in set(["▁" + t for t in prefixes] + prefixes) if t in vocab]
    escaped = token_str[0].encode().__str__()[2:-1]
    if escaped.startswith("\\x") and f"<0x{escaped.split(chr(92) + 'x')[1].upper()}>" in vocab:
        final.append(vocab[f"<0x{escaped.split(chr(92) + 'x')[1].upper()}>"])
    if qwen:
        final += [tokenizer(t, return_tensors="pt")["input_ids"][0][0].item() for t in set(prefixes)]
    return sorted(set(final))


def upstream_decisions(rows: list[tuple[float, ...]]) -> list[int]:
    """The scripts' prediction per item (label index), ties included, after ``set_seed(0)``: two labels as the
    emotion and PAWS scripts, three (entailment, neutral, contradiction) as the SNLI script."""
    rng = random.Random(0)
    out = []
    for row in rows:
        if len(row) == 2:
            pos, neg = row
            if pos > neg:
                out.append(0)
            elif pos < neg:
                out.append(1)
            else:
                out.append(0 if rng.randint(0, 1) >= 0.5 else 1)
            continue
        pos, neu, neg = row
        if pos > neg and pos > neu:
            out.append(0)
        elif neg > pos and neg > neu:
            out.append(2)
        elif neu > pos and neu > neg:
            out.append(1)
        elif pos == neg and pos == neu:
            rand = rng.randint(0, 1)
            out.append(0 if rand >= 2 / 3 else 2 if rand <= 1 / 3 else 1)
        elif pos == neg:
            out.append(0 if rng.randint(0, 1) >= 0.5 else 2)
        elif pos == neu:
            out.append(0 if rng.randint(0, 1) >= 0.5 else 1)
        elif neg == neu:
            out.append(1 if rng.randint(0, 1) >= 0.5 else 2)
    return out


def upstream_correct(task: str, lang: str, words: paper_prompts.LabelWords, answer: str, pick: int) -> bool:
    """The scripts' gold comparison: is predicting label `pick` right for an item whose data answer is `answer`?"""
    english = paper_prompts.english_labels(task)
    if task == "paws":
        return answer == english[pick]
    script = paper_prompts.native_labels(task, lang)
    if words is paper_prompts.LabelWords.native:
        return script[pick].startswith(answer)  # output (the native word) .startswith(inputs['answer'])
    return answer == script[pick]


# --- real tokenizers ---


@pytest.fixture(scope="module")
def mistral(tmp_path_factory: pytest.TempPathFactory):
    """Mistral-7B-v0.1's tokenizer: its SentencePiece model from the mistral-common wheel, as a Llama tokenizer."""
    if not MISTRAL_WHEEL.is_file():
        pytest.fail(f"{MISTRAL_WHEEL} is missing; run `make install` (it downloads tests/tokenizer_wheels.txt)")
    folder = tmp_path_factory.mktemp("mistral")
    with zipfile.ZipFile(MISTRAL_WHEEL) as wheel:
        (folder / "tokenizer.model").write_bytes(wheel.read("mistral_common/data/tokenizer.model.v1"))
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"unk_token": "<unk>"}))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer.get_vocab()) == 32000 and "<0xE3>" in tokenizer.get_vocab()
    return tokenizer


def label_words() -> list[tuple[str, paper_prompts.LabelWords, str]]:
    """(task, variant, word) for every word the scripts score: English labels, native labels in the 20 languages
    (Thai's scored rest included), the irrelevant labels."""
    out = [
        (t, paper_prompts.LabelWords.english, w)
        for t in paper_prompts.PAPER_TASKS
        for w in paper_prompts.english_labels(t)
    ]
    for lang in PAPER_LANGS:
        native = paper_prompts.variant("sentiment", lang, paper_prompts.LabelWords.native)
        out += [("sentiment", paper_prompts.LabelWords.native, w) for w in native.paper_labels]
        out += [("snli", paper_prompts.LabelWords.native, w) for w in paper_prompts.native_labels("snli", lang)]
    out += [("sentiment", paper_prompts.LabelWords.irrelevant, w) for w in paper_prompts.IRRELEVANT_WORDS]
    return out


@pytest.fixture(scope="module")
def qwen_like(shared_data: Path):
    """A Qwen-like byte-level BPE (byte-level pre-tokenizer and decoder, no BOS) trained on the paper test sets."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [w for _, _, w in label_words()] * 20
    for task, lang in itertools.product(paper_prompts.PAPER_TASKS, PAPER_LANGS):
        texts += [item["prompt"] for item in paper_prompts.load_items(task, lang, limit=20)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=6000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe)
    assert tokenizer("positive")["input_ids"] == tokenizer("positive", add_special_tokens=False)["input_ids"]
    return tokenizer


@pytest.fixture(scope="module")
def gemma():
    """Gemma 3's SentencePiece tokenizer (262k tokens, byte fallback), from the real-model tier's packaged model."""
    from mlalign_tasks.models.gguf_models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("gemma-3-270m"))


@pytest.fixture(params=["mistral", "qwen_like", pytest.param("gemma", marks=pytest.mark.real)])
def real_tokenizer(request):
    return request.getfixturevalue(request.param)


def test_paper_token_sets_are_upstreams_word_by_word(real_tokenizer) -> None:
    tok = real_tokenizer
    qwen = vocabulary(tok) is Vocabulary.byte_level  # upstream's name rule: the Qwen models are the byte-level ones
    words = label_words()
    for task, words_kind, word in words:
        irrelevant = words_kind is paper_prompts.LabelWords.irrelevant  # that script drops the Qwen rule
        expected = upstream_process_tokens(word, tok, qwen and not irrelevant)
        assert paper_token_set(tok, word, first_tokens=not irrelevant) == expected, (task, words_kind, word)
    assert len(words) == 7 + 2 * 20 + 3 * 20 + 2  # 109 words


def test_generic_sets_add_the_byte_level_marker_and_stay_apart_from_paper(mistral, qwen_like) -> None:
    for word in ("positive", "negative", "entailment", "ox", "horse"):
        assert generic_token_set(mistral, word) == paper_token_set(mistral, word)  # SentencePiece: the same rule
        paper, generic = set(paper_token_set(qwen_like, word)), set(generic_token_set(qwen_like, word))
        vocab = qwen_like.get_vocab()
        marked = {vocab[e] for i in range(1, len(word) + 1) if (e := "Ġ" + word[:i]) in vocab}
        assert paper <= generic and generic - paper == marked - paper
    assert set(generic_token_set(qwen_like, "positive")) != set(paper_token_set(qwen_like, "positive"))


@pytest.mark.parametrize("lang", ["ja", "ru", "bg", "hi", "bn", "th"])
def test_native_labels_sharing_a_byte_are_summed_under_paper_and_refused_when_strict(mistral, lang) -> None:
    words = paper_prompts.native_labels("sentiment", lang)
    if lang == "th":
        words = list(paper_prompts.THAI_NATIVE_LABELS)
    sets = {w: paper_token_set(mistral, w) for w in words}
    overlap = shared_tokens(sets)
    assert list(overlap) == [f"{words[0]}|{words[1]}"]
    assert [mistral.convert_ids_to_tokens(i) for i in overlap.values()][0][0].startswith("<0x")
    check_token_sets(mistral, sets, f"sentiment_native_aligned_{lang}", strict=False)  # paper: summed as upstream
    with pytest.raises(MlalignError, match=f"sentiment_native_aligned_{lang}: labels .* share the token"):
        check_token_sets(mistral, sets, f"sentiment_native_aligned_{lang}", strict=True)


def tie_rows(labels: int, n: int, seed: int) -> list[tuple[float, ...]]:
    """Scores drawn from three values, so that two- and three-way ties are frequent."""
    draw = random.Random(seed)
    return [tuple(draw.choice((-1.0, -2.0, -3.0)) for _ in range(labels)) for _ in range(n)]


@pytest.mark.parametrize("labels", [2, 3])
def test_ties_are_upstreams_item_by_item(labels) -> None:
    rows = tie_rows(labels, 600, seed=labels)
    expected = upstream_decisions(rows)
    scorer = UpstreamTies()
    picks = [scorer.pick(i, list(row)) for i, row in enumerate(rows)]
    assert picks == expected
    if labels == 3:
        three_way = [p for p, row in zip(picks, rows, strict=True) if len(set(row)) == 1]
        assert three_way and 1 not in three_way and {0, 2} == set(three_way)  # never neutral, as upstream
    gold = UpstreamTies(Gold.upstream)  # the acc of an item: its pick against the chosen gold
    assert [gold({"idx": i, "label": 0, "upstream_gold": p}, [(s, False) for s in row])["acc"] for i, (p, row) in
            enumerate(zip(expected, rows, strict=True))] == [1.0] * len(rows)  # fmt: skip


def test_upstream_ties_need_item_order() -> None:
    scorer = UpstreamTies()
    scorer({"idx": 3, "label": 0}, [(-1.0, False), (-2.0, False)])
    with pytest.raises(MlalignError, match="item 2 scored after item 3"):
        scorer({"idx": 2, "label": 0}, [(-1.0, False), (-2.0, False)])


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ("snli", paper_prompts.LabelWords.english),
        ("paws", paper_prompts.LabelWords.english),
        ("sentiment", paper_prompts.LabelWords.english),
        ("sentiment", paper_prompts.LabelWords.native),
        ("sentiment", paper_prompts.LabelWords.irrelevant),
    ],
)
def test_upstream_gold_is_the_scripts_comparison_item_by_item(task, words) -> None:
    losses = {}
    for lang in PAPER_LANGS:
        rows = paper_prompts.test_rows(task, lang)
        gold = paper_prompts.upstream_gold(task, lang, words)
        labels = len(paper_prompts.english_labels(task))
        for row, g in zip(rows, gold, strict=True):
            assert [upstream_correct(task, lang, words, row["answer"], c) for c in range(labels)] == [
                c == g for c in range(labels)
            ]
        losses[lang] = gold.count(-1)
    lost = {lang: n for lang, n in losses.items() if n}
    assert lost == ({"ja": 200, "bn": 200} if task == "snli" else {})  # SNLI's ja and bn words differ from the data


def test_paper_eval_records_overlap_ties_and_upstream_gold(tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "out"
    req = evaluate.EvalRequest(
        model=str(tiny_model_dir), tasks=evaluate.parse_tasks("snli_aligned:bn,sentiment_native_aligned:ja"),
        limit=6, device="cpu", output_path=out, label_scoring="paper", gold=Gold.upstream,
    )  # fmt: skip
    results = evaluate.run(req)
    assert results["mlalign"]["gold"] == "upstream"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for name, task, words in (
        ("snli_aligned_bn", "snli", paper_prompts.LabelWords.english),
        ("sentiment_native_aligned_ja", "sentiment", paper_prompts.LabelWords.native),
    ):
        metadata = results["configs"][name]["metadata"]
        lang = name.rpartition("_")[2]
        assert metadata["gold"] == "upstream" and metadata["tie_rule"] == UpstreamTies.rule
        labels = paper_prompts.variant(task, lang, words).paper_labels
        sets = {w: paper_token_set(tok, w) for w in labels}
        assert metadata["label_token_overlap"] == {
            p: tok.convert_ids_to_tokens(i) for p, i in shared_tokens(sets).items()
        }
        (samples_file,) = out.glob(f"*/samples_{name}_*.jsonl")
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        rows = paper_prompts.test_rows(task, lang)
        picks = upstream_decisions(
            [tuple(float(r[0]) for r in s["filtered_resps"]) for s in sorted(samples, key=lambda s: s["doc_id"])]
        )
        expected = [
            upstream_correct(task, lang, words, rows[s["doc_id"]]["answer"], p)
            for s, p in zip(sorted(samples, key=lambda s: s["doc_id"]), picks, strict=True)
        ]
        assert [s["acc"] for s in sorted(samples, key=lambda s: s["doc_id"])] == [float(e) for e in expected]
    bn = sorted(
        json.loads(x)["doc_id"] for x in next(out.glob("*/samples_snli_aligned_bn_*.jsonl")).read_text().splitlines()
    )
    assert bn == list(range(6))


# emotion_eval_2shot.py's Thai prompt (``prompt_prefix['th'] + '\n' + input + '\nอารมณ์: "'``) and its Thai branch
UPSTREAM_TH_PREFIX = """มันเริ่มต้นช้านิดหน่อย แต่เมื่อเรื่องตลกเกี่ยวกับการจัดวางผลิตภัณฑ์เริ่มต้นขึ้น
อารมณ์: "เชิงบวก"
ฉันอ่านหนังสือเล่มนี้ด้วยความคาดหวังมาก มันน่าเบื่อมากตลอดทั้งเล่ม
อารมณ์: "เชิงลบ\""""


def upstream_thai_ids(tokenizer, text: str) -> list[int]:
    """``torch.cat((tokenizer(input)['input_ids'], tokenizer("เชิง")['input_ids']), dim=-1)``."""
    return [*tokenizer(text)["input_ids"], *tokenizer("เชิง")["input_ids"]]


def thai_native_task(tokenizer, scoring):
    """sentiment_native_aligned_th loaded by lm-eval, prepared for `scoring`: (task, its TaskTokenSets)."""
    from lm_eval.tasks import TaskManager

    from mlalign_tasks.tasks.label_scoring import apply_scoring

    name = "sentiment_native_aligned_th"
    task = TaskManager(include_path=str(evaluate.tasks_dir()), include_defaults=False).load([name])["tasks"][name]
    return task, apply_scoring({name: task}, tokenizer, scoring, seed=0)[name]


def test_thai_native_paper_prompt_is_upstreams_token_ids_item_by_item(real_tokenizer) -> None:
    from mlalign_tasks.tasks.label_scoring import Scoring

    tok = real_tokenizer
    task, sets = thai_native_task(tok, Scoring.paper)
    rows = paper_prompts.test_rows("sentiment", "th")
    docs = task.dataset[task.config.test_split]
    assert len(docs) == len(rows) == 500
    qwen = vocabulary(tok) is Vocabulary.byte_level
    assert sets.labels == {w: upstream_process_tokens(w, tok, qwen) for w in ("บวก", "ลบ")}
    for doc, row in zip(docs, rows, strict=True):
        upstream_input = UPSTREAM_TH_PREFIX + "\n" + row["input"] + '\nอารมณ์: "'
        assert doc["prompt"] == upstream_input and doc["choices"] == ["บวก", "ลบ"]
        # what TokenSetLM runs: the prompt's ids, then the task's tail
        assert [*tok(doc["prompt"])["input_ids"], *sets.tail] == upstream_thai_ids(tok, upstream_input), doc["idx"]
    metadata = task.config.metadata
    assert metadata["prompt_suffix"]["text"] == "เชิง" and metadata["prompt_suffix"]["rule"].startswith("upstream")
    assert metadata["prompt_suffix"]["tokens"] == tok.convert_ids_to_tokens(list(sets.tail))
    if tok.bos_token_id is not None and tok("x")["input_ids"][0] == tok.bos_token_id:
        assert sets.tail[0] == tok.bos_token_id  # a BOS inside the prompt, as upstream
        assert [*tok(upstream_input)["input_ids"], *sets.tail] != tok(upstream_input + "เชิง")["input_ids"]


def test_thai_suffix_on_mistral_is_a_bos_and_a_word_start(mistral) -> None:
    import sentencepiece

    from mlalign_tasks.tasks.label_scoring import Scoring

    with zipfile.ZipFile(MISTRAL_WHEEL) as wheel:
        model = sentencepiece.SentencePieceProcessor(model_proto=wheel.read("mistral_common/data/tokenizer.model.v1"))
    _, sets = thai_native_task(mistral, Scoring.paper)
    assert list(sets.tail) == [model.bos_id(), *model.encode("เชิง")]  # SentencePiece itself: BOS, then ▁ เ ช ิ ง
    assert mistral.convert_ids_to_tokens(list(sets.tail))[:2] == ["<s>", "▁"]


def test_thai_suffix_under_token_sets_is_prompt_text(qwen_like) -> None:
    from mlalign_tasks.tasks.label_scoring import Scoring

    task, text_sets = thai_native_task(qwen_like, Scoring.token_sets)  # mlalign's variant: appended as text
    assert text_sets.tail == () and task.config.metadata["prompt_suffix"]["rule"].startswith("appended to the prompt")
    assert all(doc["prompt"].endswith('อารมณ์: "เชิง') for doc in task.dataset[task.config.test_split])


def test_thai_native_paper_eval_is_upstreams_item_by_item(tmp_path, tiny_model_dir) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    req = evaluate.EvalRequest(
        model=str(tiny_model_dir), tasks=evaluate.parse_tasks("sentiment_native_aligned:th"), limit=12, device="cpu",
        output_path=out, label_scoring="paper", batch_size=4,
    )  # fmt: skip
    results = evaluate.run(req)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    # the token sets (checked against upstream's above) without upstream's Qwen rule, which on this tokenizer would
    # count its BOS as every prefix's first token: a Qwen tokenizer adds none
    positive, negative = (paper_token_set(tok, w) for w in ("บวก", "ลบ"))
    rows = paper_prompts.test_rows("sentiment", "th")[:12]
    sums = []
    for row in rows:  # upstream's Thai branch: one forward of the two encodings, softmax at the last position
        with torch.no_grad():
            ids = upstream_thai_ids(tok, UPSTREAM_TH_PREFIX + "\n" + row["input"] + '\nอารมณ์: "')
            probs = model(torch.tensor([ids])).logits.softmax(-1)[0][-1]
        sums.append((sum(probs[i].item() for i in positive), sum(probs[i].item() for i in negative)))
    picks = upstream_decisions(sums)
    (samples_file,) = out.glob("*/samples_sentiment_native_aligned_th_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    assert [math.exp(float(s["filtered_resps"][0][0])) for s in samples] == pytest.approx(
        [p for p, _ in sums], rel=1e-6
    )
    expected = [upstream_correct("sentiment", "th", paper_prompts.LabelWords.native, r["answer"], p)
                for r, p in zip(rows, picks, strict=True)]  # fmt: skip
    assert [s["acc"] for s in samples] == [float(e) for e in expected]
    assert results["configs"]["sentiment_native_aligned_th"]["metadata"]["prompt_suffix"]["tokens"][0] == tok.bos_token

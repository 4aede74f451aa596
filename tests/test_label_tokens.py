"""The paper's label token sets on a SentencePiece vocabulary trained here (Llama-style ``▁``, byte fallback) and on
the tiny model's byte-level BPE, against sets listed by hand."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.tasks.label_tokens import (
    Vocabulary,
    check_token_sets,
    first_token_id,
    generic_token_set,
    paper_token_set,
    shared_tokens,
    token_strings,
    vocabulary,
)

CORPUS = [
    "positive negative positive negative neutral",
    "the review is positive",
    "the review is negative",
    "积极 消极 积极",
    "ox horse ox horse",
]


@pytest.fixture(scope="module")
def sp_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    """A Llama tokenizer from a SentencePiece BPE model trained on a small corpus, with byte fallback."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=model, vocab_size=300, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, num_threads=1, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        minloglevel=2,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("sp")
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"unk_token": "<unk>"}))
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def bpe_tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def by_hand(tokenizer, candidates: list[str], extra_ids: tuple[int, ...] = ()) -> list[str]:
    """The vocabulary entries among hand-listed candidate strings (plus ids found by hand), as sorted strings."""
    vocab = tokenizer.get_vocab()
    return sorted({*(c for c in candidates if c in vocab), *token_strings(tokenizer, list(extra_ids))})


def strings(tokenizer, ids: list[int]) -> list[str]:
    return sorted(token_strings(tokenizer, ids))


def test_vocabulary_kinds_come_from_the_tokenizer(sp_tokenizer, bpe_tokenizer) -> None:
    assert vocabulary(sp_tokenizer) is Vocabulary.sentencepiece
    assert vocabulary(bpe_tokenizer) is Vocabulary.byte_level


def test_sentencepiece_sets_are_prefixes_with_and_without_marker(sp_tokenizer) -> None:
    tok = sp_tokenizer
    positive = ["p", "po", "pos", "posi", "posit", "positi", "positiv", "positive"]
    expected = by_hand(tok, positive + ["▁p", "▁po", "▁pos", "▁posi", "▁posit", "▁positi", "▁positiv", "▁positive"])
    assert "▁positive" in expected and "p" in expected  # the corpus makes both vocabulary entries
    assert strings(tok, paper_token_set(tok, "positive")) == expected
    negative = ["n", "ne", "neg", "nega", "negat", "negati", "negativ", "negative"]
    expected = by_hand(tok, negative + ["▁" + p for p in negative])
    assert strings(tok, paper_token_set(tok, "negative")) == expected


def test_sentencepiece_byte_fallback_and_no_bare_marker(sp_tokenizer) -> None:
    tok = sp_tokenizer
    # 积 is E7 A7 AF in UTF-8, 消 is E6 B6 88: the byte-fallback token of the first byte counts
    assert strings(tok, paper_token_set(tok, "积极")) == by_hand(tok, ["积", "积极", "▁积", "▁积极", "<0xE7>"])
    assert strings(tok, paper_token_set(tok, "消极")) == by_hand(tok, ["消", "消极", "▁消", "▁消极", "<0xE6>"])
    assert "<0xE7>" in strings(tok, paper_token_set(tok, "积极"))
    # tokenising 积 alone starts with the bare marker; rule 3 is not applied to SentencePiece, so it is not counted
    assert tok.convert_ids_to_tokens(tok("积", add_special_tokens=False)["input_ids"])[0] == "▁"
    assert "▁" not in strings(tok, paper_token_set(tok, "积极"))
    assert "<0x6F>" not in strings(tok, paper_token_set(tok, "ox"))  # ASCII first letter: no byte token


def test_byte_level_sets_add_the_first_token_of_each_prefix(bpe_tokenizer) -> None:
    tok = bpe_tokenizer
    prefixes = ["p", "po", "pos", "posi", "posit", "positi", "positiv", "positive"]
    expected = by_hand(tok, prefixes)
    assert "p" in expected
    assert strings(tok, paper_token_set(tok, "positive")) == expected  # ASCII: the first tokens are prefixes too
    # the generic rule also counts the prefixes behind the byte-level marker
    marked = by_hand(tok, prefixes + ["Ġ" + p for p in prefixes])
    assert "Ġp" in marked and strings(tok, generic_token_set(tok, "positive")) == marked
    assert strings(tok, paper_token_set(tok, "ox", first_tokens=False)) == by_hand(tok, ["o", "ox"])
    # 积极 is stored as bytes, so no prefix is an entry as text; the first tokens of tokenising 积 and 积极 count
    firsts = tuple(
        tok("积", add_special_tokens=False)["input_ids"][:1] + tok("积极", add_special_tokens=False)["input_ids"][:1]
    )
    assert by_hand(tok, ["积", "积极", "Ġ积", "Ġ积极"]) == []
    assert strings(tok, paper_token_set(tok, "积极")) == by_hand(tok, [], firsts)


def test_labels_sharing_a_token_are_refused_when_strict_and_without_one_always(sp_tokenizer, bpe_tokenizer) -> None:
    sets = {w: paper_token_set(sp_tokenizer, w) for w in ["negative", "neutral"]}
    assert sorted(token_strings(sp_tokenizer, shared_tokens(sets)["negative|neutral"])) == by_hand(
        sp_tokenizer, ["n", "ne", "▁n", "▁ne"]
    )
    check_token_sets(sp_tokenizer, sets, "sentiment_x", strict=False)
    with pytest.raises(MlalignError, match=r"sentiment_x: labels 'negative' and 'neutral' share the token\(s\)"):
        check_token_sets(sp_tokenizer, sets, "sentiment_x", strict=True)
    sets = {w: generic_token_set(bpe_tokenizer, w) for w in ["ポジティブ", "ネガティブ"]}
    with pytest.raises(MlalignError, match="share the token"):
        check_token_sets(bpe_tokenizer, sets, "ja", strict=True)  # both start with byte E3
    assert shared_tokens({w: paper_token_set(sp_tokenizer, w) for w in ["positive", "negative"]}) == {}
    with pytest.raises(MlalignError, match="label 'ox' has no token"):
        check_token_sets(sp_tokenizer, {"ox": [], "horse": [5]}, "x", strict=False)
    with pytest.raises(MlalignError, match="must not be empty"):
        paper_token_set(sp_tokenizer, "")


def test_unknown_vocabulary_kind_is_refused() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(MlalignError, match="neither a SentencePiece nor a byte-level BPE vocabulary"):
        paper_token_set(PreTrainedTokenizerFast(tokenizer_object=word_level), "a")


def test_first_token_in_context(bpe_tokenizer) -> None:
    tok = bpe_tokenizer
    context = 'Answer: "'
    whole = tok(context + "positive", add_special_tokens=False)["input_ids"]
    assert first_token_id(tok, context, "positive") == whole[len(tok(context, add_special_tokens=False)["input_ids"])]
    with pytest.raises(MlalignError, match="merges with the prompt's end"):
        first_token_id(tok, "Answer: t", "he")  # ' the' is one token across the boundary

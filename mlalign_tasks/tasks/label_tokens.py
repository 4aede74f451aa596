"""The label token sets: which vocabulary ids stand for a label word at the position after the prompt.

The one implementation that label scoring (`mlalign eval --label-scoring`) and the logit lens share.

`paper_token_set` is the papers' rule (Zhang et al. 2024, ``process_tokens`` in their evaluation and lens
scripts), derived from the tokenizer itself:

1. every prefix of the word (``p``, ``po``, ..., ``positive``) that is a vocabulary entry as is, or with the
   SentencePiece word-start marker ``▁`` in front (upstream looks for ``▁`` in every vocabulary);
2. the byte-fallback token ``<0xNN>`` of the word's first byte, when its first character is not ASCII and the
   vocabulary has that token (SentencePiece with byte fallback, e.g. Llama, Mistral, Gemma);
3. byte-level BPE only: the first token of tokenising each prefix on its own (no special tokens). Upstream applies
   it when the model's *name* contains "Qwen" (byte-level BPE) and drops it in the irrelevant-label script; here the
   vocabulary decides, and `first_tokens=False` drops it. It is not applied to SentencePiece, where upstream never
   did (it would only add the bare marker ``▁``).

`generic_token_set` is mlalign's variant for byte-level vocabularies: rule 1 also with their own marker ``Ġ``, and
rule 3 always. On SentencePiece it equals the paper's set.

`first_token_id` is the other rule: the id of a word's first token when it follows a given context.
"""

from __future__ import annotations

import json
from enum import StrEnum

from mlalign_tasks.errors import MlalignError


class Vocabulary(StrEnum):
    """The vocabulary families the paper's rule is defined for, by their word-start marker."""

    sentencepiece = "▁"
    byte_level = "Ġ"


def _types(node: object) -> set[str]:
    """Every component type named in a tokenizers JSON subtree (Sequence members included)."""
    if isinstance(node, dict):
        found = {node["type"]} if isinstance(node.get("type"), str) else set()
        return found.union(*(_types(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_types(v) for v in node))
    return set()


def vocabulary(tokenizer) -> Vocabulary:
    """Whether `tokenizer` has a byte-level BPE or a SentencePiece vocabulary (read from its pipeline, not a name)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        if hasattr(tokenizer, "sp_model"):
            return Vocabulary.sentencepiece
    else:
        spec = json.loads(backend.to_str())
        parts = _types(spec.get("pre_tokenizer")) | _types(spec.get("decoder"))
        if "ByteLevel" in parts:
            return Vocabulary.byte_level
        replaces_marker = Vocabulary.sentencepiece.value in json.dumps(spec.get("decoder"), ensure_ascii=False)
        if "Metaspace" in parts or replaces_marker:
            return Vocabulary.sentencepiece
    raise MlalignError(
        f"{type(tokenizer).__name__} has neither a SentencePiece nor a byte-level BPE vocabulary, for which the "
        "paper's label token sets are defined; use --label-scoring first-token or label"
    )


def paper_token_set(tokenizer, word: str, first_tokens: bool = True) -> list[int]:
    """The sorted ids of the paper's token set of `word` (rules 1-3 of the module docstring; rule 3 only with
    `first_tokens`)."""
    return _token_set(tokenizer, word, Vocabulary.sentencepiece.value, first_tokens)


def generic_token_set(tokenizer, word: str) -> list[int]:
    """The sorted ids of mlalign's generic token set of `word`: the paper's, plus the prefixes behind the
    vocabulary's own word-start marker and the first tokens of the prefixes on every byte-level vocabulary."""
    return _token_set(tokenizer, word, vocabulary(tokenizer).value, True)


def _token_set(tokenizer, word: str, marker: str, first_tokens: bool) -> list[int]:
    if not word:
        raise MlalignError("a label word must not be empty")
    kind = vocabulary(tokenizer)
    vocab = tokenizer.get_vocab()
    prefixes = [word[:i] for i in range(1, len(word) + 1)]
    ids = {vocab[entry] for p in prefixes for entry in (p, marker + p) if entry in vocab}
    if not word[0].isascii():
        ids.update(vocab[t] for t in [f"<0x{word[0].encode()[0]:02X}>"] if t in vocab)
    if first_tokens and kind is Vocabulary.byte_level:
        for p in prefixes:
            ids.update(tokenizer(p, add_special_tokens=False)["input_ids"][:1])
    return sorted(ids)


def shared_tokens(sets: dict[str, list[int]]) -> dict[str, list[int]]:
    """The ids each pair of labels shares ("a|b" -> sorted ids), for the pairs that share any."""
    words = list(sets)
    return {
        f"{a}|{b}": shared
        for i, a in enumerate(words)
        for b in words[i + 1 :]
        if (shared := sorted(set(sets[a]) & set(sets[b])))
    }


def check_token_sets(tokenizer, sets: dict[str, list[int]], what: str, strict: bool) -> None:
    """Refuse a label with no token; with `strict` also labels that share a token (named in `what`)."""
    for word, ids in sets.items():
        if not ids:
            raise MlalignError(f"{what}: label {word!r} has no token in this vocabulary; use --label-scoring label")
    if strict and (shared := shared_tokens(sets)):
        pair, ids = next(iter(shared.items()))
        first, second = pair.split("|")
        raise MlalignError(
            f"{what}: labels {first!r} and {second!r} share the token(s) {tokenizer.convert_ids_to_tokens(ids)}, so "
            "their probabilities cannot be told apart; use --label-scoring paper (sums them as the papers do) or label"
        )


def first_token_id(tokenizer, context: str, word: str) -> int:
    """The id of `word`'s first token after `context`: prompt + word is tokenized and split after the prompt's tokens.

    Raises when the prompt's tokens are not a prefix of prompt + word (the word merges with the prompt's end).
    """
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + word, add_special_tokens=False)["input_ids"]
    if not word or len(whole) <= len(ctx) or whole[: len(ctx)] != ctx:
        raise MlalignError(
            f"cannot isolate the first token of label {word!r} after the prompt with this tokenizer "
            "(it merges with the prompt's end); use --label-scoring label"
        )
    return whole[len(ctx)]


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """The vocabulary entries of `ids` (as stored: ``▁po``, ``Ġpos``, ``<0xE7>``), for results files."""
    return list(tokenizer.convert_ids_to_tokens(ids))

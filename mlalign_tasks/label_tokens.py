"""The label token sets: which vocabulary ids stand for a label word at the position after the prompt.

The one implementation that label scoring (`mlalign eval --label-scoring`) and the logit lens share.

`paper_token_set` is the papers' rule (Zhang et al. 2024, ``process_tokens`` in their evaluation and lens
scripts), derived from the tokenizer itself:

1. every prefix of the word (``p``, ``po``, ..., ``positive``) that is a vocabulary entry as is, or with the
   vocabulary's word-start marker in front (``▁`` in SentencePiece vocabularies, ``Ġ`` in byte-level BPE ones);
2. the byte-fallback token ``<0xNN>`` of the word's first byte, when its first character is not ASCII and the
   vocabulary has that token (SentencePiece with byte fallback, e.g. Llama, Mistral);
3. byte-level BPE only: the first token of tokenising each prefix on its own (no special tokens). A byte-level
   vocabulary stores non-ASCII text as byte strings, so rule 1 cannot find it; this rule can.

Upstream applies rule 3 when the model's *name* contains "Qwen" and looks for ``▁`` in every vocabulary. Here the
vocabulary decides: for SentencePiece vocabularies the set is upstream's; for byte-level ones it is upstream's
Qwen set plus the ``Ġ``-marked prefixes (upstream's ``▁`` never occurs there). Rule 3 is not applied to
SentencePiece: it would only add the bare marker ``▁``, which every non-ASCII word would then share.

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


def paper_token_set(tokenizer, word: str) -> list[int]:
    """The sorted ids of the paper's token set of `word` (rules 1-3 of the module docstring)."""
    if not word:
        raise MlalignError("a label word must not be empty")
    kind = vocabulary(tokenizer)
    vocab = tokenizer.get_vocab()
    prefixes = [word[:i] for i in range(1, len(word) + 1)]
    ids = {vocab[entry] for p in prefixes for entry in (p, kind.value + p) if entry in vocab}
    if not word[0].isascii():
        ids.update(vocab[t] for t in [f"<0x{word[0].encode()[0]:02X}>"] if t in vocab)
    if kind is Vocabulary.byte_level:
        for p in prefixes:
            ids.update(tokenizer(p, add_special_tokens=False)["input_ids"][:1])
    return sorted(ids)


def paper_token_sets(tokenizer, words: list[str], what: str) -> list[list[int]]:
    """The token set of every label of one task; refuses labels with no token or sharing a token (named in `what`)."""
    sets = [paper_token_set(tokenizer, w) for w in words]
    for word, ids in zip(words, sets, strict=True):
        if not ids:
            raise MlalignError(f"{what}: label {word!r} has no token in this vocabulary; use --label-scoring label")
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            if shared := sorted(set(a) & set(sets[j])):
                raise MlalignError(
                    f"{what}: labels {words[i]!r} and {words[j]!r} share the token(s) "
                    f"{tokenizer.convert_ids_to_tokens(shared)} in the paper's token sets, so their probabilities "
                    "cannot be told apart; use --label-scoring label"
                )
    return sets


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

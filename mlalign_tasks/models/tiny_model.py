"""Build the tiny, random-initialised Llama model used by the tests and the embedded demo (offline)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.atomic import atomic_dir, weights_written, write_json_atomic
from mlalign_tasks.files.output_dirs import check_replaceable

MARKER_FILE = "mlalign_tiny.json"  # beside the weights: marks a model as the tiny random-weight one
MAX_GEN_TOKS = 48  # its generations' length: random weights never stop, and it checks machinery, not answers
EVAL_BATCH_SIZE = 8  # its evaluation batch size (generation batched on the CPU too)
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHAT_ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
DEFAULT_SIZES = {
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 16384,
}


def corpus_lines() -> list[str]:
    """The packaged multilingual text (all benchmark scripts) the tokenizer is trained on."""
    text = resources.files("mlalign_tasks").joinpath("resources/tiny_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def build_tokenizer(vocab_size: int = DEFAULT_SIZES["vocab_size"], lines: list[str] | None = None):
    """Train a byte-level BPE tokenizer (exact round-trip for any UTF-8 text) on `lines` (default: the packaged
    corpus), with the special tokens and the chat template of both built-in models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values()) + CHAT_ROLE_TOKENS
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines() if lines is None else lines, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        clean_up_tokenization_spaces=False,
        model_max_length=DEFAULT_SIZES["max_position_embeddings"],
        **SPECIAL_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def new_llama(tokenizer, seed: int, **sizes):
    """A randomly initialised float32 Llama (untied embeddings; `sizes`: LlamaConfig's) for `tokenizer`'s special
    tokens, seeded, with a matching generation config: the tiny and the toy model start here."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    special = {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("bos", "eos", "pad")}
    config = LlamaConfig(**sizes, **special, tie_word_embeddings=False, dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(**special)
    return model


def build_tiny_model(out: str | Path, seed: int = 0, **sizes) -> Path:
    """Write a tiny Llama causal LM + tokenizer to `out` with ``save_pretrained`` (atomically); returns `out`."""
    out = Path(out)
    check_replaceable(out, "--out", (MARKER_FILE,), "a model directory written by `mlalign tiny-model`")
    unknown = set(sizes) - set(DEFAULT_SIZES)
    if unknown:
        raise MlalignError(f"unknown tiny-model size option(s) {sorted(unknown)}; known: {sorted(DEFAULT_SIZES)}")
    cfg_sizes = {**DEFAULT_SIZES, **sizes}
    tokenizer = build_tokenizer(cfg_sizes["vocab_size"])
    cfg_sizes["vocab_size"] = len(tokenizer)
    model = new_llama(tokenizer, seed, **cfg_sizes)
    with atomic_dir(out) as tmp, weights_written(out):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / MARKER_FILE, {"seed": seed, **cfg_sizes})
    return out


def is_tiny(model: str | Path) -> bool:
    """Whether `model` is a folder holding the tiny random-weight model (`MARKER_FILE`)."""
    return (Path(model).expanduser() / MARKER_FILE).is_file()

"""mlalign's command-line vocabulary: one spelling per concept in every command, plus the spellings users type
from lm-eval (``--output_path``, ``--batch_size``) and TRL (``--output_dir``, ``--model_name_or_path``).

`option` builds a typer option from it; the trainer's TRL-parsed flags take the same concepts as aliases
(``mlalign_trainer.config``); the README's table is checked against `FLAGS` (tests/test_vocabulary.py).
"""

from __future__ import annotations

import typer

# concept -> (mlalign's spelling, aliases...)
FLAGS: dict[str, tuple[str, ...]] = {
    "model": ("--model", "-m", "--model_name_or_path"),
    "adapter": ("--peft", "--adapter"),
    "tasks": ("--tasks", "-t"),
    "languages": ("--langs", "--languages"),
    "examples per language": ("--examples-per-language", "--examples_per_language", "--n"),
    "output folder": ("--out", "--output-path", "--output_path", "--output_dir"),
    "items per task or language": ("--limit",),
    "batch size": ("--batch-size", "--batch_size"),
    "few-shot examples": ("--num-fewshot", "--num_fewshot"),
    "generation settings": ("--gen-kwargs", "--gen_kwargs"),
    "new tokens per generation": ("--max-gen-toks", "--max_gen_toks"),
    "4-bit base model": ("--load-in-4bit", "--load_in_4bit"),
    "chat template": ("--apply-chat-template", "--apply_chat_template"),
    "data folder": ("--data-dir", "--data_dir"),
    "request cache": ("--use-cache", "--use_cache"),
    "question-translation source": ("--qt-source", "--qt_source", "--source"),
    "prompt format": ("--prompt-format", "--prompt_format", "--format"),
    "weights' dtype": ("--dtype",),
    "device": ("--device",),
    "seed": ("--seed",),
}


def option(concept: str, help: str, **kwargs) -> typer.models.OptionInfo:
    """The typer option of `concept`: its spelling and aliases from `FLAGS`."""
    return typer.Option(*FLAGS[concept], help=help, **kwargs)

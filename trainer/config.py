"""The trainer's options, in TRL's style: dataclasses whose defaults are mlalign's, parsed by ``TrlParser``.

- `QTArguments`: mlalign's own options (training stage, data, validation split, over-long sequences).
- `QTConfig`: TRL's ``SFTConfig`` with mlalign's defaults for training.
- `QTModelConfig`: TRL's ``ModelConfig`` with mlalign's defaults for the model and LoRA.

mlalign's defaults: LoRA r 16, alpha 32, dropout 0.05 on q_proj,v_proj; lr 5e-5; 3 epochs; an effective batch of 16;
cosine schedule with 10% warm-up; examples over 512 tokens dropped; length-balanced micro-batches; QLoRA (NF4 with
double quantisation, bf16, paged 8-bit AdamW, gradient checkpointing) on CUDA, fp32 LoRA on the CPU. They are not
any paper's protocol: the recipes ``zhang2024`` and ``qalign`` are (``mlalign recipes``). Device-dependent defaults
are fixed when this module is imported, so ``mlalign train --help`` shows the ones this machine gets.
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import torch
from mlalign_trainer.choices import Overlong, PromptFormat, QTSource, ResponseSource, Stage
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames
from trl import ModelConfig, SFTConfig

from mlalign_tasks.models.model_loading import Dtype
from mlalign_tasks.tasks.languages import check_lang

CUDA = torch.cuda.is_available()


@dataclass
class QTArguments:
    """mlalign's options (the other flags are TRL's SFTConfig and ModelConfig, with mlalign's defaults)."""

    stage: Stage = field(
        default=Stage.question,
        metadata={
            "help": "question: question translation (the paper's training, QAlign's stage I); response: English "
            "question-answer data continuing --init_from (QAlign's stage II)."
        },
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "The stage-I output to continue from: an adapter directory of `mlalign train` (its LoRA weights "
            "go on training) or a full model (a merge of one, or a full fine-tune)."
        },
    )
    merge_init_from: bool = field(
        default=False,
        metadata={
            "help": "Merge the --init_from adapter into its base model (written to OUTPUT_DIR/init-merged) and train a "
            "new adapter on the merged model, as QAlign's stage II trains the stage-I model on (default: the "
            "adapter's own weights go on training)."
        },
    )
    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "A dataset built by `mlalign data build-qt` (else build one from --languages); it overrides "
            "--languages, --examples_per_language, --qt_source, --prompt_format and --clean_pairs (e.g. a recipe's)."
        },
    )
    qt_source: QTSource = field(default=QTSource.gsm8k, metadata={"help": "Built-in question-translation source."})
    languages: str | None = field(
        default=None, metadata={"aliases": ["--langs"], "help": "Languages to train on, e.g. 'de,fr,sw'."}
    )
    mixture: str | None = field(
        default=None,
        metadata={
            "help": "One of the paper's mixture files of --qt_source instead of --languages, e.g. swhi (sentiment), "
            "zhde (snli, paws), en2zhja2zh (sentiment, into Chinese); `mlalign data build-qt --help` lists them."
        },
    )
    target_language: str = field(
        default="en",
        metadata={
            "help": "The language questions are translated into: English, or another language of the source (e.g. "
            "zh, as the paper's X->zh experiments; English may then be a source language)."
        },
    )
    examples_per_language: int | None = field(
        default=None, metadata={"help": "Pairs per language, or stage-II examples (default: all usable)."}
    )
    prompt_format: PromptFormat = field(
        default=PromptFormat.plain,
        metadata={
            "aliases": ["--qt_format"],
            "help": "plain (the question, then the paper's instruction line 'Translate the input from X to English:'), "
            "qalign (QAlign's instruction in the Alpaca template) or chat (the model's chat template).",
        },
    )
    clean_pairs: bool = field(
        default=True,
        metadata={
            "help": "Drop empty, repeated, untranslated and misaligned pairs (false: the files as they are, as "
            "both papers trained)."
        },
    )
    response_source: ResponseSource = field(
        default=ResponseSource.gsm8k,
        metadata={
            "help": "Stage-II data: gsm8k (pinned, offline), gsm8kinstruct (GSM8KInstruct in QAlign's ten languages, "
            "downloaded), metamathqa (the hub dataset at a pinned revision, QAlign's), toy (the toy world's answered "
            "English items) or toy_math (its word problems alone)."
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "Data directory (else $MLALIGN_DATA_DIR / cache)."})
    effective_batch_size: int = field(
        default=16,
        metadata={
            "help": "Examples per optimizer step over all processes; sets gradient_accumulation_steps "
            "(0: use --gradient_accumulation_steps as given)."
        },
    )
    val_size: float = field(
        default=0,
        metadata={
            "aliases": ["--eval_examples"],
            "help": "Examples held out for evaluation during training (with --eval_strategy): a share of the data "
            "(0 < x < 1) or a number (x >= 1).",
        },
    )
    overlong: Overlong = field(
        default=Overlong.drop,
        metadata={"help": "Sequences over max_length: drop them (keeping every EOS) or truncate them (both papers)."},
    )

    def __post_init__(self) -> None:
        for name, kind in (
            ("stage", Stage),
            ("prompt_format", PromptFormat),
            ("qt_source", QTSource),
            ("response_source", ResponseSource),
            ("overlong", Overlong),
        ):
            try:
                setattr(self, name, kind(getattr(self, name)))
            except ValueError:
                choices = ", ".join(k.value for k in kind)
                raise ValueError(f"--{name} {getattr(self, name)!r}: choose one of {choices}") from None
        check_lang(self.target_language, what="--target_language")
        if self.merge_init_from and not self.init_from:
            raise ValueError("--merge_init_from merges the --init_from adapter: give --init_from (a stage-I adapter)")
        if self.examples_per_language is not None and self.examples_per_language <= 0:
            raise ValueError(f"--examples_per_language {self.examples_per_language} must be positive")
        if self.effective_batch_size < 0:
            raise ValueError(f"--effective_batch_size {self.effective_batch_size} must be >= 0")
        if self.val_size < 0 or (self.val_size >= 1 and self.val_size != int(self.val_size)):
            raise ValueError(f"--val_size {self.val_size}: give a share (0 < x < 1) or a whole number of examples")

    def held_out(self) -> float | int:
        """The validation split as ``train_test_split`` takes it: a share, or a number of examples."""
        return self.val_size if self.val_size < 1 else int(self.val_size)


@dataclass
class QTConfig(SFTConfig):
    """TRL's ``SFTConfig`` with mlalign's training defaults."""

    learning_rate: float = field(default=5e-5, metadata={"help": "The initial learning rate."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Total number of training epochs to perform."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "The batch size per device for training."})
    lr_scheduler_type: SchedulerType | str = field(default="cosine", metadata={"help": "The scheduler type to use."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Warm-up steps; a float in [0, 1) is a share of the total steps."}
    )
    max_length: int | None = field(
        default=512, metadata={"help": "Longest sequence in tokens; --overlong says what happens to longer ones."}
    )
    save_steps: float = field(default=200, metadata={"help": "Save a checkpoint every X update steps."})
    seed: int = field(
        default=0,
        metadata={"help": "Random seed (data sampling, initialisation, order): 0, as in every mlalign command."},
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept in output_dir."})
    gradient_checkpointing: bool = field(
        default=CUDA, metadata={"help": "Recompute activations in the backward pass (saves memory)."}
    )
    gradient_checkpointing_kwargs: dict[str, Any] | str | None = field(
        default_factory=lambda: {"use_reentrant": False},
        metadata={"help": "Keyword arguments of gradient checkpointing."},
    )
    train_sampling_strategy: str = field(
        default="batch_rebalance",
        metadata={
            "help": "Sampler: batch_rebalance (mlalign's default: each random effective batch split into micro-batches "
            "of similar lengths, same updates, less padding), random (TRL's default), sequential, group_by_length.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={"aliases": ["--out"], "help": "Where the checkpoints, the adapter and its metadata are written."},
    )
    cudnn_attention: bool = field(
        default=False,
        metadata={
            "help": "Let PyTorch's SDPA attention use its cuDNN backend on CUDA (off by default: it builds a graph on "
            "the host for every new batch shape; on an H100, a 7B QLoRA trained about 1.2x faster without it)."
        },
    )
    use_cpu: bool = field(default=not CUDA, metadata={"help": "Train on the CPU (the default without CUDA)."})
    bf16: bool | None = field(default=CUDA, metadata={"help": "bf16 mixed precision (the default on CUDA)."})
    optim: OptimizerNames | str = field(
        default="paged_adamw_8bit" if CUDA else "adamw_torch",
        metadata={"help": "The optimizer: paged 8-bit AdamW on CUDA, AdamW on the CPU by default."},
    )


@dataclass
class QTModelConfig(ModelConfig):
    """TRL's ``ModelConfig`` with mlalign's defaults: LoRA on q_proj,v_proj; on CUDA a 4-bit NF4 base (QLoRA)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"aliases": ["--model", "-m"], "help": "The base model: a hub id or a local folder."}
    )
    dtype: str | None = field(
        default="bfloat16" if CUDA else "float32",
        metadata={"help": "dtype of the base model's weights.", "choices": [d.value for d in Dtype]},
    )
    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (false: the full model)."})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["q_proj", "v_proj"], metadata={"help": "LoRA target modules."}
    )
    load_in_4bit: bool = field(default=CUDA, metadata={"help": "4-bit base model (QLoRA; the default on CUDA)."})
    use_bnb_nested_quant: bool = field(default=CUDA, metadata={"help": "Double quantisation of the 4-bit base."})


def mlalign_defaults() -> dict[str, object]:
    """The defaults mlalign sets (its own options, and where it differs from TRL) for this machine."""
    out: dict[str, object] = {}
    for cls, own in (
        (QTArguments, None),
        (QTConfig, QTConfig.__annotations__),
        (QTModelConfig, QTModelConfig.__annotations__),
    ):
        for f in fields(cls):
            if own is None or f.name in own:
                value = f.default if f.default is not MISSING else f.default_factory()
                out[f.name] = value.value if isinstance(value, enum.Enum) else value
    return out

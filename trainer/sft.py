"""Question-alignment SFT with TRL: LoRA (QLoRA on CUDA) on question-translation data, resumable.

Modelled on TRL's ``trl/scripts/sft.py``: dataclass arguments parsed by ``TrlParser`` (so ``--config recipe.yaml``
works and command-line flags override it), ``ModelConfig`` + ``get_quantization_config`` + ``get_peft_config``,
``SFTConfig`` / ``SFTTrainer``. Runs as ``mlalign train ...``, ``python -m mlalign_trainer.sft ...`` or under
``accelerate launch -m mlalign_trainer.sft ...``.

Rerunning the same command into the same ``--output_dir`` resumes from the last checkpoint; a finished run is
left alone; a directory holding a run with other settings is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlalign_tasks.atomic import write_json_atomic
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.model_paths import check_local

# The paper's recipe (LoRA on q_proj,v_proj; lr 5e-5; 3 epochs; effective batch 16; cosine, 10% warm-up).
PAPER_DEFAULTS: dict[str, object] = {
    "use_peft": True,
    "lora_target_modules": ["q_proj", "v_proj"],
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "learning_rate": 5e-5,
    "num_train_epochs": 3,
    "per_device_train_batch_size": 4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,
    "max_length": 512,
    "logging_steps": 10,
    "save_strategy": "steps",
    "save_steps": 200,
    "save_total_limit": 2,
    "report_to": "none",
    "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "seed": 42,
}
# Batching that leaves every optimizer step's examples (and so its update) unchanged but cuts padding: each effective
# batch is drawn at random as usual, then split into micro-batches of similar lengths (bench/bench_batching.py).
BATCHING_DEFAULTS: dict[str, object] = {"train_sampling_strategy": "batch_rebalance"}
# QLoRA: NF4 with double quantisation, bf16 compute, paged 8-bit AdamW, gradient checkpointing.
CUDA_DEFAULTS: dict[str, object] = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "use_bnb_nested_quant": True,
    "dtype": "bfloat16",
    "bf16": True,
    "optim": "paged_adamw_8bit",
    "gradient_checkpointing": True,
}
# CPU: fp32 LoRA without quantisation (4-bit only with --load_in_4bit, guarded; see `Avx512Bf16Guard`).
CPU_DEFAULTS: dict[str, object] = {
    "use_cpu": True,
    "bf16": False,
    "dtype": "float32",
    "optim": "adamw_torch",
    "gradient_checkpointing": False,
}
# Shipped configuration files: trainer recipes (--config NAME) and accelerate configs (--config_file).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"


def shipped_configs() -> dict[str, Path]:
    """Name -> path of every shipped recipe and accelerate config (`mlalign recipes` lists them)."""
    return {p.stem: p for folder in (RECIPES_DIR, ACCELERATE_DIR) for p in sorted(folder.glob("*.yaml"))}


def config_path(name: str) -> Path:
    """A YAML file given by path, or a shipped recipe / accelerate config by name (e.g. 'qwen2.5-1.5b-12gb')."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if found := shipped_configs().get(path.name.removesuffix(".yaml")):
        return found
    recipes = ", ".join(p.stem for p in sorted(RECIPES_DIR.glob("*.yaml")))
    accelerate = ", ".join(p.stem for p in sorted(ACCELERATE_DIR.glob("*.yaml")))
    raise MlalignError(
        f"{name!r} is neither a file nor a shipped recipe (recipes: {recipes}; accelerate configs: {accelerate})"
    )


def _resolve_config_flag(argv: list[str]) -> list[str]:
    """``--config NAME`` or ``--config=NAME`` (a shipped recipe's name, or a file) becomes ``--config PATH``."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--config" or arg.startswith("--config="):
            value = arg.split("=", 1)[1] if "=" in arg else next(args, None)
            out += ["--config", str(config_path(value))] if value is not None else [arg]
        else:
            out.append(arg)
    return out


# Candidate padding tokens when a tokenizer has none distinct from EOS.
_PAD_CANDIDATES = ("<pad>", "<|pad|>", "<|finetune_right_pad_id|>", "<|endoftext|>")


@dataclass
class QTArguments:
    """Question-translation data and run options (the other flags are TRL's SFTConfig and ModelConfig)."""

    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "A dataset built by `mlalign data build-qt` (else build one from --languages); it overrides "
            "--languages, --examples_per_language, --qt_source and --qt_format (e.g. a recipe's)."
        },
    )
    qt_source: str = field(default="gsm8k", metadata={"help": "Built-in question-translation source: gsm8k or snli."})
    languages: str | None = field(default=None, metadata={"help": "Languages to train on, e.g. 'de,fr,sw'."})
    examples_per_language: int | None = field(
        default=None, metadata={"help": "Pairs per language (default: all usable pairs)."}
    )
    qt_format: str = field(default="plain", metadata={"help": "plain (the paper's prompt) or chat (chat template)."})
    data_dir: str | None = field(default=None, metadata={"help": "Data directory (else $MLALIGN_DATA_DIR / cache)."})
    effective_batch_size: int | None = field(
        default=16,
        metadata={
            "help": "Examples per optimizer step over all processes; sets gradient_accumulation_steps "
            "(0: use --gradient_accumulation_steps as given)."
        },
    )
    eval_examples: int = field(
        default=0, metadata={"help": "Examples held out for evaluation during training (with --eval_strategy)."}
    )


def make_parser():
    """A TrlParser over (QTArguments, SFTConfig, ModelConfig) with the paper's and the device's defaults."""
    import torch
    from trl import ModelConfig, SFTConfig, TrlParser

    parser = TrlParser(
        (QTArguments, SFTConfig, ModelConfig),
        prog="mlalign train",
        description="Question-alignment SFT. --config NAME|FILE: a shipped recipe (`mlalign recipes`) or a YAML file "
        "of flags; flags on the command line win over it.",
    )
    parser.set_defaults(
        **PAPER_DEFAULTS, **BATCHING_DEFAULTS, **(CUDA_DEFAULTS if torch.cuda.is_available() else CPU_DEFAULTS)
    )
    for action in parser._actions:  # transformers' help names its own default
        if action.dest == "train_sampling_strategy":
            action.help = (
                "Sampler: batch_rebalance (mlalign's default: each random effective batch split into micro-batches "
                "of similar lengths, same updates, less padding), random (TRL's default), sequential, group_by_length."
            )
    return parser


def on_command_line(argv: list[str], name: str) -> bool:
    """Whether the flag `name` (``--name`` or ``--na-me``, with its value after a space or ``=``) is in `argv`."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    return any(arg.split("=", 1)[0] in spellings for arg in argv)


def parse_args(argv: list[str] | None = None):
    """(qt_args, training_args, model_args); config-file and value errors become MlalignError."""
    parser = make_parser()
    argv = _resolve_config_flag(sys.argv[1:] if argv is None else argv)
    import yaml

    # transformers 5 renames TRL's gradient_checkpointing* fields; the notices are not the user's to act on.
    warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6", category=FutureWarning)

    try:
        return parser.parse_args_and_config(args=argv)
    except (ValueError, OSError, yaml.YAMLError) as e:
        raise MlalignError(f"bad training arguments: {e}") from None


def kbit_device_map() -> dict[str, object]:
    """Each process holds its whole quantised model on its own device (CUDA index, or the CPU)."""
    import torch
    from accelerate import PartialState

    return {"": PartialState().local_process_index if torch.cuda.is_available() else "cpu"}


def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a padding token distinct from EOS when it has none (so EOS stays a learned target)."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    for candidate in (tokenizer.unk_token, *_PAD_CANDIDATES):
        if candidate and candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            return
    # No distinct token: TRL builds labels before padding and pads them with -100, not with the pad id,
    # so a trailing EOS is still learned.


def load_training_data(qt: QTArguments, seed: int):
    """(dataset, build info) from --dataset_path (which wins over --languages) or built from --languages."""
    from mlalign_trainer import qt_data

    if qt.dataset_path:
        return qt_data.load_build(qt.dataset_path)
    if not qt.languages:
        raise MlalignError("no training data: give --languages (e.g. de,fr,sw) or --dataset_path DIR")
    build = qt_data.build_qt_dataset(
        qt.qt_source, qt.languages, qt.examples_per_language, seed=seed, fmt=qt.qt_format, data_dir=qt.data_dir
    )
    return build.dataset, build.info()


def apply_batch_size(qt: QTArguments, args) -> None:
    """Derive gradient accumulation from the effective batch size over all processes."""
    if not qt.effective_batch_size:
        return
    per_step = args.per_device_train_batch_size * args.world_size
    if qt.effective_batch_size % per_step:
        raise MlalignError(
            f"effective batch size {qt.effective_batch_size} is not a multiple of per-device batch "
            f"{args.per_device_train_batch_size} x {args.world_size} process(es); change one of them"
        )
    args.gradient_accumulation_steps = qt.effective_batch_size // per_step


# Settings that cannot change the trained adapter: where and how often to log and save, uploads, progress bars,
# data-loading workers, the process's own rank. The data-selection flags are left out as well: the data they
# select is compared through its hash. Every other setting of the run is compared before it resumes.
RESULT_NEUTRAL = frozenset(
    {
        "output_dir", "run_name", "project", "report_to", "trackio_space_id", "trackio_bucket_id",
        "trackio_static_space_id", "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter",
        "log_level", "log_level_replica", "log_on_each_node", "disable_tqdm", "skip_memory_metrics",
        "include_num_input_tokens_seen", "save_strategy", "save_steps", "save_total_limit", "save_on_each_node",
        "save_only_model", "resume_from_checkpoint", "push_to_hub", "hub_model_id", "hub_strategy", "hub_token",
        "hub_private_repo", "hub_always_push", "hub_revision", "local_rank", "ddp_timeout", "dataloader_num_workers",
        "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
        "dataloader_multiprocessing_context", "dataset_num_proc", "torch_empty_cache_steps",
        "dataset_path", "data_dir", "qt_source", "languages", "examples_per_language", "qt_format",
    }
)  # fmt: skip


def run_settings(qt: QTArguments, args, model_args, info: dict) -> dict:
    """Everything that decides the result of a run: compared on rerun, recorded in the metadata.

    The hyperparameters are the run's whole configuration (our flags, TRL's SFTConfig, its ModelConfig) less
    `RESULT_NEUTRAL`, plus the number of processes and the effective batch size they make.
    """
    selected = {lang: s["selected"] for lang, s in info["stats"].items()}
    train = args.to_dict()  # enums as their values; it masks every `*_token` field, only hub_token is a secret
    train |= {key: getattr(args, key) for key in train if key.endswith("_token") and key not in RESULT_NEUTRAL}
    config = {**asdict(qt), **train, **asdict(model_args)}
    hp = {key: value for key, value in sorted(config.items()) if key not in RESULT_NEUTRAL}
    hp["world_size"] = args.world_size
    hp["effective_batch_size"] = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    return {
        "base_model": model_args.model_name_or_path,
        "languages": info["languages"],
        "examples_per_language": info["examples_per_language"] or min(selected.values()),
        "data_hash": info["data_hash"],
        "data_source": {k: info[k] for k in ("source", "format", "seed", "num_rows")} | {"selected": selected},
        "hyperparameters": json.loads(json.dumps(hp, default=str)),  # as the run file records them
    }


def load_model(model_args, args):
    """The base model: 4-bit via bitsandbytes (prepared for k-bit training) when asked, else full precision."""
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    quantization_config = get_quantization_config(model_args)
    kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(args.model_init_kwargs or {}),
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        if args.distributed_state.distributed_type not in ("FSDP", "DEEPSPEED"):  # those shard the model themselves
            kwargs["device_map"] = kbit_device_map()
    try:
        model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **kwargs)
    except (OSError, ImportError, ValueError) as e:  # missing model, missing kernel package, unsupported setting
        raise MlalignError(f"cannot load model {model_args.model_name_or_path!r}: {e}") from None
    if quantization_config is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=args.gradient_checkpointing,
            gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
        )
    return model


def sequence_length(row: dict, tokenizer) -> int:
    """Tokens of prompt + completion as trained (with the EOS TRL appends to a plain completion)."""
    if isinstance(row["prompt"], list):
        ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return len(tokenizer(row["prompt"] + row["completion"])["input_ids"]) + 1


def drop_overlong(dataset, tokenizer, max_length: int | None, split: str = "training"):
    """Drop examples longer than `max_length` (rather than truncating them and losing their EOS)."""
    if dataset is None or max_length is None:
        return dataset, 0
    kept = dataset.filter(lambda row: sequence_length(row, tokenizer) <= max_length)
    if len(kept) == 0:
        raise MlalignError(f"every {split} example is longer than --max_length {max_length} tokens; raise --max_length")
    return kept, len(dataset) - len(kept)


def padding_free_attention_note(args, model_args) -> str | None:
    """A warning when padding-free batches will run through a dense attention mask (exact, but slower)."""
    if not (args.padding_free or (args.packing and args.packing_strategy in ("bfd", "bfd_split"))):
        return None
    if model_args.attn_implementation and "flash" in model_args.attn_implementation:
        return None
    return (
        f"padding-free batches with attn_implementation={model_args.attn_implementation or 'sdpa'} attend through a "
        "dense block-diagonal mask over the whole flattened batch: exact, but slower than padded batches on the "
        "CPU (mlalign's bench/bench_batching.py); the gain needs --attn_implementation flash_attention_2 on a GPU"
    )


def build_trainer(qt: QTArguments, args, model_args, train_dataset, eval_dataset=None, callbacks=()):
    """The SFTTrainer with our model, tokenizer, LoRA config and callbacks."""
    from mlalign_trainer.callbacks import Avx512Bf16Guard, LogLastStep
    from mlalign_trainer.qt_trainer import QTTrainer
    from transformers import AutoTokenizer
    from trl import get_peft_config

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_args.model_name_or_path, revision=model_args.model_revision, trust_remote_code=args.trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise MlalignError(f"cannot load the tokenizer of {model_args.model_name_or_path!r}: {e}") from None
    ensure_pad_token(tokenizer)
    if qt.qt_format == "chat" and not tokenizer.chat_template:
        raise MlalignError(f"{model_args.model_name_or_path} has no chat template; build the data with --format plain")
    train_dataset, dropped = drop_overlong(train_dataset, tokenizer, args.max_length)
    eval_dataset, _ = drop_overlong(eval_dataset, tokenizer, args.max_length, split="evaluation")
    if dropped and args.process_index == 0:
        print(
            f"dropped {dropped} of {dropped + len(train_dataset)} examples longer than --max_length {args.max_length}"
        )
    if args.padding_free and not args.packing:
        args.max_length = None  # enforced above; TRL refuses a max_length it would not apply to unpacked rows
    if (note := padding_free_attention_note(args, model_args)) and args.process_index == 0:
        warnings.warn(note, stacklevel=2)
    model = load_model(model_args, args)
    try:
        return QTTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=get_peft_config(model_args),
            callbacks=[Avx512Bf16Guard(), LogLastStep(), *callbacks],
        )
    except ValueError as e:  # TRL's and transformers' checks of the settings
        raise MlalignError(f"the trainer refused the settings: {e}") from None


def _complete(checkpoint: Path) -> bool:
    """Whether `checkpoint` holds a whole ``trainer_state.json`` (the Trainer writes it last)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: Path, remove_incomplete: bool = True) -> str | None:
    """The newest ``checkpoint-N`` holding a readable ``trainer_state.json``.

    Newer checkpoints without one were cut off mid-save (e.g. by SIGKILL, or a full disk) and are removed.
    """
    from transformers.trainer_utils import get_last_checkpoint

    while (last := get_last_checkpoint(str(output_dir))) is not None:
        if _complete(Path(last)):
            return last
        if not remove_incomplete:
            return None
        print(f"removing incomplete checkpoint {last} (cut off while saving)")
        shutil.rmtree(last)
    return None


def _final_loss(log_history: list[dict]) -> float | None:
    """The last logged training loss (`LogLastStep` logs the last step, averaged over all processes)."""
    losses = [e["loss"] for e in log_history if "loss" in e]
    return float(losses[-1]) if losses else None


def main(argv: list[str] | None = None) -> int:
    """Train (or resume, or report a finished run); returns the exit code."""
    from mlalign_trainer import metadata
    from mlalign_trainer.callbacks import GracefulInterrupt

    argv = sys.argv[1:] if argv is None else argv
    qt, args, model_args = parse_args(argv)
    if not model_args.model_name_or_path:
        raise MlalignError("no base model: give --model_name_or_path (a Hugging Face model id or a local path)")
    given = on_command_line(argv, "model_name_or_path")
    check_local(model_args.model_name_or_path, "--model_name_or_path" if given else "the recipe's model_name_or_path")
    local = Path(model_args.model_name_or_path).expanduser()
    if local.is_dir():  # the adapter and its metadata then name the base model wherever they are used from
        model_args.model_name_or_path = str(local.resolve())
    apply_batch_size(qt, args)
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise MlalignError("nothing to train: give --num_train_epochs or --max_steps a positive value")
    say = print if args.process_index == 0 else (lambda *a, **k: None)
    dataset, info = load_training_data(qt, args.seed)
    if qt.dataset_path and on_command_line(argv, "languages"):  # not a recipe's, which the data stage replaces
        say(f"--dataset_path {qt.dataset_path} ({','.join(info['languages'])}) replaces --languages {qt.languages}")
    qt.qt_format = info["format"]
    eval_dataset = None
    if args.eval_strategy != "no":
        if not 0 < qt.eval_examples < len(dataset):
            raise MlalignError(
                f"--eval_strategy {args.eval_strategy} needs --eval_examples between 1 and {len(dataset) - 1}"
            )
        split = dataset.train_test_split(test_size=qt.eval_examples, seed=args.seed, shuffle=True)
        dataset, eval_dataset = split["train"], split["test"]

    out = Path(args.output_dir)
    settings = run_settings(qt, args, model_args, info)
    state = metadata.check_run_dir(out, settings)
    if state == "finished":
        say(f"{out} already holds this finished run (adapter and {metadata.METADATA_FILE}); nothing to do")
        return 0
    interrupt = GracefulInterrupt(enabled=args.world_size == 1)
    trainer = build_trainer(qt, args, model_args, dataset, eval_dataset, callbacks=[interrupt])
    with args.main_process_first(desc="preparing the output directory"):
        if state == "new" and args.process_index == 0:
            metadata.write_run_file(out, settings)
        last = last_complete_checkpoint(out, remove_incomplete=args.process_index == 0) if state == "resume" else None
    if last:
        say(f"resuming from {last}")
    with interrupt.installed():
        trainer.train(resume_from_checkpoint=last)
    if interrupt.fired:
        say(f"interrupted at step {trainer.state.global_step}; checkpoint saved; rerun the same command to resume")
        return 130

    tmp = out / ".final-adapter.tmp"  # written whole, then moved beside the checkpoints
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    if trainer.is_world_process_zero():
        for item in tmp.iterdir():
            item.replace(out / item.name)
        tmp.rmdir()
        meta = metadata.training_metadata(
            settings,
            seed=args.seed,
            final_loss=_final_loss(trainer.state.log_history),
            global_step=trainer.state.global_step,
            resumed_from=Path(last).name if last else None,
            start_step=int(Path(last).name.rsplit("-", 1)[1]) if last else 0,
            dataset_examples=len(trainer.train_dataset),  # after dropping over-long examples
            examples_seen=trainer.state.global_step * settings["hyperparameters"]["effective_batch_size"],
        )
        write_json_atomic(out / metadata.METADATA_FILE, meta)
        say(f"adapter written to {out} (step {trainer.state.global_step}, final loss {meta['final_loss']})")
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return 0


def cli(argv: list[str] | None = None) -> None:
    """``python -m mlalign_trainer.sft``: like `main`, with user errors as one line and exit code 2."""
    try:
        code = main(argv)
    except MlalignError as e:
        if os.environ.get("RANK", "0") == "0":  # under accelerate launch, one process says it
            print(f"error: {e}", file=sys.stderr)
        code = 2
    except OSError as e:  # e.g. an output path under a file, a full disk
        print(f"error: {e.strerror or e}: {e.filename}" if e.filename else f"error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    cli()

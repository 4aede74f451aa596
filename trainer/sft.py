"""Question-alignment SFT with TRL: LoRA (QLoRA on CUDA) or the full model, on question-translation data (stage I)
or, continuing a stage-I model, on English question-answer data (QAlign's stage II); resumable.

Modelled on TRL's ``trl/scripts/sft.py``: dataclass arguments parsed by ``TrlParser`` (so ``--config recipe.yaml``
works and command-line flags override it), ``ModelConfig`` + ``get_quantization_config`` + ``get_peft_config``,
``SFTConfig`` / ``SFTTrainer``. Runs as ``mlalign train ...``, ``python -m mlalign_trainer.sft ...`` or under
``accelerate launch -m mlalign_trainer.sft ...``.

Rerunning the same command into the same ``--output_dir`` resumes from the last checkpoint; a finished run is
left alone; a directory holding a run with other settings, or of another model (by content), is an error
(`mlalign_trainer.resume`); a second run into a directory another one is writing is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import METADATA_FILE
from mlalign_tasks.files.atomic import write_json_atomic
from mlalign_tasks.files.output_dirs import exclusive_folder
from mlalign_tasks.models.gguf_models import model_source, resolve_model
from mlalign_tasks.models.model_identity import ModelIdentity, identify
from mlalign_tasks.models.model_paths import check_local

if TYPE_CHECKING:
    from mlalign_trainer.config import QTArguments
    from mlalign_trainer.continuation import StartPoint

# Candidate padding tokens when a tokenizer has none distinct from EOS.
_PAD_CANDIDATES = ("<pad>", "<|pad|>", "<|finetune_right_pad_id|>", "<|endoftext|>")


HELP_ALL = "--help-all"  # `--help` with TRL's and transformers' training options too


def make_parser(help_all: bool = False):
    """A TrlParser over mlalign's options and TRL's SFTConfig and ModelConfig, with mlalign's defaults; its help
    groups mlalign's options first, then TRL's model options, then (with `help_all`, else only counted) TRL's and
    transformers' training options."""
    from dataclasses import fields

    from mlalign_trainer.config import QTArguments, QTConfig, QTModelConfig
    from trl import ModelConfig, TrlParser

    parser = TrlParser(
        (QTArguments, QTConfig, QTModelConfig),
        prog="mlalign train",
        usage="%(prog)s [--config NAME|FILE] [--FLAG VALUE ...]",
        description="Question-alignment SFT. --config NAME|FILE: a shipped recipe (`mlalign recipes`) or a YAML file "
        "of flags; flags on the command line win over it. Two-stage recipes: --stage question|response.",
    )
    own = {f.name for f in fields(QTArguments)} | set(QTConfig.__annotations__) | set(QTModelConfig.__annotations__)
    model = {f.name for f in fields(ModelConfig)}
    groups = {
        "own": parser.add_argument_group("mlalign's options, and mlalign's defaults of TRL's and transformers'"),
        "model": parser.add_argument_group("TRL's ModelConfig: the model, LoRA, 4-bit"),
        "rest": parser.add_argument_group("TRL's SFTConfig and transformers' TrainingArguments"),
    }
    for group in parser._action_groups[:2]:  # argparse's positionals and options: every dataclass field is there
        for action in [a for a in group._group_actions if a.dest != "help"]:
            kind = "own" if action.dest in own else "model" if action.dest in model else "rest"
            group._group_actions.remove(action)
            groups[kind]._group_actions.append(action)
    rest = groups["rest"]._group_actions
    if not help_all:
        for action in rest:
            action.help = argparse.SUPPRESS
        groups["rest"].description = (
            f"{len(rest)} more options (e.g. --max_steps, --logging_steps, --report_to): `mlalign train {HELP_ALL}` "
            "lists them all; https://huggingface.co/docs/trl/sft_trainer"
        )
    return parser


def on_command_line(argv: list[str], name: str) -> bool:
    """Whether the flag `name` (``--name`` or ``--na-me``, with its value after a space or ``=``) is in `argv`."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    return any(arg.split("=", 1)[0] in spellings for arg in argv)


def parse_args(argv: list[str] | None = None, recipe: Path | None = None, values: dict[str, object] | None = None):
    """(qt_args, training_args, model_args): the flags in `argv` over typed `values` (a caller's, such as `mlalign
    run`'s) over a recipe's (``--config`` in `argv`, else `recipe`); recipe and value errors become MlalignError."""
    from mlalign_trainer import recipes

    # transformers 5 renames TRL's gradient_checkpointing* fields; the notices are not the user's to act on.
    warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    values = values or {}
    help_all = HELP_ALL in argv
    parser = make_parser(help_all)
    path, argv = recipes.split_config_flag(["--help" if arg == HELP_ALL else arg for arg in argv])
    path = path or recipe
    stage = str(values["stage"]) if "stage" in values and not on_command_line(argv, "stage") else None
    try:
        if path is not None:
            flags = recipes.stage_flags(recipes.read_recipe(path), stage or recipes.stage_flag(argv), path)
            if unknown := parser.set_defaults_with_config(**flags):
                raise ValueError(f"recipe {path} sets flags the trainer does not have: {' '.join(unknown)}")
        if unknown := parser.set_defaults_with_config(**values):
            raise ValueError(f"the trainer has no option(s) {' '.join(unknown[::2])}")
        return parser.parse_args_into_dataclasses(args=argv)
    except (ValueError, OSError) as e:
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
    """(dataset, build info): stage II's question-answer data, else --dataset_path (which wins over --languages) or
    question translations built from --languages."""
    from mlalign_trainer import qt_data, response_data

    if qt.stage == "response":
        build = response_data.build_response_dataset(
            qt.response_source, qt.examples_per_language, seed=seed, fmt=qt.prompt_format, data_dir=qt.data_dir
        )
        return build.dataset, build.info()
    if qt.dataset_path:
        return qt_data.load_build(qt.dataset_path)
    if not qt.languages and not qt.mixture:
        raise MlalignError("no training data: give --languages (e.g. de,fr,sw), --mixture NAME or --dataset_path DIR")
    build = qt_data.build_qt_dataset(
        qt.qt_source,
        qt.languages,
        qt.examples_per_language,
        seed=seed,
        fmt=qt.prompt_format,
        data_dir=qt.data_dir,
        clean=qt.clean_pairs,
        target=qt.target_language,
        mixture=qt.mixture,
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


def hold_out(qt: QTArguments, args, dataset):
    """(training set, validation set or None): --val_size of the data held out when --eval_strategy evaluates."""
    if args.eval_strategy == "no":
        if qt.val_size:
            raise MlalignError(
                f"--val_size {qt.val_size} holds out examples for evaluation: give --eval_strategy steps "
                "(with --eval_steps) or epoch"
            )
        return dataset, None
    if not qt.val_size:
        raise MlalignError(
            f"--eval_strategy {args.eval_strategy} needs --val_size: a share of the data (e.g. 0.05) or a number"
        )
    try:
        split = dataset.train_test_split(test_size=qt.held_out(), seed=args.seed, shuffle=True)
    except ValueError as e:  # a split that leaves either side empty
        raise MlalignError(f"--val_size {qt.val_size} of {len(dataset)} examples: {e}") from None
    return split["train"], split["test"]


# Settings that cannot change the trained adapter: where and how often to log and save, uploads, progress bars,
# data-loading workers, the process's own rank, the attention backend (the same computation). The data-selection flags are left out as well: the data they
# select is compared through its hash (and the run's languages, target and stage-I start point by name). Every
# other setting of the run is compared before it resumes.
RESULT_NEUTRAL = frozenset(
    {
        "output_dir", "run_name", "project", "report_to", "trackio_space_id", "trackio_bucket_id",
        "trackio_static_space_id", "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter",
        "log_level", "log_level_replica", "log_on_each_node", "disable_tqdm", "skip_memory_metrics",
        "include_num_input_tokens_seen", "save_strategy", "save_steps", "save_total_limit", "save_on_each_node",
        "save_only_model", "resume_from_checkpoint", "push_to_hub", "hub_model_id", "hub_strategy", "hub_token",
        "hub_private_repo", "hub_always_push", "hub_revision", "local_rank", "ddp_timeout", "dataloader_num_workers",
        "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
        "dataloader_multiprocessing_context", "dataset_num_proc", "torch_empty_cache_steps", "cudnn_attention",
        "dataset_path", "data_dir", "qt_source", "languages", "target_language", "mixture", "examples_per_language",
        "prompt_format", "clean_pairs", "response_source", "init_from",
    }
)  # fmt: skip


def run_settings(
    qt: QTArguments, args, model_args, info: dict, start: StartPoint | None = None, model: ModelIdentity | None = None
) -> dict:
    """Everything that decides the result of a run: compared on rerun, recorded in the metadata.

    The hyperparameters are the run's whole configuration (our flags, TRL's SFTConfig, its ModelConfig) less
    `RESULT_NEUTRAL`, plus the number of processes and the effective batch size they make; `model` is the identity
    of the model it loads (its content, where it is a local one).
    """
    selected = {lang: s["selected"] for lang, s in info["stats"].items()}
    train = args.to_dict()  # enums as their values; it masks every `*_token` field, only hub_token is a secret
    train |= {key: getattr(args, key) for key in train if key.endswith("_token") and key not in RESULT_NEUTRAL}
    config = {**asdict(qt), **train, **asdict(model_args)}
    hp = {key: value for key, value in sorted(config.items()) if key not in RESULT_NEUTRAL}
    hp["world_size"] = args.world_size
    hp["effective_batch_size"] = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    return {
        "base_model": start.base_model if start else model_args.model_name_or_path,
        "model_sha256": model.sha256 if model else None,
        "stage": qt.stage,
        "init_from": start.record() if start else None,
        "languages": info["languages"],
        "target_language": info.get("target_language", "en"),
        "examples_per_language": info["examples_per_language"] or min(selected.values()),
        "data_hash": info["data_hash"],
        "data_source": {k: info[k] for k in ("source", "format", "seed", "num_rows")}
        | {"clean": info.get("clean", True), "mixture": info.get("mixture"), "selected": selected},
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


def build_trainer(
    qt: QTArguments, args, model_args, train_dataset, eval_dataset=None, callbacks=(), start: StartPoint | None = None
):
    """The SFTTrainer with our model, tokenizer, LoRA config (or the adapter of `start`, trainable) and callbacks."""
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
    if qt.prompt_format == "chat" and not tokenizer.chat_template:
        raise MlalignError(f"{model_args.model_name_or_path} has no chat template; use --prompt_format plain or qalign")
    if qt.overlong == "drop":  # else TRL truncates them at max_length
        train_dataset, dropped = drop_overlong(train_dataset, tokenizer, args.max_length)
        eval_dataset, _ = drop_overlong(eval_dataset, tokenizer, args.max_length, split="evaluation")
        if dropped and args.process_index == 0:
            print(
                f"dropped {dropped} of {dropped + len(train_dataset)} examples longer than --max_length {args.max_length}"
            )
    if args.padding_free and not args.packing:
        if qt.overlong == "truncate" and args.max_length is not None:
            raise MlalignError(
                "--overlong truncate: TRL does not truncate padding-free rows that are not packed; use --overlong drop"
            )
        args.max_length = None  # enforced above; TRL refuses a max_length it would not apply to unpacked rows
    if (note := padding_free_attention_note(args, model_args)) and args.process_index == 0:
        warnings.warn(note, stacklevel=2)
    model = load_model(model_args, args)
    peft_config = get_peft_config(model_args)
    if start is not None and start.adapter:
        from peft import PeftModel

        model, peft_config = PeftModel.from_pretrained(model, str(start.path), is_trainable=True), None
    try:
        return QTTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[Avx512Bf16Guard(), LogLastStep(), *callbacks],
        )
    except ValueError as e:  # TRL's and transformers' checks of the settings
        raise MlalignError(f"the trainer refused the settings: {e}") from None


def _final_loss(log_history: list[dict]) -> float | None:
    """The last logged training loss (`LogLastStep` logs the last step, averaged over all processes)."""
    losses = [e["loss"] for e in log_history if "loss" in e]
    return float(losses[-1]) if losses else None


def main(argv: list[str] | None = None) -> int:
    """`mlalign train`: parse the flags (and a recipe's) once, then `train`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    qt, args, model_args = parse_args(argv)
    return train(
        qt, args, model_args, {name for name in ("model_name_or_path", "languages") if on_command_line(argv, name)}
    )


def train(qt: QTArguments, args, model_args, given: set[str] | frozenset[str] = frozenset()) -> int:
    """Train into ``args.output_dir`` (or resume, or report a finished run) on options parsed once (`parse_args`);
    `given`: the options the user typed rather than a recipe (messages name them so). Returns the exit code."""
    from mlalign_trainer import continuation
    from mlalign_trainer.config import PromptFormat

    say = print if args.process_index == 0 else (lambda *a, **k: None)
    start = continuation.start_point(qt.init_from) if qt.init_from else None
    if start:
        for note in continuation.configure(start, model_args, merge=qt.merge_init_from):
            say(f"--init_from {start.path}: {note}")
    if not model_args.model_name_or_path:
        raise MlalignError("no base model: give --model_name_or_path (a Hugging Face model id or a local path)")
    flag = "--model_name_or_path" if "model_name_or_path" in given else "the recipe's model_name_or_path"
    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path, flag, say)
    check_local(model_args.model_name_or_path, flag)
    local = Path(model_args.model_name_or_path).expanduser()
    if local.is_dir():  # the adapter and its metadata then name the base model wherever they are used from
        model_args.model_name_or_path = str(local.resolve())
    apply_batch_size(qt, args)
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise MlalignError("nothing to train: give --num_train_epochs or --max_steps a positive value")
    dataset, info = load_training_data(qt, args.seed)
    if qt.dataset_path and "languages" in given:  # not a recipe's, which the data stage replaces
        say(f"--dataset_path {qt.dataset_path} ({','.join(info['languages'])}) replaces --languages {qt.languages}")
    qt.prompt_format = PromptFormat(info["format"])
    dataset, eval_dataset = hold_out(qt, args, dataset)
    out = Path(args.output_dir)
    with output_lock(out, args):
        return train_into(out, qt, args, model_args, dataset, eval_dataset, info, start)


def output_lock(out: Path, args) -> AbstractContextManager:
    """The main process's lock on `out` (one run writes into it at a time); resume.check_run_dir refuses a file there."""
    if args.process_index != 0 or (out.exists() and not out.is_dir()):
        return nullcontext()
    return exclusive_folder(out, f"--output_dir {out}")


def train_into(
    out: Path, qt: QTArguments, args, model_args, dataset, eval_dataset, info: dict, start: StartPoint | None
) -> int:
    """Start, resume or report the run in `out` (the caller holds its lock); returns the exit code."""
    from mlalign_trainer import continuation, metadata, resume
    from mlalign_trainer.callbacks import GracefulInterrupt
    from mlalign_trainer.qt_trainer import saved_whole

    say = print if args.process_index == 0 else (lambda *a, **k: None)
    model = identify(model_args.model_name_or_path, resume.recorded_model_files(out))
    settings = run_settings(qt, args, model_args, info, start, model)
    state = resume.check_run_dir(out, settings)
    if state == "finished":
        say(f"{out} already holds this finished run (adapter and {METADATA_FILE}); nothing to do")
        return 0
    interrupt = GracefulInterrupt(enabled=args.world_size == 1)
    new_run = state == "new" and args.process_index == 0
    if qt.merge_init_from:  # the run file first: the merged model it trains on is part of the run in `out`
        with args.main_process_first(desc="merging the stage-I adapter"):
            if new_run:
                resume.write_run_file(out, settings, model.files if model else {})
                new_run = False
            start = continuation.merged(start, out, model_args.dtype)
        model_args.model_name_or_path = str(start.path)
    trainer = build_trainer(qt, args, model_args, dataset, eval_dataset, callbacks=[interrupt], start=start)
    with args.main_process_first(desc="preparing the output directory"):
        if new_run:
            resume.write_run_file(out, settings, model.files if model else {})
        last = (
            resume.last_complete_checkpoint(out, remove_incomplete=args.process_index == 0)
            if state == "resume"
            else None
        )
    if last:
        say(f"resuming from {last}")
    with interrupt.installed():
        trainer.train(resume_from_checkpoint=last)
    if interrupt.fired:
        name = signal.Signals(interrupt.signum).name
        say(f"{name} at step {trainer.state.global_step}: checkpoint saved; rerun the same command to resume")
        return 128 + interrupt.signum  # the shell's status of a process the signal stopped

    tmp = out / ".final-adapter.tmp"  # written whole, then moved beside the checkpoints
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    with saved_whole(tmp, "the final adapter" if model_args.use_peft else "the final model"):
        trainer.save_model(str(tmp))
    if trainer.is_world_process_zero():
        for item in tmp.iterdir():
            item.replace(out / item.name)
        tmp.rmdir()
        best = trainer.state.best_model_checkpoint if args.load_best_model_at_end else None
        meta = metadata.training_metadata(
            settings,
            seed=args.seed,
            final_loss=_final_loss(trainer.state.log_history),
            global_step=trainer.state.global_step,
            base_model_source=model_source(settings["base_model"]),  # the GGUF file a converted base came from
            resumed_from=Path(last).name if last else None,
            start_step=int(Path(last).name.rsplit("-", 1)[1]) if last else 0,
            dataset_examples=len(trainer.train_dataset),  # after dropping over-long examples
            examples_seen=trainer.state.global_step * settings["hyperparameters"]["effective_batch_size"],
            eval_examples=len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
            best_checkpoint=Path(best).name if best else None,  # the adapter written is this checkpoint's
            best_metric=trainer.state.best_metric if best else None,
            previous_stages=start.previous_stages() if start else (),
        )
        write_json_atomic(out / METADATA_FILE, meta)
        what = "adapter" if model_args.use_peft else "model"
        say(f"{what} written to {out} (step {trainer.state.global_step}, final loss {meta['final_loss']})")
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

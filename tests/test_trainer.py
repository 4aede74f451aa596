"""The question-alignment trainer on the tiny model: real TRL steps, real PEFT adapters, real processes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from mlalign_trainer import qt_data, recipes, resume, sft
from mlalign_trainer.callbacks import Avx512Bf16Guard, GracefulInterrupt, guard_cpu_4bit
from transformers import AutoTokenizer, TrainerCallback

from mlalign_tasks.errors import DataError, MlalignError
from mlalign_tasks.files.artefacts import METADATA_FILE, RUN_FILE
from mlalign_tasks.runtime.quiet import BNB_CPU_LOGGER, KERNELS_NOTICE
from mlalign_tasks.tasks.languages import UnknownLanguageError

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "trainer" / "recipes"
SMALL = ["--per_device_train_batch_size", "4", "--effective_batch_size", "4", "--max_length", "384"]
# Data shared by the subprocess runs (resume, DDP): 16 German + 16 French GSM8K question translations.
RUN_DATA = ["--languages", "de,fr", "--examples_per_language", "16", "--logging_steps", "1"]


def _args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["--model_name_or_path", str(model), "--output_dir", str(out), *SMALL, *extra]


def _trainer(model: Path, out: Path, dataset, *extra: str, eval_dataset=None, callbacks=()):
    qt, args, model_args = sft.parse_args(_args(model, out, *extra))
    sft.apply_batch_size(qt, args)
    return sft.build_trainer(qt, args, model_args, dataset, eval_dataset, callbacks=callbacks)


def _short(tiny_model_dir: Path, lang: str, n: int, max_tokens: int = 256):
    """`n` GSM8K question-translation examples of at most `max_tokens` tokens (fast steps on the CPU)."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = qt_data.build_qt_dataset("gsm8k", lang, 200, seed=0).dataset
    dataset = dataset.filter(lambda row: sft.sequence_length(row, tok) <= max_tokens)
    return dataset.select(range(n))


def _lora_grads(model) -> torch.Tensor:
    """Every LoRA parameter's gradient, flattened; one that got none counts as zeros (what the optimizer sees)."""
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora, "the model has no LoRA parameters"
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in lora])


class GradProbe(TrainerCallback):
    """Records, per optimizer step, the LoRA gradient norm and whether an evaluation ran before it."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float, bool]] = []
        self.evaluated = False

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluated = True

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append((state.global_step, _lora_grads(model).norm().item(), self.evaluated))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def test_mlalign_defaults_and_recipes(tmp_path):
    qt, args, model_args = sft.parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path)])
    sft.apply_batch_size(qt, args)
    assert model_args.use_peft and model_args.lora_target_modules == ["q_proj", "v_proj"]
    assert (model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout) == (16, 32, 0.05)
    assert (args.learning_rate, args.num_train_epochs, args.warmup_steps) == (5e-5, 3, 0.1)
    assert (
        args.lr_scheduler_type == "cosine" and args.per_device_train_batch_size * args.gradient_accumulation_steps == 16
    )
    assert (args.max_length, qt.overlong, qt.val_size, args.eval_strategy) == (512, "drop", 0, "no")
    assert args.report_to in ("none", []) and args.train_sampling_strategy == "batch_rebalance"
    if not torch.cuda.is_available():  # the CPU defaults: fp32 LoRA, no quantisation
        assert args.use_cpu and not args.bf16 and not model_args.load_in_4bit and model_args.dtype == "float32"
    for recipe in ("qwen2.5-1.5b-12gb", "llama2-7b-24gb"):  # short deltas over the defaults: QLoRA on any machine
        qt, args, model_args = sft.parse_args(["--config", str(RECIPES / f"{recipe}.yaml"), "--use_cpu", "true"])
        assert model_args.load_in_4bit and model_args.use_bnb_nested_quant and model_args.bnb_4bit_quant_type == "nf4"
        assert model_args.dtype == "bfloat16" and args.optim == "paged_adamw_8bit" and args.gradient_checkpointing
        assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}
        assert (args.learning_rate, args.num_train_epochs, qt.effective_batch_size) == (5e-5, 3, 16)
        assert model_args.lora_target_modules == ["q_proj", "v_proj"] and args.lr_scheduler_type == "cosine"
        assert (model_args.lora_r, args.per_device_train_batch_size, args.max_length) == (16, 8, 512)
    qt, args, _ = sft.parse_args(["--config", str(RECIPES / "cpu-smoke.yaml"), "--max_steps", "7"])
    assert args.max_steps == 7 and qt.languages == "de,fr"  # the command line overrides the recipe
    for by_name in (["--config", "cpu-smoke"], ["--config=cpu-smoke.yaml"]):  # shipped recipes by name
        assert sft.parse_args([*by_name, "--max_steps", "7"])[1].max_steps == 7
    with pytest.raises(MlalignError, match="neither a file nor a shipped recipe"):
        sft.parse_args(["--config", "no-such-recipe"])


def test_typed_values_sit_between_a_recipe_and_the_flags(tmp_path):
    """`mlalign run` hands the trainer typed values (its model, data, seed, recipe stage): they win over the recipe's,
    a user's --train-flag wins over them, and they parse to what the same values as flags parse to."""
    recipe = RECIPES / "qalign-cpu-smoke.yaml"
    values = {"stage": "response", "model_name_or_path": "m", "init_from": "a", "seed": 7, "output_dir": str(tmp_path)}
    qt, args, model_args = sft.parse_args(["--max_steps=3"], recipe, values)
    assert (qt.stage, qt.init_from, qt.response_source, args.seed) == ("response", "a", "gsm8k", 7)  # over stage II's
    assert (model_args.model_name_or_path, args.max_steps, args.save_steps) == ("m", 3, 10)
    flags = ["--config", str(recipe), "--stage", "response", "--model_name_or_path", "m", "--init_from", "a"]
    as_flags = sft.parse_args([*flags, "--seed", "7", "--output_dir", str(tmp_path), "--max_steps=3"])
    assert [asdict(parsed) for parsed in as_flags] == [asdict(parsed) for parsed in (qt, args, model_args)]
    assert sft.parse_args(["--seed=1"], recipe, values)[1].seed == 1  # the user's flag wins
    with pytest.raises(MlalignError, match="bad training arguments: the trainer has no option.s. --no_such"):
        sft.parse_args([], recipe, {"no_such": 1})


def test_dataset_path_overrides_the_data_selection_of_a_recipe(tmp_path):
    data = qt_data.save_build(qt_data.build_qt_dataset("gsm8k", "sw", 4, seed=0), tmp_path / "qt-sw")
    recipe = str(RECIPES / "qwen2.5-1.5b-12gb.yaml")  # names seven languages and 1000 examples each
    qt, args, _ = sft.parse_args(["--config", recipe, "--dataset_path", str(data), "--use_cpu", "true"])
    dataset, info = sft.load_training_data(qt, args.seed)
    assert len(dataset) == 4 and info["languages"] == ["sw"] and info["examples_per_language"] == 4


@pytest.mark.parametrize("fmt", ["plain", "qalign", "chat"])
def test_labels_mask_exactly_the_prompt_and_learn_eos(tiny_model_dir, tmp_path, fmt):
    build = qt_data.build_qt_dataset("gsm8k", "de", 12, seed=0, fmt=fmt)
    trainer = _trainer(tiny_model_dir, tmp_path, build.dataset)
    tok = trainer.processing_class
    assert tok.pad_token_id != tok.eos_token_id
    kept = [raw for raw in build.dataset if sft.sequence_length(raw, tok) <= 384]
    assert 0 < len(kept) < 12  # over-long examples are dropped whole, not truncated
    for raw, row in zip(kept, trainer.train_dataset, strict=True):
        if fmt == "chat":
            prompt_ids = tok.apply_chat_template(raw["prompt"], add_generation_prompt=True, tokenize=True)
            prompt_ids = prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids
        else:
            prompt_ids = tok(raw["prompt"])["input_ids"]
        n = len(prompt_ids)
        ids, labels = row["input_ids"], row["labels"]
        assert ids[:n] == prompt_ids
        assert labels[:n] == [-100] * n  # every prompt token is masked ...
        assert labels[n:] == ids[n:] and -100 not in labels[n:]  # ... and no completion token is
        completion = tok.decode(ids[n:], skip_special_tokens=True)
        expected = raw["completion"] if fmt != "chat" else raw["completion"][0]["content"]
        assert completion.strip() == expected.strip()
        eos_at = len(ids) - 1 if fmt != "chat" else max(i for i, t in enumerate(ids) if t == tok.eos_token_id)
        assert ids[eos_at] == tok.eos_token_id and labels[eos_at] == tok.eos_token_id  # EOS is learned


def test_overfit_lowers_loss_and_lora_grads_survive_mid_training_eval(tiny_model_dir, tmp_path):
    split = _short(tiny_model_dir, "de", 36).train_test_split(test_size=4, seed=0)
    probe = GradProbe()
    trainer = _trainer(
        tiny_model_dir, tmp_path, split["train"], "--max_steps", "24", "--learning_rate", "3e-2",
        "--lora_dropout", "0", "--lora_target_modules", "all-linear", "--lora_modules_to_save", "lm_head",
        "--warmup_steps", "0", "--eval_strategy", "steps", "--eval_steps", "8", "--logging_steps", "1",
        "--save_strategy", "no",
        eval_dataset=split["test"],
    )  # fmt: skip
    # The loss over all 32 training examples, before and after: the same examples both times, so the comparison
    # measures the training, not which micro-batches happened to come first and last (logged per-step losses of
    # 4 examples each vary by 1.5 nats between batches at the start).
    fit_loss = lambda: trainer.evaluate(trainer.train_dataset, metric_key_prefix="fit")["fit_loss"]  # noqa: E731
    before = fit_loss()
    trainer.add_callback(probe)  # added after the fit evaluation, so it counts only the evaluations during training
    trainer.train()
    after = fit_loss()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    assert len(losses) == 24 and len(evals) == 3
    # From about ln(vocabulary) = 6.9 to about 4.8 nats (0.69 of it) on a CPU with AVX512 or without; the limit
    # asks for a drop of more than 1.3 nats, with a margin of over 0.7 nats to what the training reaches.
    assert after < 0.8 * before, (before, after, losses)  # overfits 32 examples clearly
    after_eval = [norm for _, norm, evaluated in probe.steps if evaluated]
    assert len(after_eval) == 16 and min(after_eval) > 1e-4  # LoRA still learns after evaluating


def _one_step(model: Path, out: Path, dataset, *extra: str):
    """A trainer after one SGD step over the whole `dataset` (16 examples: 4 micro-batches of 4).

    SGD, not Adam: Adam's first step is about lr * sign(gradient), which blows up float noise in tiny gradients.
    """
    trainer = _trainer(
        model, out, dataset, "--effective_batch_size", "16", "--max_steps", "1", "--optim", "sgd", "--learning_rate", "1",
        "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--lora_dropout", "0", "--save_strategy", "no",
        *extra,
    )  # fmt: skip
    trainer.train()
    return trainer


def _padding(trainer) -> tuple[int, int]:
    """(padded positions, tokens) over one epoch of the trainer's training batches."""
    pad = tokens = 0
    for batch in trainer.get_train_dataloader():
        # padded batches mark their tokens in the attention mask, padding-free ones delimit them by cu_seq_lens
        real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["cu_seq_lens_q"][-1])
        pad += batch["input_ids"].numel() - real
        tokens += real
    return pad, tokens


def test_length_balanced_and_padding_free_batches_give_the_same_update(tiny_model_dir, tmp_path):
    dataset = _short(tiny_model_dir, "de", 16)
    variants = {
        "random": ("--train_sampling_strategy", "random"),
        "batch_rebalance": (),  # the default
        "padding_free": ("--train_sampling_strategy", "random", "--padding_free", "true"),
    }
    trainers = {name: _one_step(tiny_model_dir, tmp_path / name, dataset, *extra) for name, extra in variants.items()}
    assert trainers["batch_rebalance"].args.train_sampling_strategy == "batch_rebalance"
    lora = {
        name: torch.cat([p.detach().flatten() for n, p in t.model.named_parameters() if "lora_B" in n])
        for name, t in trainers.items()
    }
    assert lora["random"].abs().max() > 1e-4  # the step moved the adapter
    for name in ("batch_rebalance", "padding_free"):
        torch.testing.assert_close(lora[name], lora["random"], rtol=1e-4, atol=1e-8)
    padding = {name: _padding(t) for name, t in trainers.items()}
    assert padding["random"][1] == padding["batch_rebalance"][1] == padding["padding_free"][1]  # the same tokens ...
    assert padding["batch_rebalance"][0] < 0.5 * padding["random"][0]  # ... with far less padding
    assert padding["padding_free"][0] == 0 < padding["batch_rebalance"][0]


def _first_batch_ids(model: Path, out: Path, dataset, seed: int) -> list[list[int]]:
    trainer = _trainer(model, out, dataset, "--effective_batch_size", "8", "--seed", str(seed))
    return next(iter(trainer.get_train_dataloader()))["input_ids"].tolist()


def test_length_balanced_batches_follow_the_seed(tiny_model_dir, tmp_path):
    dataset = _short(tiny_model_dir, "de", 32)
    first = [_first_batch_ids(tiny_model_dir, tmp_path / str(i), dataset, seed) for i, seed in enumerate((1, 1, 2))]
    assert first[0] == first[1] and first[0] != first[2]


class CudnnProbe(TrainerCallback):
    """Records whether PyTorch's cuDNN attention backend is enabled at each step."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.seen.append(torch.backends.cuda.cudnn_sdp_enabled())


@pytest.mark.parametrize("flag", [None, "true"])
def test_cudnn_attention_is_off_while_training_unless_asked_and_restored_after(tiny_model_dir, tmp_path, flag):
    """On an H100 cuDNN attention made QLoRA ~1.2x slower (bench/results): the trainer turns it off, for its run only."""
    probe = CudnnProbe()
    extra = ["--max_steps", "2", "--report_to", "none", *(["--cudnn_attention", flag] if flag else [])]
    trainer = _trainer(tiny_model_dir, tmp_path, _short(tiny_model_dir, "de", 8), *extra, callbacks=[probe])
    torch.backends.cuda.enable_cudnn_sdp(True)  # PyTorch's default
    trainer.train()
    assert probe.seen == [flag == "true"] * 2
    assert torch.backends.cuda.cudnn_sdp_enabled()


def _4bit_model(path: Path, flag: bool | None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.manual_seed(0)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, device_map="cpu")
    if flag is None:
        assert guard_cpu_4bit(model) == 4 * 7  # every Linear4bit of the 4 layers
    else:  # force bitsandbytes' AVX512-BF16 repacking on or off, as on a CPU that has (or lacks) the instructions
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = flag
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False)
    return get_peft_model(model, lora)


def _grads_after(model, evaluate_first: bool, ids: torch.Tensor) -> torch.Tensor:
    if evaluate_first:
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    return _lora_grads(model)


def test_cpu_4bit_guard_keeps_lora_gradients_exact_after_evaluation(tiny_model_dir):
    from bitsandbytes.functional import has_avx512bf16

    ids = torch.randint(8, 1000, (2, 24), generator=torch.Generator().manual_seed(0))
    reference = _grads_after(_4bit_model(tiny_model_dir, False), False, ids)
    guarded = _grads_after(_4bit_model(tiny_model_dir, None), True, ids)
    repacked = _grads_after(_4bit_model(tiny_model_dir, True), True, ids)
    assert reference.abs().max() > 1e-3 and reference.count_nonzero() > reference.numel() // 2
    assert torch.equal(guarded, reference)  # the guard: evaluation leaves the gradients exactly as they were
    # Without it (the control), evaluation repacks the weights for good, and how the damage shows depends on the CPU
    # (bitsandbytes >= 0.49 sends every later matmul of a repacked layer to its gemv_4bit op):
    if has_avx512bf16():
        # bitsandbytes' own AVX512-BF16 kernel for that op has no backward: every repacked layer stops the
        # gradient, and the LoRA layers (all below a repacked o_proj) get none at all.
        assert repacked.count_nonzero() == 0
    else:
        # the generic kernel dequantises the repacked layout as if it were the usual one: wrong gradients.
        assert repacked.abs().max() > 1e-3 and not torch.allclose(repacked, reference, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU 4-bit path")
def test_cpu_4bit_training_with_mid_training_eval(tiny_model_dir, tmp_path):
    from bitsandbytes.nn import Linear4bit

    split = _short(tiny_model_dir, "fr", 12).train_test_split(test_size=4, seed=0)
    probe = GradProbe()
    trainer = _trainer(
        tiny_model_dir, tmp_path, split["train"], "--load_in_4bit", "true", "--max_steps", "4",
        "--learning_rate", "1e-2", "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "no",
        eval_dataset=split["test"], callbacks=[probe],
    )  # fmt: skip
    assert trainer.model.is_loaded_in_4bit
    assert any(isinstance(cb, Avx512Bf16Guard) for cb in trainer.callback_handler.callbacks)
    layers = [m for m in trainer.model.modules() if isinstance(m, Linear4bit)]
    assert len(layers) == 28 and not any(m.support_avx512bf16_for_cpu for m in layers)  # guarded from the start
    trainer.train()
    layers = [m for m in trainer.model.modules() if isinstance(m, Linear4bit)]
    assert len(layers) == 28 and not any(m.support_avx512bf16_for_cpu for m in layers)
    after_eval = [norm for _, norm, evaluated in probe.steps if evaluated]
    assert len(after_eval) == 2 and min(after_eval) > 1e-6


def test_sigint_checkpoints_and_stops(tiny_model_dir, tmp_path):
    class SendSigint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    interrupt = GracefulInterrupt()
    trainer = _trainer(
        tiny_model_dir, tmp_path, _short(tiny_model_dir, "es", 8), "--max_steps", "10", "--save_steps", "100",
        callbacks=[SendSigint(), interrupt],
    )  # fmt: skip
    with interrupt.installed():
        trainer.train()
    assert interrupt.fired and trainer.state.global_step == 3
    assert (tmp_path / "checkpoint-3" / "trainer_state.json").is_file()
    assert resume.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")


def test_last_complete_checkpoint_skips_and_removes_cut_off_saves(tmp_path):
    for step in (4, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    assert resume.last_complete_checkpoint(tmp_path, remove_incomplete=False) is None
    assert resume.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-8").exists()


def _held_after_checkpoint(cmd: list[str], step: int) -> list[str]:
    """`cmd` (`python -m mlalign_tasks.cli train ...`) as a process that stays alive, holding, once its checkpoint at
    `step` is whole: a kill then lands after that checkpoint and before the next however fast the machine runs."""
    hold = (
        "import sys, time\n"
        "from mlalign_trainer.qt_trainer import QTTrainer\n"
        "save = QTTrainer._save_checkpoint\n"
        "def held(self, *args, **kwargs):\n"
        "    save(self, *args, **kwargs)\n"
        f"    if self.state.global_step == {step}:\n"
        "        time.sleep(3600)\n"
        "QTTrainer._save_checkpoint = held\n"
        "sys.argv = ['mlalign', *sys.argv[1:]]\n"
        "from mlalign_tasks.cli import main\nmain()\n"
    )
    return [sys.executable, "-c", hold, *cmd[3:]]


@pytest.fixture(scope="module")
def resumed_run(tiny_model_dir, tmp_path_factory) -> dict:
    """A real `mlalign train` process killed (SIGKILL) after its first checkpoint, then rerun to the end."""
    out = tmp_path_factory.mktemp("resume") / "adapter"
    cmd = [sys.executable, "-m", "mlalign_tasks.cli", "train", *_args(tiny_model_dir, out), *RUN_DATA]
    cmd += ["--max_steps", "24", "--save_steps", "4", "--learning_rate", "1e-2", "--seed", "7"]
    log = out.parent / "first.log"  # a file, not a pipe, so that the held process never blocks on a full pipe
    first = subprocess.Popen(_held_after_checkpoint(cmd, 4), stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + 900
    while not resume._complete(out / "checkpoint-4"):
        assert first.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no checkpoint within 900 s"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = resume.last_complete_checkpoint(out, remove_incomplete=False)
    second = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    return {"out": out, "cmd": cmd, "killed_at": killed_at, "log": second.stdout, "first_rc": first.returncode}


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_planned_steps(resumed_run):
    out, killed_at = resumed_run["out"], resumed_run["killed_at"]
    assert resumed_run["first_rc"] == -signal.SIGKILL
    assert killed_at is not None and int(killed_at.rsplit("-", 1)[1]) < 24
    assert f"resuming from {killed_at}" in resumed_run["log"]
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["global_step"] == 24 and meta["start_step"] == int(killed_at.rsplit("-", 1)[1]) >= 4
    assert meta["resumed_from"] == Path(killed_at).name
    state = json.loads((out / "checkpoint-24" / "trainer_state.json").read_text())
    assert state["global_step"] == state["max_steps"] == 24
    for key in ("base_model", "languages", "examples_per_language", "data_hash", "hyperparameters", "versions"):
        assert key in meta
    assert meta["languages"] == ["de", "fr"] and meta["examples_per_language"] == 16 and meta["seed"] == 7
    assert 0 < meta["dataset_examples"] <= 32 and meta["examples_seen"] == meta["global_step"] * 4
    assert isinstance(meta["final_loss"], float) and meta["versions"]["trl"]


@pytest.mark.slow
def test_rerun_of_finished_run_does_nothing_and_other_settings_are_refused(resumed_run):
    out, cmd = resumed_run["out"], resumed_run["cmd"]
    before = (out / "adapter_model.safetensors").stat().st_mtime_ns
    assert sft.main(cmd[4:]) == 0  # the same arguments, in-process
    assert (out / "adapter_model.safetensors").stat().st_mtime_ns == before
    other = subprocess.run([*cmd, "--learning_rate", "2e-2"], capture_output=True, text=True, env=_env())
    assert other.returncode == 2
    err = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith("error: output directory") and other.stderr.strip().endswith(err[0])
    err = err[0]
    assert "hyperparameters.learning_rate: 0.01 -> 0.02" in err


@pytest.mark.slow
def test_resume_compares_every_setting_and_skips_a_cut_off_trainer_state(tiny_model_dir, tmp_path):
    """Killed (SIGKILL) after its checkpoints at steps 2 and 4: a rerun with settings the comparison once left out
    (rsLoRA, max_grad_norm, Adam's beta2, NEFTune, DoRA) is refused, naming them; with the last checkpoint's
    trainer_state.json cut off, the same command resumes from the checkpoint before it."""
    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "mlalign_tasks.cli", "train", *_args(tiny_model_dir, out), *RUN_DATA]
    cmd += ["--max_steps", "8", "--save_steps", "2", "--save_total_limit", "4"]
    first = subprocess.Popen(
        _held_after_checkpoint(cmd, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    deadline = time.monotonic() + 900
    while not resume._complete(out / "checkpoint-4"):
        assert first.poll() is None and time.monotonic() < deadline, "no second checkpoint"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    changes = [
        (["--use_rslora", "true", "--max_grad_norm", "0.01"], ["use_rslora: False -> True", "max_grad_norm: 1.0 -> 0.01"]),
        (["--adam_beta2", "0.9", "--neftune_noise_alpha", "5"], ["adam_beta2: 0.999 -> 0.9", "neftune_noise_alpha: None -> 5"]),
        (["--use_dora", "true"], ["use_dora: False -> True"]),
    ]  # fmt: skip
    for extra, named in changes:
        with pytest.raises(MlalignError, match="holds a run with other settings") as refused:
            sft.main([*cmd[4:], *extra])
        assert all(f"hyperparameters.{n}" in str(refused.value) for n in named), str(refused.value)
    done = sorted((p for p in out.glob("checkpoint-*") if resume._complete(p)), key=lambda p: int(p.name.split("-")[1]))
    assert len(done) >= 2 and not (out / METADATA_FILE).exists()
    state = done[-1] / "trainer_state.json"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a save cut off by a full disk
    second = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (
        f"resuming from {done[-2]}" in second.stdout and f"removing incomplete checkpoint {done[-1]}" in second.stdout
    )
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["use_rslora"] is False and config["use_dora"] is False
    assert json.loads((out / METADATA_FILE).read_text())["global_step"] == 8


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _train_cmd(model: Path, out: Path, *extra: str) -> list[str]:
    """A real `mlalign train` of the tiny model, saving a checkpoint every 2 steps."""
    mlalign = str(Path(sys.executable).with_name("mlalign"))
    return [mlalign, "train", *_args(model, out), *RUN_DATA, "--save_steps", "2", *extra]


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, newer_than: int = 0) -> int:
    """The step of the first complete checkpoint after `newer_than` that `proc` writes into `out` (it may be the
    newest one already there: the trainer saves in step order)."""
    deadline = time.monotonic() + 900
    while True:
        done = [int(c.name.rsplit("-", 1)[1]) for c in out.glob("checkpoint-*") if resume._complete(c)]
        if done and max(done) > newer_than:
            return max(done)
        assert proc.poll() is None and time.monotonic() < deadline, "no new checkpoint"
        time.sleep(0.02)


@pytest.mark.slow
def test_one_run_at_a_time_in_an_output_dir_and_sigterm_saves_a_checkpoint_to_resume_from(tiny_model_dir, tmp_path):
    """A second `mlalign train` into the output directory of a running one is refused, naming the first's pid, and
    writes nothing; SIGTERM (a scheduler's stop) saves a checkpoint and exits 143, and the rerun resumes from it."""
    out = tmp_path / "adapter"
    cmd = _train_cmd(tiny_model_dir, out, "--max_steps", "100000", "--save_total_limit", "2")
    logs = [tmp_path / "first.log", tmp_path / "third.log"]  # files, not pipes: nothing blocks a long run's output
    first = subprocess.Popen(cmd, stdout=logs[0].open("w"), stderr=subprocess.DEVNULL, env=_env())
    try:
        _wait_for_checkpoint(first, out)
        run_file = (out / RUN_FILE).read_bytes()
        second = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-3000:]
        assert _errors(second.stderr) == [
            f"error: --output_dir {out} is in use by another running process (pid {first.pid}); wait for it to "
            "finish or use another folder"
        ]
        assert "resuming" not in second.stdout and (out / RUN_FILE).read_bytes() == run_file
        assert first.poll() is None  # still training: the refusal came while it held the folder
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=600)
    finally:
        first.kill()
    log = logs[0].read_text()
    assert first.returncode == 128 + signal.SIGTERM, log
    stopped = int(log.split("SIGTERM at step ", 1)[1].split(":", 1)[0])
    assert f"SIGTERM at step {stopped}: checkpoint saved; rerun the same command to resume" in log
    assert resume.last_complete_checkpoint(out, remove_incomplete=False) == str(out / f"checkpoint-{stopped}")
    third = subprocess.Popen(cmd, stdout=logs[1].open("w"), stderr=subprocess.DEVNULL, env=_env())
    try:
        later = _wait_for_checkpoint(third, out, newer_than=stopped)  # training on: the handler is installed
        third.send_signal(signal.SIGTERM)
        third.wait(timeout=600)
    finally:
        third.kill()
    log = logs[1].read_text()
    assert third.returncode == 143 and f"resuming from {out / f'checkpoint-{stopped}'}" in log, log
    again = int(log.split("SIGTERM at step ", 1)[1].split(":", 1)[0])
    assert again >= later > stopped
    assert resume.last_complete_checkpoint(out, remove_incomplete=False) == str(out / f"checkpoint-{again}")
    state = json.loads((out / f"checkpoint-{again}" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == list(range(1, again + 1))


@pytest.mark.slow
def test_resume_refuses_another_model_at_the_same_path(tiny_model_dir, tmp_path):
    """A base model rebuilt at the same path (other weights) is another model: the rerun is refused, naming both
    by their content, and touches nothing; with the original model back at the path it resumes."""
    from mlalign_tasks.models.model_identity import identify
    from mlalign_tasks.models.tiny_model import build_tiny_model

    base = build_tiny_model(tmp_path / "base")
    out = tmp_path / "adapter"
    cmd = _train_cmd(base, out, "--max_steps", "12")
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    _wait_for_checkpoint(first, out)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = resume.last_complete_checkpoint(out, remove_incomplete=False)
    before = sorted((p.relative_to(out).as_posix(), p.stat().st_mtime_ns) for p in out.rglob("*"))
    original = identify(base).sha256
    build_tiny_model(base, seed=5)
    other = identify(base).sha256
    refused = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert _errors(refused.stderr) == [
        f"error: output directory {out} holds a run of the model {base} (sha256 {original[:16]}), and {base} (sha256 "
        f"{other[:16]}) is another model; give the run's model to resume it, or choose a new --output_dir"
    ]
    assert sorted((p.relative_to(out).as_posix(), p.stat().st_mtime_ns) for p in out.rglob("*")) == before
    build_tiny_model(base)  # the original weights again, in new files
    resumed = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert resumed.returncode == 0 and f"resuming from {killed_at}" in resumed.stdout, resumed.stderr[-3000:]
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["model_sha256"] == original and meta["global_step"] == 12


def test_model_identity_hashes_each_file_once_while_its_stat_holds(tmp_path):
    from mlalign_tasks.models.model_identity import identify

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "pytorch_model.bin").write_bytes(b"the same weights, which transformers does not load")
    (model / "README.md").write_text("not part of the model")
    first = identify(model)
    assert sorted(first.files) == ["config.json", "model.safetensors"]
    assert identify(model, first.files) == first and identify(str(model)) == first
    planted = {name: {**record, "sha256": "0" * 64} for name, record in first.files.items()}
    assert identify(model, planted).sha256 != first.sha256  # a recorded hash is reused while the stat holds ...
    weights = model / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    weights.write_bytes(b"WEIGHTS")  # ... and a rewrite at the same size and modification time is hashed again
    os.utime(weights, ns=(mtime, mtime))
    assert identify(model, planted).files["model.safetensors"]["sha256"] != "0" * 64
    assert identify(model).sha256 != first.sha256
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    assert identify(gguf).sha256 == hashlib.sha256(b"GGUF").hexdigest()  # a single-file model: its own sha256
    assert identify(tmp_path / "missing") is None and identify("org/hub-model") is None


def test_what_an_answer_depends_on_is_every_file_of_a_model_folder_or_a_hub_ids_cached_snapshot(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from mlalign_tasks.models.model_identity import identify, local_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = tmp_path / "hub" / "models--org--hub-model" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    for name, text in (("config.json", "{}"), ("model.safetensors", "weights"), ("tokenizer.json", "{}")):
        (snapshot / name).write_text(text)
    assert local_model("org/hub-model") == snapshot and local_model("org/not-cached") is None
    assert local_model(snapshot) == snapshot
    whole = identify(snapshot, every_file=True)
    assert sorted(whole.files) == ["config.json", "model.safetensors", "tokenizer.json"]
    lines = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(snapshot.iterdir()))
    assert whole.sha256 == hashlib.sha256(lines.encode()).hexdigest()  # as `sha256sum *` lists them
    (snapshot / "tokenizer.json").write_text('{"added": 1}')
    assert identify(snapshot, every_file=True).sha256 != whole.sha256  # a changed tokenizer changes the answers
    assert sorted(identify(snapshot).files) == ["config.json", "model.safetensors"]  # a training's base: unchanged


@pytest.mark.slow
@pytest.mark.parametrize(("limit", "writer"), [(40_000, "SafetensorError"), (100_000, "torch.save")])
def test_a_checkpoint_save_that_cannot_write_is_one_error_and_leaves_no_checkpoint(
    tiny_model_dir, tmp_path, limit, writer
):
    """A full disk, simulated by a file-size limit (writes fail with EFBIG): the checkpoint-2 save fails in the
    adapter's safetensors file (59 kB, over 40 kB) or in torch.save's optimizer.pt (129 kB, over 100 kB). One error
    line, no half-written checkpoint; the rerun (with room) finds nothing to resume and trains to the end."""
    import resource

    def file_size_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "adapter"
    cmd = _train_cmd(tiny_model_dir, out, "--max_steps", "4")
    full = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900, preexec_fn=file_size_limit)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-3000:]
    (error,) = _errors(full.stderr)
    assert error.startswith(f"error: cannot save checkpoint-2 in {out} (") and error.endswith(
        "); nothing of it is kept: free some space and rerun the same command, which resumes from the last complete "
        "checkpoint"
    )
    assert ("File too large" in error) == (writer == "SafetensorError")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", RUN_FILE]  # the model card, the run's settings
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert rerun.returncode == 0 and "resuming" not in rerun.stdout and "incomplete" not in rerun.stdout, rerun.stderr
    assert json.loads((out / METADATA_FILE).read_text())["global_step"] == 4


@pytest.mark.slow
def test_adapter_changes_loglikelihoods_and_loads_in_lm_eval(resumed_run, tiny_model_dir):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    adapter = resumed_run["out"]
    request = ("Wie viele Äpfel hat Anna?\nTranslate the input from German to English:\n", "How many apples")
    scores = {}
    for name, extra in (("base", {}), ("tuned", {"peft": str(adapter)})):
        lm = HFLM(pretrained=str(tiny_model_dir), device="cpu", batch_size=1, **extra)
        inst = Instance(request_type="loglikelihood", doc={}, arguments=request, idx=0)
        scores[name] = lm.loglikelihood([inst], disable_tqdm=True)[0][0]
    assert abs(scores["tuned"] - scores["base"]) > 1e-2, scores


@pytest.mark.slow
def test_merge_writes_a_full_model_equal_to_base_plus_adapter(resumed_run, tiny_model_dir, tmp_path):
    from mlalign_trainer.merge import merge_adapter
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = resumed_run["out"]
    merged_dir = merge_adapter(adapter, tmp_path / "merged")
    ids = torch.randint(8, 1000, (1, 16), generator=torch.Generator().manual_seed(1))
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        got, want, orig = (m.eval()(input_ids=ids).logits for m in (merged, peft_model, base))
    assert torch.allclose(got, want, atol=1e-4) and not torch.allclose(got, orig, atol=1e-3)
    assert json.loads((merged_dir / METADATA_FILE).read_text())["merged_from_adapter"] == str(adapter.resolve())
    with pytest.raises(MlalignError, match="not empty"):
        merge_adapter(adapter, merged_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_accelerate_ddp_on_cpu(tiny_model_dir, tmp_path):
    out = tmp_path / "ddp"
    accelerate = Path(sys.executable).with_name("accelerate")
    # The documented command: shipped accelerate config and recipe by name (the tiny model's path given).
    cmd = [
        str(accelerate), "launch", "--config_file", str(recipes.config_path("cpu_ddp")),
        "--main_process_port", str(_free_port()), "-m", "mlalign_trainer.sft", "--config", "cpu-smoke",
        "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--examples_per_language", "16",
        "--max_length", "384", "--max_steps", "3", "--save_steps", "3",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    meta = json.loads((out / METADATA_FILE).read_text())
    hp = meta["hyperparameters"]
    assert (hp["world_size"], hp["gradient_accumulation_steps"], hp["effective_batch_size"]) == (2, 1, 4)
    assert meta["global_step"] == 3 and (out / "adapter_model.safetensors").is_file()
    assert run.stdout.count("adapter written to") == 1  # only the main process writes
    # The same effective batches in one process (2 x 2 accumulation): the final loss is the batch's, not one
    # process's share (3 steps < the recipe's logging_steps, so the last step is logged on purpose).
    args = cmd[cmd.index("--config") :]
    args[args.index("--output_dir") + 1] = str(tmp_path / "single")
    assert sft.main(args) == 0
    single = json.loads((tmp_path / "single" / METADATA_FILE).read_text())
    assert single["hyperparameters"]["gradient_accumulation_steps"] == 2
    assert meta["final_loss"] == pytest.approx(single["final_loss"], abs=1e-3)


def test_zhang2024_recipe_is_the_papers_llama_factory_setup():
    """Every setting PROTOCOLS.md states for the paper's training, as the recipe `zhang2024` parses."""
    qt, args, model_args = sft.parse_args(["--config", "zhang2024"])
    sft.apply_batch_size(qt, args)
    assert model_args.use_peft and model_args.lora_target_modules == ["q_proj", "v_proj"]
    assert (model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout) == (8, 16, 0.0)
    assert args.fp16 and not args.bf16 and model_args.dtype == "float16" and not model_args.load_in_4bit
    assert (args.learning_rate, args.num_train_epochs, args.lr_scheduler_type, args.warmup_steps) == (
        5e-5,
        3,
        "cosine",
        0.1,
    )
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 4)  # one process: 4 x 4 = 16
    assert (args.max_length, qt.overlong) == (2048, "truncate")
    assert (qt.val_size, args.eval_strategy, args.eval_steps) == (0.05, "steps", 50)
    assert not args.load_best_model_at_end  # upstream saves no checkpoint, so its final weights are the model
    assert qt.prompt_format == "plain" and not qt.clean_pairs and qt.examples_per_language is None
    assert (qt.qt_source, qt.languages) == ("sentiment", "sw,hi")  # the published Qwen1.5-4B model's data
    assert sft.parse_args(["--config", "zhang2024", "--load_in_4bit", "true"])[2].load_in_4bit  # 4-bit: opt-in


def test_qalign_recipe_stage_one_is_qaligns_setup():
    """Every setting PROTOCOLS.md states for QAlign's stage I, as the recipe `qalign` parses."""
    qt, args, model_args = sft.parse_args(["--config", "qalign", "--stage", "question"])
    sft.apply_batch_size(qt, args)
    assert not model_args.use_peft and not model_args.load_in_4bit and args.bf16  # full fine-tuning in bf16
    assert (args.learning_rate, args.num_train_epochs, args.lr_scheduler_type, args.warmup_steps) == (
        2e-5,
        3,
        "cosine",
        0.03,
    )
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 128 and args.weight_decay == 0
    assert (args.max_length, qt.overlong, args.seed) == (512, "truncate", 1234)
    assert qt.prompt_format == "qalign" and qt.qt_source == "gsm8k" and not qt.clean_pairs
    assert qt.languages.split(",") == ["bn", "de", "es", "fr", "ja", "ru", "sw", "th", "zh"]


@pytest.mark.slow
def test_validation_split_and_best_checkpoint_of_the_zhang2024_recipe(tiny_model_dir, tmp_path):
    """The recipe's run (fp16, truncation, 5% held out) on the tiny model with the best checkpoint kept (not the
    recipe's default, which keeps the final weights as upstream): the kept checkpoint is the written one.

    With `--greater_is_better true` the highest evaluation loss counts as best: the loss falls as the model trains,
    so the kept checkpoint is an early one, not the last, and the adapter written must be that checkpoint's.
    """
    from safetensors.torch import load_file

    out = tmp_path / "zhang2024"
    argv = [
        "--config", "zhang2024", "--use_cpu", "true", "--model_name_or_path", str(tiny_model_dir), "--output_dir",
        str(out), "--qt_source", "snli", "--languages", "zh,de", "--examples_per_language", "40", "--max_steps", "6", "--eval_steps", "2", "--save_steps", "2",
        "--effective_batch_size", "4", "--learning_rate", "5e-2", "--lr_scheduler_type", "constant",
        "--warmup_steps", "0", "--greater_is_better", "true", "--load_best_model_at_end", "true",
        "--metric_for_best_model", "eval_loss",
    ]  # fmt: skip
    assert sft.main(argv) == 0
    meta = json.loads((out / METADATA_FILE).read_text())
    assert (meta["eval_examples"], meta["dataset_examples"]) == (4, 76)  # 5% of 2 x 40 pairs held out
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    evals = {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}
    assert sorted(evals) == [2, 4, 6]  # evaluated every eval_steps
    best_step = max(evals, key=evals.get)
    assert best_step != 6, evals
    assert meta["best_checkpoint"] == f"checkpoint-{best_step}" and meta["best_metric"] == pytest.approx(
        evals[best_step]
    )
    assert sorted(p.name for p in out.glob("checkpoint-*")) == sorted({f"checkpoint-{best_step}", "checkpoint-6"})
    written = load_file(out / "adapter_model.safetensors")
    kept, last = (
        load_file(out / name / "adapter_model.safetensors") for name in (meta["best_checkpoint"], "checkpoint-6")
    )
    assert written.keys() == kept.keys()
    assert all(torch.equal(written[k], kept[k]) for k in written)
    assert not all(torch.equal(written[k], last[k]) for k in written)
    assert meta["hyperparameters"]["fp16"] and meta["data_source"]["clean"] is False


def test_overlong_examples_are_dropped_or_truncated(tiny_model_dir, tmp_path):
    dataset = qt_data.build_qt_dataset("gsm8k", "de", 12, seed=0).dataset
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lengths = [sft.sequence_length(row, tok) for row in dataset]
    limit = max(len(tok(row["prompt"])["input_ids"]) for row in dataset) + 8  # every prompt fits, not every answer
    assert 0 < sum(n > limit for n in lengths) < 12
    dropped = _trainer(tiny_model_dir, tmp_path / "d", dataset, "--max_length", str(limit))
    cut = _trainer(tiny_model_dir, tmp_path / "t", dataset, "--max_length", str(limit), "--overlong", "truncate")
    assert len(dropped.train_dataset) == sum(n <= limit for n in lengths) < len(cut.train_dataset) == 12
    for raw, row in zip(dataset, cut.train_dataset, strict=True):
        full = tok(raw["prompt"] + raw["completion"])["input_ids"] + [tok.eos_token_id]
        assert row["input_ids"] == full[:limit]  # the end is cut off (and with it the EOS of a long example)
    with pytest.raises(MlalignError, match="--overlong truncate: TRL does not truncate padding-free rows"):
        _trainer(tiny_model_dir, tmp_path / "p", dataset, "--overlong", "truncate", "--padding_free", "true")


def test_target_language_is_trained_recorded_and_seen(tiny_model_dir, tmp_path):
    out = tmp_path / "to-zh"
    argv = [
        "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), *SMALL, "--languages", "de,en",
        "--target_language", "zh", "--examples_per_language", "4", "--max_steps", "1", "--save_strategy", "no",
    ]  # fmt: skip
    assert sft.main(argv) == 0
    meta = json.loads((out / METADATA_FILE).read_text())
    assert (meta["languages"], meta["target_language"], meta["seen_languages"]) == (["de", "en"], "zh", ["de", "zh"])
    assert meta["stages"][0]["target_language"] == "zh"
    with pytest.raises(MlalignError, match="target_language: 'zh' -> 'fr'"):  # another target is another run
        sft.main([*argv[:-8], "--target_language", "fr", "--examples_per_language", "4", "--max_steps", "1"])
    with pytest.raises(MlalignError, match="unknown --target_language code 'xx'"):
        sft.parse_args([*argv, "--target_language", "xx"])


def test_relative_base_path_is_recorded_absolute_and_short_runs_keep_their_loss(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    out = tmp_path / "rel"
    argv = [
        "--model_name_or_path", tiny_model_dir.name, "--output_dir", str(out), *SMALL, "--languages", "de",
        "--examples_per_language", "4", "--max_steps", "1", "--save_strategy", "no",
    ]  # fmt: skip
    assert sft.main(argv) == 0
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    meta = json.loads((out / METADATA_FILE).read_text())
    assert base == meta["base_model"] == str(tiny_model_dir.resolve())  # usable from any working directory
    assert meta["final_loss"] is not None and meta["final_loss"] > 0  # 1 step < logging_steps: the run's mean loss


def test_bad_inputs(tiny_model_dir, tmp_path):
    base = ["--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(UnknownLanguageError, match="no gsm8k question translations for it"):
        sft.main([*base, "--languages", "de,it"])
    with pytest.raises(MlalignError, match="no training data"):
        sft.main(base)
    with pytest.raises(DataError, match="data file paper_tasks/ap_emotion/emotion_swhi10k_question.json not found"):
        sft.main([*base, "--qt_source", "sentiment", "--mixture", "swhi"])  # the paper's mixture; offline here
    with pytest.raises(MlalignError, match="not a multiple of per-device batch 3"):
        sft.main([*base, "--languages", "de", "--per_device_train_batch_size", "3"])
    with pytest.raises(MlalignError, match="needs --val_size"):
        sft.main([*base, "--languages", "de", "--examples_per_language", "8", "--eval_strategy", "steps"])
    with pytest.raises(MlalignError, match="--val_size 4.0 holds out examples for evaluation: give --eval_strategy"):
        sft.main([*base, "--languages", "de", "--examples_per_language", "8", "--val_size", "4"])
    with pytest.raises(MlalignError, match="--val_size 8.0 of 8 examples"):
        sft.main(
            [*base, "--languages", "de", "--examples_per_language", "8", "--val_size", "8", "--eval_strategy", "steps"]
        )
    with pytest.raises(MlalignError, match="--val_size 2.5: give a share"):
        sft.parse_args([*base, "--val_size", "2.5"])
    (tmp_path / "bad-choice.yaml").write_text("overlong: cut\n")  # a recipe's value is checked as a flag's is
    with pytest.raises(MlalignError, match="--overlong 'cut': choose one of drop, truncate"):
        sft.parse_args(["--config", str(tmp_path / "bad-choice.yaml")])
    (tmp_path / "unknown.yaml").write_text("lora_rank: 8\n")
    with pytest.raises(MlalignError, match="recipe .*unknown.yaml sets flags the trainer does not have: --lora_rank"):
        sft.parse_args(["--config", str(tmp_path / "unknown.yaml")])
    with pytest.raises(MlalignError, match="nothing to train"):
        sft.main([*base, "--languages", "de", "--num_train_epochs", "0"])
    with pytest.raises(MlalignError, match="no base model"):
        sft.main(["--output_dir", str(tmp_path / "o"), "--languages", "de"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for not_a_run in (foreign, foreign / "notes.txt"):
        with pytest.raises(MlalignError, match="holds no mlalign training run"):
            sft.main([*base[:2], "--output_dir", str(not_a_run), "--languages", "de", "--examples_per_language", "4"])
    with pytest.raises(MlalignError, match=f"--model_name_or_path {tmp_path / 'missing'} does not exist; pass a model"):
        sft.main(["--model_name_or_path", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "m"),
                  "--languages", "de", "--examples_per_language", "4"])  # fmt: skip
    (tmp_path / "no-tokenizer").mkdir()
    (tmp_path / "no-tokenizer" / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())
    with pytest.raises(MlalignError, match="cannot load the tokenizer of"):
        sft.main(["--model_name_or_path", str(tmp_path / "no-tokenizer"), "--output_dir", str(tmp_path / "m"),
                  "--languages", "de", "--examples_per_language", "4"])  # fmt: skip
    assert not (tmp_path / "o").exists() and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(MlalignError, match="missing.yaml' is neither a file nor a shipped recipe"):
        sft.main(["--config", str(tmp_path / "missing.yaml")])
    (tmp_path / "broken.yaml").write_text("learning_rate: [1\n")
    with pytest.raises(
        MlalignError, match=r"broken.yaml is not valid YAML: expected ',' or '\]'.* \(line 2, column 1\)$"
    ):
        sft.main(["--config", str(tmp_path / "broken.yaml")])
    small = [*base, "--languages", "de", "--examples_per_language", "4"]
    with pytest.raises(MlalignError, match="cannot load model .*attn_implementation"):
        sft.main([*small, "--attn_implementation", "no-such-kernel"])
    with pytest.raises(MlalignError, match="the trainer refused the settings: .*assistant_only_loss"):
        sft.main([*small, "--assistant_only_loss", "true"])  # plain prompts have no assistant turn
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "m" / RUN_FILE).exists()  # nothing recorded for a run that never started


def test_train_help_starts_without_the_bitsandbytes_kernels_notice():
    """``mlalign train --help`` prints its usage and nothing of bitsandbytes' optional-kernel notice."""
    from bitsandbytes.functional import has_avx512bf16

    run = subprocess.run(
        [str(Path(sys.executable).with_name("mlalign")), "train", "--help"],
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.startswith("usage: mlalign train"), run.stdout + run.stderr
    assert KERNELS_NOTICE not in run.stdout + run.stderr
    assert run.stderr == ""
    # The control: where bitsandbytes does say it (an AVX512-BF16 CPU without the optional `kernels` package),
    # importing it without mlalign first shows the notice, word for word as the filter expects it.
    kernels_missing = subprocess.run([sys.executable, "-c", "import kernels"], capture_output=True).returncode != 0
    if has_avx512bf16() and kernels_missing:
        bare = subprocess.run([sys.executable, "-c", "import bitsandbytes"], capture_output=True, text=True, env=_env())
        assert f"{KERNELS_NOTICE}: No module named 'kernels'" in bare.stderr


def test_the_quiet_filter_drops_only_the_missing_kernels_package_notice(caplog):
    logger = logging.getLogger(BNB_CPU_LOGGER)  # the filter is installed by importing mlalign_tasks
    notice = KERNELS_NOTICE + ": %s. Please make sure you already `pip install kernels` and the kernels >= 0.11.1"
    with caplog.at_level(logging.WARNING, logger=BNB_CPU_LOGGER):
        logger.warning(notice, ModuleNotFoundError("No module named 'kernels'", name="kernels"))  # dropped
        logger.warning(notice, ModuleNotFoundError("No module named 'hub_kit'", name="hub_kit"))  # kernels broken
        logger.warning(notice, OSError("cannot reach the Hub"))  # kernels installed, the download failed
        logger.warning("Input type into Linear4bit is torch.float16 ...")  # any other bitsandbytes message
    assert [r.getMessage().split(".")[0] for r in caplog.records] == [
        f"{KERNELS_NOTICE}: No module named 'hub_kit'",
        f"{KERNELS_NOTICE}: cannot reach the Hub",
        "Input type into Linear4bit is torch",
    ]


def test_deep_run_files_and_an_adapter_without_weights_are_one_line_errors(tiny_model_dir, tmp_path):
    """100 000-deep JSON in a run's mlalign_run.json or a checkpoint's trainer_state.json, and `merge --adapter` given
    an absolute path to a folder holding adapter_config.json but no weights: one line each; nothing removed."""
    from mlalign_trainer.resume import check_run_dir
    from typer.testing import CliRunner

    from mlalign_tasks.cli import app

    deep = "[" * 100_000 + "]" * 100_000
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_FILE).write_text(deep)
    with pytest.raises(MlalignError, match=f"cannot read {out / RUN_FILE} \\(its JSON nests too deeply\\)") as e:
        check_run_dir(out, {"learning_rate": 1e-4})
    assert "\n" not in str(e.value)
    (out / RUN_FILE).write_text("[1, 2]")
    with pytest.raises(MlalignError, match=r"\(a JSON list, not an object\)"):
        check_run_dir(out, {"learning_rate": 1e-4})
    for step, state in ((2, "{}"), (4, deep)):
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    with pytest.raises(MlalignError, match="checkpoint-4/trainer_state.json nests its JSON too deeply .* move"):
        resume.last_complete_checkpoint(out)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_model_dir), "peft_type": "LORA"})
    )
    result = CliRunner().invoke(app, ["merge", "--adapter", str(adapter.resolve()), "--out", str(tmp_path / "m")])
    assert isinstance(result.exception, MlalignError), result.output
    assert "holds adapter_config.json but no adapter weights" in str(result.exception)
    assert not (tmp_path / "m").exists()

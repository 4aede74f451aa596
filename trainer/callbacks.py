"""Trainer callbacks: the bitsandbytes AVX512-BF16 guard, a graceful SIGINT or SIGTERM (checkpoint, then stop), a
last-step log."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from transformers import TrainerCallback


def guard_cpu_4bit(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for AVX512-BF16 CPU inference; returns the layers guarded.

    On such CPUs a no-grad forward (evaluation) of a ``Linear4bit`` repacks its weight, for good, into an
    inference-only layout. From then on (bitsandbytes >= 0.49) every forward of the layer, in training too, runs
    bitsandbytes' AVX512-BF16 CPU kernel, which has no backward: the layer passes no gradient back and the LoRA
    layers below it get none, silently (on a CPU without the instructions, forced repacking dequantises the new
    layout as if it were the old one and the gradients are wrong instead).
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


class Avx512Bf16Guard(TrainerCallback):
    """Apply `guard_cpu_4bit` to the model as the Trainer is built and again as training begins.

    So no evaluation repacks the weights first: neither one during training nor a ``trainer.evaluate()`` before
    ``train()``; the second call also covers a model that ``model_init`` builds inside ``train()``.
    """

    def on_init_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            guard_cpu_4bit(model)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            guard_cpu_4bit(model)


class GracefulInterrupt(TrainerCallback):
    """On SIGINT (Ctrl-C) or SIGTERM (what schedulers send before they kill a job), finish the current step, save a
    checkpoint and stop (single process only); `signum` is the signal that stopped it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signum: int | None = None

    @property
    def fired(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.fired:  # a second signal stops at once
            raise KeyboardInterrupt
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Install the handler of both signals for the duration of training."""
        if not self.enabled:
            yield
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_step_end(self, args, state, control, **kwargs):
        if self.fired:
            control.should_save = True
            control.should_training_stop = True
        return control


class LogLastStep(TrainerCallback):
    """Log at the last step too, so the run's final loss is a logged one: averaged over all processes.

    Without it a run whose last step is not a logging step ends with only the Trainer's ``train_loss``, which
    under DDP is the main process's own share of the loss, not the loss of the batch.
    """

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True
        return control

"""lm-eval's Hugging Face model as mlalign runs it: a `--batch-size auto` that is safe on every device.

lm-eval's `auto` runs five forward passes of 64 sequences as long as the model's whole context (16384 positions
for the tiny model, 32768 for Qwen2.5) and halves the batch until one fits in memory. On a GPU that sizes batches
for sequences far longer than any prompt here; on a CPU memory never runs out, so it only grinds (minutes, many
GB, Ctrl-C unheard until a pass ends). Here the probe is as long as the requests need (their longest prompt plus
the new tokens a generation may add), and on a CPU `auto` is a fixed batch size.
"""

from __future__ import annotations

from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import normalize_gen_kwargs

from mlalign_tasks.runtime.progress import console

CPU_AUTO_BATCH = 8  # `--batch-size auto` on a CPU


class MlalignLM(HFLM):
    """HFLM whose automatic batch size probes only the lengths its requests need, and on a CPU is fixed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._probe_length: int | None = None  # the longest sequence of the pending generations
        self._told = False

    def auto_batch_size(self, length: int) -> int:
        """What `auto` stands for with sequences of `length` tokens: CPU_AUTO_BATCH on a CPU, else `probe_batch_size`."""
        if self.device.type != "cpu":
            return self.probe_batch_size(length)
        if not self._told:
            console.print(f"--batch-size auto on the CPU: batches of {CPU_AUTO_BATCH} (the search sizes GPU memory)")
            self._told = True
        return CPU_AUTO_BATCH

    def probe_batch_size(self, length: int) -> int:
        """lm-eval's search (from `max_batch_size`, halved until five forward passes fit) at `length` tokens, at most
        the model's context."""
        saved, self._max_length = self._max_length, max(1, min(length, self.max_length))
        try:
            return super()._detect_batch_size()
        finally:
            self._max_length = saved

    def _detect_batch_size(self, requests=None, pos: int = 0) -> int:
        if requests:  # log-likelihoods: lm-eval probes the longest request, as long as it is
            _, context, continuation = requests[pos]
            return self.auto_batch_size(len(context) + len(continuation))
        return self.auto_batch_size(self._probe_length or self.max_length)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        if self.batch_size == "auto" and requests:
            self._probe_length = max(
                len(self.tok_encode(context)) + normalize_gen_kwargs(dict(kwargs), self.max_gen_toks)["max_gen_toks"]
                for context, kwargs in (r.args for r in requests)
            )
        return super().generate_until(requests, disable_tqdm)

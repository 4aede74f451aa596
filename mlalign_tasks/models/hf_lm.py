"""lm-eval's Hugging Face model as mlalign runs it: a `--batch-size auto` that is safe on every device.

lm-eval's `auto` runs five forward passes of 64 sequences as long as the model's whole context (16384 positions
for the tiny model, 32768 for Qwen2.5) and halves the batch until one fits in memory. On a GPU that sizes batches
for sequences far longer than any prompt here; on a CPU memory never runs out, so it only grinds (minutes, many
GB, Ctrl-C unheard until a pass ends). Here the probe is as long as the requests need (their longest prompt plus
the new tokens a generation may add), and on a CPU `auto` is a fixed batch size.

With lm-eval's request cache (mlalign_tasks.pipeline.request_cache) the answers of a batch are kept all at once, when
the next batch starts or the call ends (`BatchAnswers`): an interruption never leaves part of a batch kept, so that
a rerun, which batches only the requests with no answer yet, forms the batches of the interrupted run again, and its
answers are the same to the last bit (padding to another batch's length shifts float rounding).
"""

from __future__ import annotations

from lm_eval.api.model import CacheHook, hash_args
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import normalize_gen_kwargs

from mlalign_tasks.runtime.progress import console

CPU_AUTO_BATCH = 8  # `--batch-size auto` on a CPU


class BatchAnswers(CacheHook):
    """lm-eval's cache hook holding the answers it is given until `flush` writes them in one statement (atomic)."""

    def __init__(self, hook: CacheHook) -> None:
        self.dbdict = hook.dbdict
        self.pending: dict[str, object] = {}

    def add_partial(self, attr: str, req, res) -> None:
        if self.dbdict is not None:
            self.pending[hash_args(attr, req)] = res

    def flush(self) -> None:
        """Write the held answers into the cache, all or none of them."""
        if not self.pending:
            return
        db = self.dbdict
        rows = [value for key, res in self.pending.items() for value in (db.encode_key(key), db.encode(res))]
        places = ",".join(["(?,?)"] * len(self.pending))
        db.conn.execute(f'REPLACE INTO "{db.tablename}" (key, value) VALUES {places}', rows)
        db.commit()  # waits until written
        self.pending = {}


class MlalignLM(HFLM):
    """HFLM whose automatic batch size probes only the lengths its requests need, and on a CPU is fixed; with a
    request cache, it keeps each batch's answers at once (`BatchAnswers`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._probe_length: int | None = None  # the longest sequence of the pending generations
        self._told = False
        self.set_cache_hook(self.cache_hook)

    def set_cache_hook(self, cache_hook: CacheHook) -> None:
        super().set_cache_hook(BatchAnswers(cache_hook))

    def _model_call(self, *args, **kwargs):
        self.cache_hook.flush()  # the batch before this one is whole
        return super()._model_call(*args, **kwargs)

    def _model_generate(self, *args, **kwargs):
        self.cache_hook.flush()
        return super()._model_generate(*args, **kwargs)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        answers = super().loglikelihood(requests, disable_tqdm)
        self.cache_hook.flush()
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        answers = super().loglikelihood_rolling(requests, disable_tqdm)
        self.cache_hook.flush()
        return answers

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
        answers = super().generate_until(requests, disable_tqdm)
        self.cache_hook.flush()
        return answers

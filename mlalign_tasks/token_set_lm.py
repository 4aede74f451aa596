"""lm-eval's HF model with the papers' label scoring (`mlalign eval --label-scoring paper`).

For the tasks it is given token sets for, a log-likelihood request (prompt, label word) is answered with
``log(sum of p(t | prompt) over the label's token set t)``: the prompt is encoded with the tokenizer's defaults
(BOS where the tokenizer adds it, as ``tokenizer(prompt)`` in the papers' scripts), run through the model once
for all its labels, and the softmax (float32) is taken at its last position. Every other request goes to HFLM.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from mlalign_tasks.hf_lm import MlalignLM
from mlalign_tasks.progress import StepProgress


def label_log_probs(logits: torch.Tensor, sets: list[list[int]]) -> list[tuple[float, bool]]:
    """For each token set: log of its summed probability under softmax(`logits`) (float32; -inf when 0), and
    whether the most probable token is in it (lm-eval's "is greedy")."""
    probs = logits.float().softmax(-1)
    top = int(probs.argmax())
    out = []
    for ids in sets:
        total = float(probs[ids].double().sum())
        out.append((math.log(total) if total > 0 else -math.inf, top in ids))
    return out


class TokenSetLM(MlalignLM):
    """HFLM whose log-likelihoods for the tasks in `token_sets` (task -> label word -> ids) are token-set sums."""

    def __init__(self, *args, token_sets: dict[str, dict[str, list[int]]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.token_sets = token_sets

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        mine = {i for i, r in enumerate(requests) if r.task_name in self.token_sets}
        others = [i for i in range(len(requests)) if i not in mine]
        if not mine:
            return super().loglikelihood(requests, disable_tqdm)
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        if others:
            for i, res in zip(others, super().loglikelihood([requests[i] for i in others], disable_tqdm), strict=True):
                out[i] = res
        by_context: dict[str, list[int]] = {}
        for i in sorted(mine):
            by_context.setdefault(requests[i].args[0], []).append(i)
        with StepProgress("scoring labels (token sets)", len(by_context), "prompts") as progress:
            for context, logits in self.next_token_logits(list(by_context)):
                sets = [self.token_sets[requests[i].task_name][requests[i].args[1]] for i in by_context[context]]
                for i, score in zip(by_context[context], label_log_probs(logits, sets), strict=True):
                    out[i] = score
                progress.advance()
        return out

    def next_token_logits(self, contexts: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """(context, the model's next-token logits after it) for each context, one forward per context.

        Contexts are batched (longest first, left padded, explicit position ids) by the model's batch size (`auto`:
        the largest that fits the longest context).
        """
        ids = {c: self.tokenizer(c)["input_ids"] for c in contexts}
        order = sorted(ids, key=lambda c: -len(ids[c]))
        size = self.batch_size if isinstance(self.batch_size, int) else self.auto_batch_size(len(ids[order[0]]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            width = max(len(ids[c]) for c in batch)
            input_ids = torch.tensor([[pad] * (width - len(ids[c])) + ids[c] for c in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(ids[c])) + [1] * len(ids[c]) for c in batch], device=self.device)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    logits_to_keep=1,
                ).logits[:, -1]
            yield from zip(batch, logits, strict=True)

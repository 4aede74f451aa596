"""lm-eval's HF model with the papers' label scoring (`mlalign eval --label-scoring paper`).

For the tasks it is given token sets for, a log-likelihood request (prompt, label word) is answered with
``log(sum of p(t | prompt) over the label's token set t)``: the prompt is encoded with the tokenizer's defaults
(BOS where the tokenizer adds it, as ``tokenizer(prompt)`` in the papers' scripts), followed by the task's `tail`
ids if it has one, run through the model once for all its labels, and the softmax (float32) is taken at its last
position. Every other request goes to HFLM.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mlalign_tasks.models.hf_lm import MlalignLM
from mlalign_tasks.runtime.progress import StepProgress


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


@dataclass(frozen=True)
class TaskTokenSets:
    """What `TokenSetLM` scores in one task: each label word's token ids (`labels`), summed after the prompt's ids
    followed by `tail` (token ids appended after encoding the prompt, as the papers' Thai native-label case does)."""

    labels: dict[str, list[int]]
    tail: tuple[int, ...] = ()


# a prompt as scored: its text and the ids appended after encoding it
Prompt = tuple[str, tuple[int, ...]]


class TokenSetLM(MlalignLM):
    """HFLM whose log-likelihoods for the tasks in `token_sets` (task -> `TaskTokenSets`) are token-set sums."""

    def __init__(self, *args, token_sets: dict[str, TaskTokenSets], **kwargs) -> None:
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
        by_prompt: dict[Prompt, list[int]] = {}
        for i in sorted(mine):
            by_prompt.setdefault((requests[i].args[0], self.token_sets[requests[i].task_name].tail), []).append(i)
        with StepProgress("scoring labels (token sets)", len(by_prompt), "prompts") as progress:
            for prompt, logits in self.next_token_logits(list(by_prompt)):
                sets = [self.token_sets[requests[i].task_name].labels[requests[i].args[1]] for i in by_prompt[prompt]]
                for i, score in zip(by_prompt[prompt], label_log_probs(logits, sets), strict=True):
                    out[i] = score
                    self.cache_hook.add_partial("loglikelihood", requests[i].args, score)
                progress.advance()
        self.cache_hook.flush()
        return out

    def next_token_logits(self, prompts: list[Prompt]) -> Iterator[tuple[Prompt, torch.Tensor]]:
        """(prompt, the model's next-token logits after it) for each (text, tail ids), one forward per prompt.

        Prompts are batched (longest first, left padded, explicit position ids) by the model's batch size (`auto`:
        the largest that fits the longest prompt).
        """
        ids = {p: [*self.tokenizer(p[0])["input_ids"], *p[1]] for p in prompts}
        order = sorted(ids, key=lambda c: -len(ids[c]))
        size = self.batch_size if isinstance(self.batch_size, int) else self.auto_batch_size(len(ids[order[0]]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            width = max(len(ids[c]) for c in batch)
            input_ids = torch.tensor([[pad] * (width - len(ids[c])) + ids[c] for c in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(ids[c])) + [1] * len(ids[c]) for c in batch], device=self.device)
            self.cache_hook.flush()  # the batch before this one is whole
            with torch.inference_mode():
                logits = self.model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    logits_to_keep=1,
                ).logits[:, -1]
            yield from zip(batch, logits, strict=True)

"""The paper's logit lens (``zsm_emotion_2shot.py`` with ``llamawrapper.py``; `mlalign analyze logit-lens`'s default).

Amazon-polarity sentiment, 2-shot prompts whose answers are the **native** label words of language X (the model
is asked to answer in X). After every block l = 1..L the final norm and the unembedding are applied to the block's
output at the last prompt position (`LogitLens`), and per item these are summed over the paper's token sets
(`mlalign_tasks.tasks.label_tokens.paper_token_set`):

- ``latent_english``: the gold label's English word ("latent English"); ``native``: the gold label in X;
- ``english_both`` / ``native_both``: the union of both labels' sets in English / in X;
- ``entropy_bits``: the entropy of the lens distribution in bits.

Each curve is the mean over items with a 95% interval of ±1.96·sd/√n (sd with n−1). As upstream, an item is
dropped when its gold label's English or native set is empty, or (X ≠ en) when the two sets share a token; the
dropped items are counted in the output.
"""

from __future__ import annotations

import math

import torch

from mlalign_tasks.analysis.hidden_states import Batch, LoadedModel, run_batches
from mlalign_tasks.runtime.progress import StepProgress
from mlalign_tasks.tasks import label_tokens

CURVES = ("latent_english", "native", "english_both", "native_both", "entropy_bits")


def mean_ci(per_item: torch.Tensor) -> dict[str, list[float] | None]:
    """Mean over items of an [N, L] tensor and the 95% half-width 1.96·sd/√n per layer (None when N < 2)."""
    x = per_item.double()
    mean = [round(float(v), 8) for v in x.mean(0)]
    if x.shape[0] < 2:
        return {"mean": mean, "ci95": None}
    half = 1.96 * x.std(0, correction=1) / math.sqrt(x.shape[0])
    return {"mean": mean, "ci95": [round(float(v), 8) for v in half]}


def kept_items(items: list[dict], english: list[list[int]], native: list[list[int]], lang: str) -> list[dict]:
    """The items the paper keeps: both gold sets non-empty and, outside English, disjoint."""
    out = []
    for item in items:
        latent, own = set(english[item["label"]]), set(native[item["label"]])
        if latent and own and (lang == "en" or not latent & own):
            out.append(item)
    return out


def language_curves(
    lm: LoadedModel,
    lens,
    items: list[dict],
    english_words: list[str],
    native_words: list[str],
    lang: str,
    batch_size: int,
    progress: StepProgress | None = None,
) -> dict:
    """The paper's curves for one language over blocks 1..L, with the token sets and the dropped-item count.

    `progress` advances by every item, the dropped ones at once."""
    english = [label_tokens.paper_token_set(lm.tokenizer, w) for w in english_words]
    native = [label_tokens.paper_token_set(lm.tokenizer, w) for w in native_words]
    kept = kept_items(items, english, native, lang)
    kept_idx = {it["idx"] for it in kept}
    if progress is not None:
        progress.advance(len(items) - len(kept))
    result = {
        "items": len(kept),
        "dropped": len(items) - len(kept),
        "dropped_items": [it["idx"] for it in items if it["idx"] not in kept_idx],
        "token_sets": {
            w: label_tokens.token_strings(lm.tokenizer, ids)
            for w, ids in zip([*english_words, *native_words], [*english, *native], strict=True)
        },
    }
    if not kept:
        return {**result, **dict.fromkeys(CURVES)}
    device = lm.device
    sets = {f"english_{k}": ids for k, ids in enumerate(english)} | {f"native_{k}": ids for k, ids in enumerate(native)}
    sets |= {
        "english_both": sorted({i for s in english for i in s}),
        "native_both": sorted({i for s in native for i in s}),
    }
    index = {name: torch.tensor(ids, device=device, dtype=torch.long) for name, ids in sets.items()}

    def reduce(batch: Batch) -> dict[str, torch.Tensor]:
        probs = lens.logits(batch)[1:].softmax(-1)  # blocks 1..L: [L, B, V]
        out = {name: probs[..., ids].sum(-1).T for name, ids in index.items()}
        out["entropy_bits"] = (torch.special.entr(probs).sum(-1) / math.log(2)).T
        return out

    with lens.capturing():
        stats = run_batches(lm, [it["prompt"] for it in kept], reduce, batch_size, progress)
    gold = torch.tensor([it["label"] for it in kept])
    rows = torch.arange(len(kept))
    per_item = {
        "latent_english": torch.stack([stats[f"english_{k}"] for k in range(len(english))])[gold, rows],
        "native": torch.stack([stats[f"native_{k}"] for k in range(len(native))])[gold, rows],
        "english_both": stats["english_both"],
        "native_both": stats["native_both"],
        "entropy_bits": stats["entropy_bits"],
    }
    return {**result, **{name: mean_ci(values) for name, values in per_item.items()}}

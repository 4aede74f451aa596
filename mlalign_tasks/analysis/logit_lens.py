"""Logit lens: decode the last prompt position's hidden state after every layer with the model's own head.

For layer ``l < L`` the lens is ``unembed(final_norm(h_l))``; for the last layer it is ``unembed``
applied to the final norm's output in the same forward pass (what the model's head sees), so it
equals the model's next-token distribution. Gemma-2/3's final logit soft-capping is applied too;
Gemma scales the embeddings before the first layer, so layer 0 is the scaled embedding the layers see.

Two protocols (`mlalign analyze logit-lens --protocol`):

- ``paper`` (the default): the paper's lens on native-label prompts, token sets, ±95% intervals
  (`mlalign_tasks.analysis.paper_lens`);
- ``english-output``: mlalign's lens on the English-output ("enout") prompts of any paper task, layers 0..L.
  A label word's probability is that of its first token right after the prompt's opening quote
  (`mlalign_tasks.tasks.label_tokens.first_token_id`); a set of label words counts each distinct first token once.
  ``label_accuracy`` at a layer is the share of items whose gold English label has the most probable first
  token among the English labels; entropy is in nats.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from mlalign_tasks.analysis import paper_items, paper_lens, plots
from mlalign_tasks.analysis.hidden_states import Batch, LoadedModel, check_paths, load_model, run_batches
from mlalign_tasks.analysis.outputs import VERSIONED, atomic_output_dir
from mlalign_tasks.analysis.protocols import LensProtocol
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.atomic import write_json_atomic
from mlalign_tasks.files.versions import package_versions
from mlalign_tasks.models.model_loading import ModelSpec
from mlalign_tasks.runtime.progress import StepProgress
from mlalign_tasks.tasks import label_tokens, paper_prompts

NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f")
RESULT_FILE = "logit_lens.json"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a PEFT wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder's final norm (``model.model.norm`` for Llama, Qwen2, Mistral, Gemma), else a clear error."""
    base = _unwrap(model)
    try:
        decoder = base.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        decoder = None
    for name in NORM_NAMES:
        module = getattr(decoder, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise MlalignError(
        f"{type(base).__name__} exposes no final norm (looked for decoder.{', decoder.'.join(NORM_NAMES)}); "
        "the logit lens needs a decoder-only model with a final norm and output embeddings "
        "(e.g. the Llama, Qwen2, Mistral or Gemma families)"
    )


class LogitLens:
    """Per-layer next-token logits at the last position of every prompt, from one forward pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        base = _unwrap(model)
        self.norm = final_norm(model)
        self.unembed = base.get_output_embeddings()
        if self.unembed is None:
            raise MlalignError(f"{type(base).__name__} has no output embeddings; the logit lens needs an LM head")
        self.softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
        self._normed_last: torch.Tensor | None = None

    @contextmanager
    def capturing(self) -> Iterator[LogitLens]:
        """Record the final norm's output at the last position during the model's forward passes."""

        def hook(_module, _inputs, output):
            self._normed_last = output[:, -1, :]

        handle = self.norm.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()
            self._normed_last = None

    def apply_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final norm on inner-layer states (``forward`` directly: the capture hook must not fire)."""
        return self.norm.forward(hidden)

    def head(self, normed: torch.Tensor) -> torch.Tensor:
        """The model's output embedding (and soft-capping) on already normed states, in float32."""
        logits = self.unembed(normed).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @property
    def normed_last(self) -> torch.Tensor:
        """The final norm's output at the last position [B, H] in the latest forward inside `capturing()`."""
        if self._normed_last is None:
            raise RuntimeError("the logit lens needs a forward pass inside LogitLens.capturing()")
        return self._normed_last

    def logits(self, batch: Batch) -> torch.Tensor:
        """Lens logits [L+1, B, V] (float32) of a batch run inside `capturing()`; index = layer (0 = embeddings)."""
        last = self.normed_last
        inner = torch.stack([h[:, -1, :] for h in batch.hidden_states[:-1]])
        return torch.cat([self.head(self.apply_norm(inner)), self.head(last)[None]])


def first_token_ids(tokenizer, context: str, words: list[str]) -> list[int | None]:
    """The id of each word's first token when it follows `context` (None for an empty word)."""
    return [label_tokens.first_token_id(tokenizer, context, w) if w else None for w in words]


def language_lens(
    lm: LoadedModel,
    lens: LogitLens,
    items: list[dict],
    english: list[str],
    native: list[str],
    batch_size: int,
    top_k: int,
    progress: StepProgress | None = None,
) -> dict:
    """Per-layer means over `items` (one language) of label-word probabilities, entropy, accuracy, top-k tokens."""
    en_ids = first_token_ids(lm.tokenizer, items[0]["prompt"], english)
    nat_ids = first_token_ids(lm.tokenizer, items[0]["prompt"], native)
    en_set = torch.tensor(sorted(set(en_ids)), device=lm.device)
    nat_present = sorted({i for i in nat_ids if i is not None})
    nat_set = torch.tensor(nat_present, device=lm.device) if nat_present else None
    en_index = torch.tensor(en_ids, device=lm.device)
    prob_sum: dict[str, torch.Tensor] = {}  # running sum over items of the lens distributions [L+1, V]

    def reduce(batch: Batch) -> dict[str, torch.Tensor]:
        probs = lens.logits(batch).softmax(-1)  # [L+1, B, V]
        prob_sum["all"] = prob_sum["all"] + probs.sum(1) if prob_sum else probs.sum(1)
        model_probs = batch.last_logits.float().softmax(-1)
        out = {
            "english_prob": probs[..., en_set].sum(-1).T,
            "entropy": torch.special.entr(probs).sum(-1).T,
            "prediction": probs[..., en_index].argmax(-1).T,
            "last_layer_diff": (probs[-1] - model_probs).abs().amax(-1),
        }
        if nat_set is not None:
            out["native_prob"] = probs[..., nat_set].sum(-1).T
        return out

    with lens.capturing():
        stats = run_batches(lm, [it["prompt"] for it in items], reduce, batch_size, progress)
    gold = torch.tensor([it["label"] for it in items])
    mean_probs = prob_sum["all"] / len(items)  # [L+1, V]
    top = mean_probs.topk(min(top_k, mean_probs.shape[-1]), dim=-1)
    decode = lm.tokenizer.decode
    return {
        "english_label_tokens": [decode([i]) for i in en_ids],
        "native_label_tokens": [decode([i]) if i is not None else None for i in nat_ids],
        # Tokens that start an English and a native label alike count in both curves (they then coincide).
        "shared_label_tokens": [decode([i]) for i in sorted(set(en_ids) & set(nat_present))],
        "english_prob": _means(stats["english_prob"]),
        "native_prob": _means(stats["native_prob"]) if nat_set is not None else None,
        "entropy": _means(stats["entropy"]),
        "label_accuracy": _means((stats["prediction"] == gold[:, None]).float()),
        "top_tokens": [
            [{"token": decode([int(i)]), "prob": round(float(p), 6)} for p, i in zip(ps, ids, strict=True)]
            for ps, ids in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ],
        "last_layer_max_prob_diff": float(stats["last_layer_diff"].max()),
    }


def _means(per_item: torch.Tensor) -> list[float]:
    """Mean over items of an [N, L+1] tensor, as a list per layer."""
    return [round(float(v), 8) for v in per_item.double().mean(0)]


def run_logit_lens(
    spec: ModelSpec,
    task: str,
    langs: str | list[str],
    out: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    top_k: int = 5,
    data_dir: str | Path | None = None,
    protocol: LensProtocol = LensProtocol.paper,
) -> dict:
    """Run the logit lens for `task` in `langs` (base, and aligned with `spec`'s adapter); write JSON + plots into
    `out`."""
    check_paths(spec.model, spec.adapter)
    codes = paper_items.check_inputs(task, langs, limit)
    if top_k < 1:
        raise MlalignError(f"--top-k must be at least 1, got {top_k}")
    if protocol is LensProtocol.paper and task != "sentiment":
        raise MlalignError(
            f"the paper's logit lens runs on the sentiment task (its native-label prompts), not {task!r}; "
            "use --task sentiment, or --protocol english-output for snli and paws"
        )
    with atomic_output_dir(out, RESULT_FILE) as tmp:
        torch.manual_seed(seed)
        words = paper_prompts.LabelWords.native if protocol is LensProtocol.paper else paper_prompts.LabelWords.english
        chosen, items = paper_items.prompts(task, codes, limit, seed, data_dir, words=words)
        english, native = paper_items.labels(task, codes, data_dir)
        lm = load_model(spec)
        lens = LogitLens(lm.model)
        variants: dict[str, dict] = {}
        total = len(lm.variants()) * sum(len(items[lang]) for lang in codes)
        with StepProgress("logit lens", total, "prompts") as progress:
            for variant in lm.variants():
                variants[variant] = {}
                for lang in codes:
                    progress.describe(f"logit lens {variant} {lang}")
                    with lm.variant(variant):
                        variants[variant][lang] = (
                            paper_lens.language_curves(
                                lm, lens, items[lang], english, native[lang], lang, batch_size, progress
                            )
                            if protocol is LensProtocol.paper
                            else language_lens(
                                lm, lens, items[lang], english, native[lang], batch_size, top_k, progress
                            )
                        )
            progress.describe("logit lens")
        first = variants[lm.variants()[0]]
        result = {
            "analysis": "logit_lens",
            "protocol": protocol.value,
            "model": spec.model,
            "peft": lm.peft,
            "nf4_preset": spec.nf4_preset.value if spec.load_in_4bit else None,
            "task": task,
            "langs": codes,
            "num_layers": lm.num_layers,
            "layers": list(range(1 if protocol is LensProtocol.paper else 0, lm.num_layers + 1)),
            "items": chosen,
            "seed": seed,
            "english_labels": english,
            "native_labels": native,
            "variants": variants,
            "versions": package_versions(*VERSIONED),
            "notes": _paper_notes(first, len(chosen)) if protocol is LensProtocol.paper else _shared_notes(first),
        }
        if protocol is LensProtocol.english_output:
            result["top_k"] = top_k
        write_json_atomic(tmp / RESULT_FILE, result)
        if protocol is LensProtocol.paper:
            plots.paper_lens_curves(result, tmp / "logit_lens_curves")
        else:
            plots.logit_lens_curves(result, tmp / "logit_lens_curves")
            plots.entropy_heatmap(result, tmp / "logit_lens_entropy")
    return result


def _paper_notes(by_lang: dict[str, dict], n: int) -> list[str]:
    """One note per language whose items the paper's rule dropped."""
    return [
        f"{lang}: {stats['dropped']} of {n} items dropped (their English and native label token sets overlap or one "
        "is empty), as the paper does"
        for lang, stats in by_lang.items()
        if stats["dropped"]
    ]


def _shared_notes(by_lang: dict[str, dict]) -> list[str]:
    """One note per language whose English and native label words share first tokens."""
    return [
        f"{lang}: the English and native label words share first tokens {stats['shared_label_tokens']} with this "
        "tokenizer, so their curves count the same probability there"
        for lang, stats in by_lang.items()
        if stats["shared_label_tokens"]
    ]

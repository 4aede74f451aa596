"""PCA of mean-pooled hidden states on parallel sentences, per layer, coloured by language.

A sentence's representation at layer ``l`` is the mean of ``hidden_states[l]`` over its tokens,
special tokens (BOS) left out. For every chosen layer one 2-D PCA is fitted on the sentences of
all languages together; the Pearson correlation of the first principal component between English
and each other language over the parallel items measures how aligned the representations are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mlalign_tasks.analysis import paper_items, plots
from mlalign_tasks.analysis.hidden_states import Batch, config_num_layers, load_model, parse_layers, run_batches
from mlalign_tasks.analysis.outputs import atomic_output_dir, versions
from mlalign_tasks.atomic import write_json_atomic
from mlalign_tasks.errors import MlalignError

RESULT_FILE = "pca.json"


def pca_2d(x: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of the rows of `x` by SVD of the centred matrix (float64).

    Returns (scores [n, k], components [k, d], explained variance ratio [k]); signs follow
    scikit-learn: the entry of largest magnitude of every component is positive.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    u, vt = u * signs, vt * signs[:, None]
    variance = s**2
    ratio = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    k = min(n_components, len(s))
    return u[:, :k] * s[:k], vt[:k], ratio[:k]


def pc1_correlations(pc1: dict[str, np.ndarray], reference: str = "en") -> dict[str, float | None]:
    """Pearson r between the reference language's PC1 scores and each other language's (None if undefined)."""
    from scipy.stats import pearsonr

    out: dict[str, float | None] = {}
    for lang, scores in pc1.items():
        if lang == reference:
            continue
        ref = pc1[reference]
        constant = len(scores) < 2 or np.ptp(scores) == 0 or np.ptp(ref) == 0
        out[lang] = None if constant else float(pearsonr(ref, scores).statistic)
    return out


def mean_pooled(lm, texts: list[str], layers: list[int], batch_size: int, description: str) -> torch.Tensor:
    """Mean over non-special tokens of the chosen layers' hidden states: [len(texts), len(layers), H] (float32)."""
    special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)), device=lm.device)

    def reduce(batch: Batch) -> dict[str, torch.Tensor]:
        keep = batch.attention_mask & ~torch.isin(batch.input_ids, special)
        count = keep.sum(1, keepdim=True).clamp(min=1)
        mask = keep.unsqueeze(-1)
        pooled = [batch.hidden_states[layer].float().masked_fill(~mask, 0.0).sum(1) / count for layer in layers]
        return {"pooled": torch.stack(pooled, dim=1)}

    return run_batches(lm, texts, reduce, batch_size, description)["pooled"]


def layer_pca(pooled: np.ndarray, langs: list[str], n_items: int) -> dict:
    """2-D PCA of one layer's [len(langs) * n_items, H] matrix (language-major) and the PC1 correlations."""
    scores, _, ratio = pca_2d(pooled)
    by_lang = {lang: scores[i * n_items : (i + 1) * n_items] for i, lang in enumerate(langs)}
    return {
        "explained_variance_ratio": [round(float(r), 8) for r in ratio],
        "pc1_correlation": pc1_correlations({lang: s[:, 0] for lang, s in by_lang.items()}),
        "points": {lang: s.tolist() for lang, s in by_lang.items()},
    }


def run_pca(
    model: str,
    langs: str | list[str],
    out: str | Path,
    peft: str | Path | None = None,
    task: str = "snli",
    layers: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    load_in_4bit: bool = False,
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> dict:
    """PCA of `task`'s parallel test sentences in `langs` (English always included) at the chosen layers."""
    codes = list(dict.fromkeys(["en", *paper_items.check_inputs(task, langs, limit)]))
    num_layers = config_num_layers(model)
    default = sorted({num_layers // 4, num_layers // 2, 3 * num_layers // 4, num_layers})
    chosen_layers = parse_layers(layers, num_layers, default)
    with atomic_output_dir(out, RESULT_FILE) as tmp:
        torch.manual_seed(seed)
        items, texts = paper_items.sentences(task, codes, limit, seed, data_dir)
        flat = [t for lang in codes for t in texts[lang]]
        if len(flat) < 2:
            raise MlalignError("a PCA needs at least two sentences: raise --limit or add a language to --langs")
        lm = load_model(model, peft, device=device, dtype=dtype, load_in_4bit=load_in_4bit)
        variants: dict[str, dict] = {}
        for variant in lm.variants():
            with lm.variant(variant):
                pooled = mean_pooled(lm, flat, chosen_layers, batch_size, f"pca {variant}").numpy()
            variants[variant] = {
                "layers": {
                    str(layer): layer_pca(pooled[:, j], codes, len(items)) for j, layer in enumerate(chosen_layers)
                }
            }
        result = {
            "analysis": "pca",
            "model": model,
            "peft": lm.peft,
            "task": task,
            "langs": codes,
            "num_layers": num_layers,
            "layers": chosen_layers,
            "items": items,
            "seed": seed,
            "variants": variants,
            "versions": versions(),
        }
        write_json_atomic(tmp / RESULT_FILE, result)
        plots.pca_scatter(result, tmp / "pca")
    return result

"""PCA of mean-pooled hidden states per layer, coloured by language, and PC1 correlations between languages.

`mlalign analyze pca` defaults to the paper's protocol (``knowledge_finding.ipynb``): a point is the full 2-shot
native-label sentiment prompt of one item (``--input prompt``), represented at layer ``l`` by the mean of
``hidden_states[l]`` over all its tokens, BOS included (``--pooling all``). mlalign's variant uses the task's
sentences alone (``--input sentence``; distinct sentences only) and leaves special tokens out
(``--pooling content``). For every chosen layer one 2-D PCA is fitted on the points of all the run's languages
together (as the notebook fits en, de, fr, hi together), and the Pearson correlation of the first principal
component over the parallel items is reported for each language pair (``--pairs``; default: the paper's nine
pairs among the run's languages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mlalign_tasks.analysis import paper_items, plots
from mlalign_tasks.analysis.hidden_states import (
    Batch,
    check_paths,
    config_num_layers,
    load_model,
    parse_layers,
    run_batches,
)
from mlalign_tasks.analysis.outputs import VERSIONED, atomic_output_dir
from mlalign_tasks.analysis.protocols import PAPER_PAIRS, PcaInput, Pooling
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.atomic import write_json_atomic
from mlalign_tasks.files.versions import package_versions
from mlalign_tasks.models.model_loading import ModelSpec
from mlalign_tasks.runtime.progress import StepProgress
from mlalign_tasks.tasks import paper_prompts

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


def parse_pairs(spec: str | None, langs: list[str]) -> list[tuple[str, str]]:
    """'en-de,de-fr' -> pairs of the run's languages; None: the paper's pairs among them, else English with each."""
    if spec is None:
        paper = [tuple(p.split("-")) for p in PAPER_PAIRS]
        return [(a, b) for a, b in paper if a in langs and b in langs] or [("en", x) for x in langs if x != "en"]
    pairs = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        a, dash, b = part.partition("-")
        if not dash or a not in langs or b not in langs or a == b:
            raise MlalignError(
                f"bad pair {part!r} in --pairs {spec!r}: give two different languages of --langs "
                f"({', '.join(langs)}) joined by '-', e.g. 'en-de'"
            )
        pairs.append((a, b))
    if not pairs:
        raise MlalignError(f"--pairs {spec!r} names no pair; e.g. 'en-de,de-fr'")
    return list(dict.fromkeys(pairs))


def pc1_correlations(pc1: dict[str, np.ndarray], pairs: list[tuple[str, str]]) -> dict[str, float | None]:
    """Pearson r between the PC1 scores of the two languages of each pair (None if undefined), keyed 'a-b'."""
    from scipy.stats import pearsonr

    out: dict[str, float | None] = {}
    for a, b in pairs:
        x, y = pc1[a], pc1[b]
        constant = len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0
        out[f"{a}-{b}"] = None if constant else float(pearsonr(x, y).statistic)
    return out


def mean_pooled(
    lm,
    texts: list[str],
    layers: list[int],
    batch_size: int,
    pooling: Pooling = Pooling.all,
    progress: StepProgress | None = None,
) -> torch.Tensor:
    """Mean over the tokens (all, or all but special ones) of the chosen layers' hidden states: [N, len(layers), H]."""
    special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)), device=lm.device)

    def reduce(batch: Batch) -> dict[str, torch.Tensor]:
        keep = batch.attention_mask
        if pooling is Pooling.content:
            keep = keep & ~torch.isin(batch.input_ids, special)
        count = keep.sum(1, keepdim=True).clamp(min=1)
        mask = keep.unsqueeze(-1)
        pooled = [batch.hidden_states[layer].float().masked_fill(~mask, 0.0).sum(1) / count for layer in layers]
        return {"pooled": torch.stack(pooled, dim=1)}

    return run_batches(lm, texts, reduce, batch_size, progress)["pooled"]


def layer_pca(pooled: np.ndarray, langs: list[str], n_items: int, pairs: list[tuple[str, str]]) -> dict:
    """2-D PCA of one layer's [len(langs) * n_items, H] matrix (language-major) and the pairs' PC1 correlations."""
    scores, _, ratio = pca_2d(pooled)
    by_lang = {lang: scores[i * n_items : (i + 1) * n_items] for i, lang in enumerate(langs)}
    return {
        "explained_variance_ratio": [round(float(r), 8) for r in ratio],
        "pc1_correlation": pc1_correlations({lang: s[:, 0] for lang, s in by_lang.items()}, pairs),
        "points": {lang: s.tolist() for lang, s in by_lang.items()},
    }


def points(
    task: str, codes: list[str], limit: int | None, seed: int, data_dir, source: PcaInput
) -> tuple[list[int], dict[str, list[str]]]:
    """The chosen item indices and, per language, the texts whose hidden states are pooled."""
    if source is PcaInput.sentence:
        return paper_items.sentences(task, codes, limit, seed, data_dir)
    if task != "sentiment":
        raise MlalignError(
            f"the paper's PCA input is the sentiment task's native-label prompt, not {task!r}'s; "
            "use --task sentiment, or --input sentence for snli and paws"
        )
    chosen, items = paper_items.prompts(task, codes, limit, seed, data_dir, words=paper_prompts.LabelWords.native)
    return chosen, {lang: [it["prompt"] for it in items[lang]] for lang in codes}


def run_pca(
    spec: ModelSpec,
    langs: str | list[str],
    out: str | Path,
    *,
    task: str = "sentiment",
    layers: str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    data_dir: str | Path | None = None,
    source: PcaInput = PcaInput.prompt,
    pooling: Pooling = Pooling.all,
    pairs: str | None = None,
) -> dict:
    """PCA of `task`'s parallel test items in `langs` (English always included) at the chosen layers."""
    check_paths(spec.model, spec.adapter)
    codes = list(dict.fromkeys(["en", *paper_items.check_inputs(task, langs, limit)]))
    chosen_pairs = parse_pairs(pairs, codes)
    num_layers = config_num_layers(spec.model)
    default = sorted({num_layers // 4, num_layers // 2, 3 * num_layers // 4, num_layers})
    chosen_layers = parse_layers(layers, num_layers, default)
    with atomic_output_dir(out, RESULT_FILE) as tmp:
        torch.manual_seed(seed)
        items, texts = points(task, codes, limit, seed, data_dir, source)
        flat = [t for lang in codes for t in texts[lang]]
        if len(flat) < 2:
            raise MlalignError("a PCA needs at least two points: raise --limit or add a language to --langs")
        lm = load_model(spec)
        variants: dict[str, dict] = {}
        with StepProgress("pca", len(lm.variants()) * len(flat), "prompts") as progress:
            for variant in lm.variants():
                progress.describe(f"pca {variant}")
                with lm.variant(variant):
                    pooled = mean_pooled(lm, flat, chosen_layers, batch_size, pooling, progress).numpy()
                variants[variant] = {
                    "layers": {
                        str(layer): layer_pca(pooled[:, j], codes, len(items), chosen_pairs)
                        for j, layer in enumerate(chosen_layers)
                    }
                }
            progress.describe("pca")
        result = {
            "analysis": "pca",
            "input": source.value,
            "pooling": pooling.value,
            "model": spec.model,
            "peft": lm.peft,
            "nf4_preset": spec.nf4_preset.value if spec.load_in_4bit else None,
            "task": task,
            "langs": codes,
            "pairs": [f"{a}-{b}" for a, b in chosen_pairs],
            "num_layers": num_layers,
            "layers": chosen_layers,
            "items": items,
            "seed": seed,
            "variants": variants,
            "versions": package_versions(*VERSIONED),
        }
        write_json_atomic(tmp / RESULT_FILE, result)
        plots.pca_scatter(result, tmp / "pca")
    return result

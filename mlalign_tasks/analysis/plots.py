"""Plots of the analyses (matplotlib, Agg canvas via Figure; every plot as PNG and SVG)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib.figure import Figure

VARIANT_STYLE = {"base": "-", "aligned": "--"}


def save(fig: Figure, base: Path) -> list[Path]:
    """Write `fig` to `<base>.png` and `<base>.svg`."""
    paths = [Path(f"{base}.png"), Path(f"{base}.svg")]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


def note_identical(ax, curves: dict[str, list[float]]) -> str | None:
    """Write on the plot which of its curves coincide (one would hide the others); returns the text written."""
    groups: list[list[str]] = []
    for label, values in curves.items():
        same = next((g for g in groups if curves[g[0]] == values), None)
        if same is None:
            groups.append([label])
        else:
            same.append(label)
    text = "; ".join(" = ".join(g) for g in groups if len(g) > 1)
    if not text:
        return None
    note = ax.text(
        0.02, 0.98, textwrap.fill(f"identical: {text}", 48), transform=ax.transAxes, va="top", fontsize=6,
        bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0}, clip_on=True,
    )  # fmt: skip
    note.set_in_layout(False)  # a long note must not squeeze the axes under constrained layout
    return f"identical: {text}"


def logit_lens_curves(result: dict, base: Path) -> list[Path]:
    """Per language: probability of the English and the native label words over layers; base solid, aligned dashed."""
    langs, layers = result["langs"], result["layers"]
    rows, cols = _grid(len(langs))
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for ax, lang in zip(axes.flat, langs, strict=False):
        curves = {}
        for variant, by_lang in result["variants"].items():
            stats, style = by_lang[lang], VARIANT_STYLE[variant]
            ax.plot(layers, stats["english_prob"], style, color="C0", label=f"English labels ({variant})")
            curves[f"English ({variant})"] = stats["english_prob"]
            if stats["native_prob"] is not None:
                ax.plot(layers, stats["native_prob"], style, color="C1", label=f"target-language labels ({variant})")
                curves[f"target ({variant})"] = stats["native_prob"]
        note_identical(ax, curves)
        ax.set_title(lang)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(langs) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("layer")
    for ax in axes[:, 0]:
        ax.set_ylabel("probability")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)), fontsize="small")
    fig.suptitle(f"Logit lens, {result['task']}: label-word probability after each layer")
    return save(fig, base)


PAPER_CURVES = {  # curve -> (legend, colour): the paper's colours (latent English orange, X blue)
    "latent_english": ("gold label, English", "tab:orange"),
    "native": ("gold label, target language", "tab:blue"),
    "english_both": ("both labels, English", "tab:gray"),
    "native_both": ("both labels, target language", "tab:cyan"),
}


def _band(ax, layers: list[int], curve: dict, style: str, colour: str, label: str) -> None:
    """A mean curve with its 95% band (when there is one)."""
    ax.plot(layers, curve["mean"], style, color=colour, label=label)
    if curve["ci95"] is not None:
        low = [m - h for m, h in zip(curve["mean"], curve["ci95"], strict=True)]
        high = [m + h for m, h in zip(curve["mean"], curve["ci95"], strict=True)]
        ax.fill_between(layers, low, high, color=colour, alpha=0.15, linewidth=0)


def paper_lens_curves(result: dict, base: Path) -> list[Path]:
    """The paper's lens: per language, label probabilities (mean ± 95%) over blocks, and the entropy in bits."""
    langs, layers = result["langs"], result["layers"]
    rows, cols = _grid(len(langs))
    fig = Figure(figsize=(3.6 * cols, 5.2 * rows), layout="constrained")
    axes = fig.subplots(2 * rows, cols, squeeze=False, sharex=True)
    for i, lang in enumerate(langs):
        prob_ax, ent_ax = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        probs, entropies = {}, {}
        for variant, by_lang in result["variants"].items():
            stats, style = by_lang[lang], VARIANT_STYLE[variant]
            if stats["entropy_bits"] is None:
                continue
            for name, (label, colour) in PAPER_CURVES.items():
                _band(prob_ax, layers, stats[name], style, colour, f"{label} ({variant})")
                probs[f"{label} ({variant})"] = stats[name]["mean"]
            _band(ent_ax, layers, stats["entropy_bits"], style, "tab:green", f"entropy ({variant})")
            entropies[variant] = stats["entropy_bits"]["mean"]
        note_identical(prob_ax, probs)
        note_identical(ent_ax, entropies)
        stats = next(iter(result["variants"].values()))[lang]
        prob_ax.set_title(f"{lang} ({stats['items']} items, {stats['dropped']} dropped)")
        prob_ax.set_ylim(0, 1)
        prob_ax.set_ylabel("probability")
        ent_ax.set_ylabel("entropy (bits)")
        ent_ax.set_xlabel("block")
        for ax in (prob_ax, ent_ax):
            ax.grid(alpha=0.3)
    for i in range(len(langs), rows * cols):
        axes[2 * (i // cols), i % cols].set_visible(False)
        axes[2 * (i // cols) + 1, i % cols].set_visible(False)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes[::2].flat), key=lambda hl: len(hl[0]))
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, max(1, len(handles))), fontsize="small")
    fig.suptitle(f"Logit lens as in the paper, {result['task']}: native-label prompts, mean ± 95%")
    return save(fig, base)


def entropy_heatmap(result: dict, base: Path) -> list[Path]:
    """Entropy (nats) of the lens distribution: languages x layers, one panel per model variant."""
    variants = list(result["variants"])
    langs, layers = result["langs"], result["layers"]
    matrices = [[result["variants"][v][lang]["entropy"] for lang in langs] for v in variants]
    values = [v for m in matrices for row in m for v in row]
    fig = Figure(figsize=(0.25 * len(layers) * len(variants) + 3, 0.35 * len(langs) + 2), layout="constrained")
    axes = fig.subplots(1, len(variants), squeeze=False, sharey=True)[0]
    for ax, variant, matrix in zip(axes, variants, matrices, strict=True):
        image = ax.imshow(
            matrix, aspect="auto", cmap="viridis", vmin=min(values), vmax=max(values), interpolation="nearest"
        )
        ax.set_title(variant)
        ax.set_xlabel("layer")
        ax.set_xticks(range(len(layers))[:: max(1, len(layers) // 8)])
        ax.set_yticks(range(len(langs)), langs)
    fig.colorbar(image, ax=list(axes), label="entropy (nats)")
    fig.suptitle(f"Logit lens, {result['task']}: next-token entropy")
    return save(fig, base)


def pca_scatter(result: dict, base: Path) -> list[Path]:
    """2-D PCA of mean-pooled hidden states: one row per model variant, one column per layer, colour = language."""
    variants, layers, langs = list(result["variants"]), result["layers"], result["langs"]
    fig = Figure(figsize=(3.6 * len(layers), 3.4 * len(variants) + 0.6), layout="constrained")
    axes = fig.subplots(len(variants), len(layers), squeeze=False)
    colours = {lang: f"C{i}" if len(langs) <= 10 else _tab20(i) for i, lang in enumerate(langs)}
    for row, variant in zip(axes, variants, strict=True):
        for ax, layer in zip(row, layers, strict=True):
            entry = result["variants"][variant]["layers"][str(layer)]
            for lang in langs:
                xy = entry["points"][lang]
                ax.scatter([p[0] for p in xy], [p[1] for p in xy], s=8, alpha=0.7, color=colours[lang], label=lang)
            ratio = entry["explained_variance_ratio"]
            rs = [r for r in entry["pc1_correlation"].values() if r is not None]
            mean_r = f", mean PC1 r over {len(rs)} pairs {sum(rs) / len(rs):.2f}" if rs else ""
            ax.set_title(f"{variant}, layer {layer}{mean_r}", fontsize="medium")
            ax.set_xlabel(f"PC1 ({ratio[0]:.0%})")
            ax.set_ylabel(f"PC2 ({ratio[1]:.0%})")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", markerscale=2)
    what = "native-label prompts" if result["input"] == "prompt" else "test sentences"
    fig.suptitle(f"PCA of mean-pooled hidden states ({result['task']} {what}, pooling: {result['pooling']} tokens)")
    return save(fig, base)


def _tab20(i: int) -> tuple[float, ...]:
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)

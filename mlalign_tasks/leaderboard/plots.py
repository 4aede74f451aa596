"""The board's two figures (matplotlib Figure objects, no pyplot state): delta heatmap (languages x tasks) and
split-average bars."""

from __future__ import annotations

import math
from pathlib import Path

from mlalign_tasks.leaderboard.averages import ALL_FAMILIES
from mlalign_tasks.leaderboard.board import Board
from mlalign_tasks.leaderboard.stats import significant

MAX_PAIR_PANELS = 8  # more base -> aligned pairs than this: the heatmap shows the mean delta over all pairs
MAX_ANNOTATED_CELLS = 400  # beyond this the numbers in the heatmap cells would be unreadable (and slow)
SPLIT_COLOURS = {"english": "#4c72b0", "seen": "#55a868", "unseen": "#dd8452", "non_english": "#8172b3"}
MAX_LABELLED_GROUPS = 6  # value labels on the bars up to this many models
MAX_PNG_PIXELS = 4_000_000  # a bigger figure's PNG gets fewer dots per inch (a board of 10 models x all suites)


def _save(fig, out: Path, stem: str) -> list[Path]:
    """PNG (100 dpi, less for a figure over `MAX_PNG_PIXELS`: the SVG is the exact one) and SVG, both cropped to the
    drawing's tight box (worked out once: it takes a draw of its own)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    box = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer()).padded(0.1)  # savefig's "tight": 0.1 inch more
    dpi = min(100.0, (MAX_PNG_PIXELS / (box.width * box.height)) ** 0.5)
    fig.savefig(paths[0], dpi=dpi, bbox_inches=box, metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches=box, metadata={"Date": None, "Creator": None})
    return paths


def _heatmap_grid(board: Board):
    """(row labels, grid of deltas, significance marks, seen-language marks) for the heatmap."""
    import numpy as np

    pairs, langs = board.pairs(), board.languages
    col = {lang: j for j, lang in enumerate(langs)}
    if len(pairs) <= MAX_PAIR_PANELS:
        keys = [(a.name, f) for _, a in pairs for f in board.families]
        labels = [f if len(pairs) == 1 else f"{a} · {f}" for a, f in keys]
    else:
        keys = [("*", f) for f in board.families]
        labels = [f"{f} (mean of {len(pairs)} pairs)" for f in board.families]
    row = {k: i for i, k in enumerate(keys)}
    total = np.zeros((len(keys), len(langs)))
    count = np.zeros_like(total)
    sig = np.zeros_like(total, dtype=bool)
    seen = np.zeros_like(sig)
    seen_by = {a.name: set(a.seen or ()) for _, a in pairs}
    for c in board.comparisons:
        i = row.get((c["aligned"], c["family"]), row.get(("*", c["family"])))
        j = col[c["language"]]
        total[i, j] += c["delta_pp"]
        count[i, j] += 1
        if len(pairs) <= MAX_PAIR_PANELS:
            sig[i, j] = significant(c)
            seen[i, j] = c["language"] in seen_by[c["aligned"]]
    with np.errstate(invalid="ignore"):
        grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return labels, grid, sig, seen


def _runs(mask) -> list[tuple[int, int, int]]:
    """(row, first column, length) of each run of True along the rows of `mask`: a row's adjacent cells are veiled
    and hatched as one rectangle (the same picture; a board of 100 models has 10,000s of cells)."""
    import numpy as np

    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    starts, stops = np.nonzero(edges == 1), np.nonzero(edges == -1)
    return [(int(i), int(j), int(k - j)) for i, j, k in zip(starts[0], starts[1], stops[1], strict=True)]


def delta_heatmap(board: Board, out: Path) -> list[Path]:
    """Aligned − base (pp): task families (rows, per pair when there are few pairs) × languages (columns).

    Cells of languages the aligned model was trained on are outlined; `*` marks p < 0.05 (McNemar, adjusted when the
    board corrects for multiple comparisons). Cells that are not significant are faded and hatched, so that the
    strongest colours never sit on noise; values are rounded as in the tables (0.1 pp).
    """
    import numpy as np
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not board.pairs():
        fig = Figure(figsize=(4, 1.0))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no base → aligned pairs on this board", ha="center", va="center")
        return _save(fig, out, "delta_heatmap")
    labels, grid, sig, seen = _heatmap_grid(board)
    finite = np.abs(grid[np.isfinite(grid)])
    limit = max(float(finite.max()) if finite.size else 1.0, 1.0)
    langs = board.languages
    fig = Figure(figsize=(min(max(4.0, 0.42 * len(langs) + 2.5), 40.0), 0.3 * len(labels) + 1.3))
    ax = fig.subplots()
    image = ax.imshow(
        np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto", interpolation="none"
    )
    veil = [Rectangle((j - 0.5, i - 0.5), n, 1) for i, j, n in _runs(np.isfinite(grid) & ~sig)]
    ax.add_collection(
        PatchCollection(veil, facecolor=(1, 1, 1, 0.7), edgecolor=(0.55, 0.55, 0.55), hatch="///", linewidth=0)
    )
    ax.set_facecolor("#e6e6e6")
    ax.set_xticks(
        range(len(langs)), langs, fontsize=8 if len(langs) <= 40 else 5, rotation=0 if len(langs) <= 40 else 90
    )
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if grid.size <= MAX_ANNOTATED_CELLS:
        for (i, j), value in np.ndenumerate(grid):
            if math.isfinite(value):
                colour = "white" if sig[i, j] and abs(value) > 0.6 * limit else "black"
                label = f"{value:+.1f}{'*' if sig[i, j] else ''}"
                ax.text(j, i, label, ha="center", va="center", fontsize=6.5, color=colour)
    boxes = [Rectangle((j - 0.46, i - 0.46), 0.92, 0.92) for i, j in zip(*np.nonzero(seen), strict=True)]
    ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor="black", linewidth=1.2))
    ax.set_title(
        "Δ aligned − base (pp); boxed: training languages; * p<0.05 (exact McNemar); faded, hatched: not significant",
        fontsize=9,
    )
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    return _save(fig, out, "delta_heatmap")


LABEL_BAND = 6.0  # percentage points above a bar that its value label covers


def label_positions(offsets, heights, base) -> list[tuple[float, float, float]]:
    """(x, y, value) of each bar's value label: above the bar, or above its base model's tick when the tick lies in
    the label's band (where it would cover the label)."""
    import math

    return [
        (float(x_at), b if 0 <= b - height < LABEL_BAND else height, height)
        for x_at, height, b in zip(offsets, heights, base, strict=True)
        if not math.isnan(height)
    ]


def split_bars(board: Board, out: Path) -> list[Path]:
    """Mean score over task families for English / seen / unseen / all non-English, one group per model;
    an aligned model and its base (black ticks) are both averaged over the cells both have."""
    import numpy as np
    from matplotlib.figure import Figure

    values: dict[tuple[str, str | None], dict[str, float]] = {}  # (model, aligned model of its pair) -> means
    for r in board.averages:
        if r["family"] == ALL_FAMILIES:
            values.setdefault((r["model"], r["aligned"]), {})[r["split"]] = r["value"] * 100
    base_of = {a.name: b.name for b, a in board.pairs()}
    paired_bases = set(base_of.values())
    groups = [m.name for m in board.models if m.name in base_of or m.name not in paired_bases]
    own = {g: g if g in base_of else None for g in groups}
    x = np.arange(len(groups))
    width = 0.8 / len(SPLIT_COLOURS)
    fig = Figure(figsize=(max(4.5, 0.55 * len(groups) + 2), 3.4))
    ax = fig.subplots()
    for k, (split, colour) in enumerate(SPLIT_COLOURS.items()):
        offset = x + (k - (len(SPLIT_COLOURS) - 1) / 2) * width
        heights = [values.get((g, own[g]), {}).get(split, np.nan) for g in groups]
        ax.bar(offset, heights, width, label=split.replace("_", "-"), color=colour)
        base = [values.get((base_of[g], g), {}).get(split, np.nan) if g in base_of else np.nan for g in groups]
        ax.scatter(offset, base, marker="_", s=200 * width * 4, color="black", linewidths=2, zorder=3)
        if len(groups) <= MAX_LABELLED_GROUPS:
            for x_at, y_at, height in label_positions(offset, heights, base):
                ax.annotate(
                    f"{height:.1f}", (x_at, y_at), xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=6.5,
                )  # fmt: skip
    if base_of:
        ax.scatter([], [], marker="_", color="black", linewidths=2, label="base model, same cells")
    labels = [f"{g}\n(vs {base_of[g]})" if g in base_of else g for g in groups]
    ax.set_xticks(
        x, labels, rotation=30 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center", fontsize=7
    )
    ax.set_ylabel("mean score (%)")
    ax.set_title("English vs seen vs unseen languages (mean over task families)", fontsize=9)
    ax.legend(
        fontsize=7,
        frameon=False,
        ncols=5,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if len(groups) > 3 else -0.12),
    )
    return _save(fig, out, "split_averages")


PLOT_FILES = tuple(f"{stem}.{ext}" for stem in ("delta_heatmap", "split_averages") for ext in ("png", "svg"))


def render_plots(board: Board, out: Path) -> list[Path]:
    """Write both figures as PNG and SVG into `out`."""
    import matplotlib

    out.mkdir(parents=True, exist_ok=True)
    # reproducible SVG ids; text stays text (smaller, faster, searchable); `$` in a model name is not mathtext
    with matplotlib.rc_context({"svg.hashsalt": "mlalign", "svg.fonttype": "none", "text.parse_math": False}):
        return delta_heatmap(board, out) + split_bars(board, out)

"""The board's tables as rows of text cells, and the texts around them, that the README and the page both show."""

from __future__ import annotations

from typing import Any, NamedTuple

from mlalign_tasks.leaderboard.averages import ALL_FAMILIES, SPLITS
from mlalign_tasks.leaderboard.board import Board
from mlalign_tasks.leaderboard.likeness import MISMATCH_PREFIX
from mlalign_tasks.leaderboard.references import ours_over
from mlalign_tasks.leaderboard.runs import GROUP, SETTINGS
from mlalign_tasks.leaderboard.stats import SIGNIFICANCE, significant

SETTINGS_FIELDS = ["model", "family", *SETTINGS]


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}"


def delta_text(c: dict[str, Any]) -> str:
    """`+2.4* (p=0.01)` style delta (pp) with the p-value (and the adjusted one) when a paired test exists."""
    star = "*" if significant(c) else ""
    p = f" (p={c['p_value']:.3g}" if c["p_value"] is not None else ""
    p += f", adj. {c['p_adjusted']:.3g})" if c.get("p_adjusted") is not None else (")" if p else "")
    return f"{c['delta_pp']:+.1f}{star}{p}"


def interval_text(delta: dict[str, Any]) -> str:
    """`+2.0 [−1.1, +5.2]`: an average's Δ (pp) with its bootstrap interval when there is one."""
    if delta["ci_low_pp"] is None:
        return f"{delta['delta_pp']:+.1f}"
    return f"{delta['delta_pp']:+.1f} [{delta['ci_low_pp']:+.1f}, {delta['ci_high_pp']:+.1f}]"


def cell_text(view: dict[str, Any] | None) -> str:
    """A score cell (%): `52.5 [48.3, 56.6]` (Wilson 95%), else `52.5 ± 2.1` (stderr); seeds: `52.5 ± 1.2 sd (3 runs)`."""
    if view is None:
        return "–"
    if view["sd"] is not None:
        return f"{pct(view['value'])} ± {pct(view['sd'])} sd ({view['runs']} runs)"
    if view["ci"] is not None:
        return f"{pct(view['value'])} [{pct(view['ci'][0])}, {pct(view['ci'][1])}]"
    return pct(view["value"]) + (f" ± {pct(view['stderr'])}" if view["stderr"] is not None else "")


class Strong(NamedTuple):
    """A table cell whose `text` is shown in bold in the README, followed by `after`."""

    text: str
    after: str = ""

    def __str__(self) -> str:
        return f"{self.text} {self.after}".strip()


Cell = str | Strong


def seen_by(board: Board, lang: str) -> str:
    names = [m.name for m in board.models if m.seen and lang in m.seen]
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} models"


def model_table(board: Board) -> tuple[list[str], list[list[str]]]:
    """One row per model: base model, adapter, the model it is compared with, training languages."""
    keys = {m.key for m in board.models}
    rows = [
        [
            m.name,
            m.pretrained,
            m.adapter or "–",
            board.model(m.base).name if m.base in keys else (m.base or "–"),
            ", ".join(m.seen) if m.seen else ("unknown" if m.adapter else "–"),
        ]
        for m in board.models
    ]
    return ["model", "base model", "adapter", "compared with", "trained on"], rows


def average_table(board: Board, family: str = ALL_FAMILIES) -> tuple[list[str], list[list[Cell]]]:
    """Split means for one family or all: per base -> aligned pair both models over the cells both have and their Δ
    with its bootstrap interval, then every model over all its own cells."""
    avg = {
        (r["model"], r["base"], r["aligned"], r["split"]): r["value"] for r in board.averages if r["family"] == family
    }
    deltas = {(d["aligned"], d["split"]): d for d in board.deltas if d["family"] == family}
    header = ["model", "pair", "English", "seen", "unseen", "all non-English"]
    rows: list[list[Cell]] = []

    def line(model: str, base: str | None, aligned: str | None) -> list[float | None]:
        return [avg.get((model, base, aligned, s)) for s in SPLITS]

    for base, aligned in board.pairs():
        label = f"{aligned.name} vs {base.name}"
        b, a = line(base.name, base.name, aligned.name), line(aligned.name, base.name, aligned.name)
        if not any(v is not None for v in a + b):
            continue
        rows.append([base.name, label, *(pct(v) for v in b)])
        rows.append([aligned.name, label, *(pct(v) for v in a)])
        texts = [interval_text(deltas[(aligned.name, s)]) if (aligned.name, s) in deltas else "–" for s in SPLITS]
        rows.append([Strong(f"Δ {aligned.name} − {base.name}", "(pp)"), "", *texts])
    for model in board.models:
        own = line(model.name, None, None)
        if any(v is not None for v in own):
            rows.append([model.name, "all its cells", *(pct(v) for v in own)])
    return header, rows


def family_table(board: Board, family: str) -> tuple[list[str], list[list[str]]]:
    """Languages x models (score with its 95% interval, %) plus one Δ column per base → aligned pair."""
    comps = {(c["aligned"], c["language"]): c for c in board.comparisons if c["family"] == family}
    pairs = board.pairs()
    header = ["language", "seen by", *(m.name for m in board.models), *(f"Δ {a.name} (pp)" for _, a in pairs)]
    rows = []
    for lang in board.languages:
        views = [board.cells.get((m.name, family, lang)) for m in board.models]
        if not any(views):
            continue
        deltas = [delta_text(comps[(a.name, lang)]) if (a.name, lang) in comps else "–" for _, a in pairs]
        rows.append([lang, seen_by(board, lang), *(cell_text(v) for v in views), *deltas])
    return header, rows


def group_table(board: Board) -> tuple[list[str], list[list[str]]]:
    """lm-eval's own group scores (its aggregate over a group's tasks, e.g. weighted by size) per model (%)."""
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in board.rows:
        if r["level"] == GROUP:
            groups.setdefault((r["task"], r["metric"]), {}).setdefault(r["model"], r)
    header = ["group", "metric", *(m.name for m in board.models)]
    rows = [
        [group, metric, *(_group_cell(by_model.get(m.name)) for m in board.models)]
        for (group, metric), by_model in groups.items()
    ]
    return header, rows


def _group_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    return pct(row["value"]) + (f" ± {pct(row['stderr'])}" if row["stderr"] is not None else "")


def settings_table(board: Board) -> tuple[list[str], list[list[str]]]:
    """Each model's evaluation settings per task family (values joined with `|` where its tasks differ)."""
    return SETTINGS_FIELDS, [[r[k] for k in SETTINGS_FIELDS] for r in board.setting_rows]


def reference_table(board: Board, family: str | None = None) -> tuple[list[str], list[list[Cell]]]:
    """Published numbers (a distinct row each, marked †) under the board's models' means over the same languages."""
    header = ["benchmark", "languages", "model", "mean (%)", "source"]
    rows: list[list[Cell]] = []
    for ref in board.references:
        if family is not None and ref["family"] != family:
            continue
        langs = ", ".join(ref["languages"])
        for model in board.models:
            cells = {(f, lang): v["value"] for (name, f, lang), v in board.cells.items() if name == model.name}
            mean = ours_over(ref, cells)
            if mean is not None:
                rows.append([ref["family"], langs, model.name, pct(mean), "this board"])
        rows.append(
            [ref["family"], langs, Strong(f"† {ref['model']}", "(published)"), pct(ref["value"]), ref["source"]]
        )
    return header, rows


def consistency_table(board: Board, family: str) -> tuple[list[str], list[list[str]]]:
    """Languages x models: same answer as in English (%) / correct in both (%)."""
    cons = {(c["model"], c["language"]): c for c in board.consistency if c["family"] == family}
    named = {name for name, _ in cons}
    models = [m for m in board.models if m.name in named]
    header = ["language", *(f"{m.name}: same / both correct" for m in models)]
    rows = []
    for lang in board.languages:
        if lang == "en" or not any((m.name, lang) in cons for m in models):
            continue
        cells = [
            f"{pct(cons[(m.name, lang)]['same_answer'])} / {pct(cons[(m.name, lang)]['both_correct'])}"
            if (m.name, lang) in cons
            else "–"
            for m in models
        ]
        rows.append([lang, *cells])
    return header, rows


def legend(board: Board) -> str:
    """What the numbers are (one paragraph, in the README and on the page)."""
    correction = board.options.correction.value
    return (
        "Scores are each task family's primary metric in percent"
        + (", chance-normalised for classification tasks" if board.options.chance_normalised else "")
        + ", with their 95% Wilson interval [low, high] (else ± the standard error lm-eval reports). "
        "Δ = aligned − base in percentage points; p = two-sided exact McNemar test on the items both models were "
        "scored on (from the per-sample logs)"
        + (f", adjusted across languages ({correction}); * adjusted p" if correction != "none" else "; * p")
        + f" < {SIGNIFICANCE}. Seen languages are the ones the aligned model was trained on. Averages: a base and an "
        "aligned model are both averaged over the (family, language) cells both were evaluated on (the notes name "
        "those left out), so their Δ compares the same tasks; its [interval] is a paired bootstrap over items "
        f"({board.options.bootstrap} resamples, seed {board.options.seed}). Every model is also averaged over all "
        "its own cells. Over all families: the mean of the per-family means. Rows marked † are published numbers, "
        "not computed here and in no statistic."
    )


def ordered_notes(board: Board) -> list[str]:
    """Notes, those saying the board compares unlike runs (`--allow-mismatch`) first."""
    return sorted(board.notes, key=lambda n: not n.startswith(MISMATCH_PREFIX))

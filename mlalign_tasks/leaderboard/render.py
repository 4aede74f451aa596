"""Write a board folder atomically: README.md, results.csv/json, comparisons/consistency CSVs, plots,
model-card snippets, index.html (and, optionally, copies of the input files)."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from dataclasses import asdict
from html import escape as html_escape
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import yaml
from markupsafe import Markup

from mlalign_tasks import __version__
from mlalign_tasks.atomic import atomic_dir
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.leaderboard.averages import ALL_FAMILIES, AVERAGE_FIELDS, DELTA_FIELDS, SPLITS
from mlalign_tasks.leaderboard.build import COMPARISON_FIELDS, CONSISTENCY_FIELDS, Board, Model, source_folder
from mlalign_tasks.leaderboard.escape import csv_cell, md_block, md_code_block, md_code_span, md_text
from mlalign_tasks.leaderboard.likeness import MISMATCH_PREFIX
from mlalign_tasks.leaderboard.load import BOARD_MARKERS, GROUP, SETTINGS
from mlalign_tasks.leaderboard.references import ours_over
from mlalign_tasks.leaderboard.stats import SIGNIFICANCE
from mlalign_tasks.output_dirs import check_replaceable, check_writable
from mlalign_tasks.parallel import Background

ROW_FIELDS = [
    "model", "base_model", "adapter", "task", "level", "family", "language", "metric", "value", "stderr", "ci_low",
    "ci_high", "n", "seed", "split", "source",
]  # fmt: skip
SETTINGS_FIELDS = ["model", "family", *SETTINGS]
RESULT_NEUTRAL = {"cache"}  # options that change how fast a board is built, not what it shows
INPUTS = "inputs"
INPUTS_MANIFEST = "manifest.yaml"  # in INPUTS, beside one folder per model
# Everything a board writes into its folder; other entries there (a gh-pages `.git`, a CNAME) are never touched.
BOARD_ENTRIES = (
    "README.md", "index.html", "results.csv", "results.json", "comparisons.csv", "consistency.csv", "averages.csv",
    "deltas.csv", "settings.csv", "plots", "model_cards", INPUTS,
)  # fmt: skip


def slugs(models: list[Model]) -> dict[str, str]:
    """A distinct file-name-safe form of every model name (numbered where two names reduce to the same); never
    `.`, `..`, a hidden name or a name the board's inputs folder uses itself."""
    out: dict[str, str] = {}
    for model in models:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", model.name).strip("._-") or "model"
        stem = f"{stem}-model" if stem == INPUTS_MANIFEST else stem
        name, k = stem, 1
        while name in out.values():
            k += 1
            name = f"{stem}-{k}"
        out[model.name] = name
    return out


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}"


def significant(c: dict[str, Any]) -> bool:
    """Whether a comparison's (adjusted, when a correction is chosen) p-value is below the significance level."""
    p = c["p_adjusted"] if c.get("p_adjusted") is not None else c["p_value"]
    return p is not None and p < SIGNIFICANCE


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


def _md_cell(cell: Cell) -> str:
    return f"**{md_text(cell.text)}** {md_text(cell.after)}".strip() if isinstance(cell, Strong) else md_text(cell)


def _md_table(header: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(map(md_text, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _seen_by(board: Board, lang: str) -> str:
    names = [m.name for m in board.models if m.seen and lang in m.seen]
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} models"


def _index(board: Board) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(model, family, language) -> its primary row (the first run's, for a cell run with several seeds)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in board.rows:
        if r["primary"]:
            out.setdefault((r["model"], r["family"], r["language"]), r)
    return out


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
        rows.append([lang, _seen_by(board, lang), *(cell_text(v) for v in views), *deltas])
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


def markdown(board: Board, command: str) -> str:
    """The board's README."""
    parts = [f"# {md_block(board.title)}", ""]
    if board.description:
        parts += [md_block(board.description), ""]
    parts += [
        f"Regenerate with:\n\n{md_code_block(command, 'bash')}",
        "",
        f"Built by mlalign {__version__} from lm-eval {md_text(', '.join(board.lm_eval_versions))} results. "
        + legend(board),
        "",
        "Open `index.html` for sortable tables and plots. Data: `results.csv` / `results.json` (tidy), "
        "`comparisons.csv`, `consistency.csv`, `averages.csv`, `deltas.csv`, `settings.csv`; model-card snippets in "
        "`model_cards/`.",
        "",
    ]
    if board.notes:
        parts += ["## Notes", "", *(f"- {md_block(n)}" for n in _ordered_notes(board)), ""]
    parts += ["## Models", "", _md_table(*model_table(board)), ""]
    parts += ["## Settings", "", _md_table(*settings_table(board)), ""]
    parts += ["## Averages (all task families)", "", _md_table(*average_table(board)), ""]
    header, rows = group_table(board)
    if rows:
        parts += ["## lm-eval group scores", "", _md_table(header, rows), ""]
    header, rows = reference_table(board)
    if rows:
        parts += ["## Published reference numbers", "", _md_table(header, rows), ""]
    parts += ["![Δ heatmap](plots/delta_heatmap.png)", "", "![split averages](plots/split_averages.png)", ""]
    for family in board.families:
        parts += [
            f"## {md_block(family)}",
            "",
            f"Metric: {md_code_span(board.metrics[family])}",
            "",
            _md_table(*family_table(board, family)),
            "",
        ]
        parts += ["Averages (%):", "", _md_table(*average_table(board, family)), ""]
        header, rows = consistency_table(board, family)
        if rows:
            parts += ["Cross-lingual consistency with English (same answer / correct in both, %):", ""]
            parts += [_md_table(header, rows), ""]
    return "\n".join(parts)


def _ordered_notes(board: Board) -> list[str]:
    """Notes, those saying the board compares unlike runs (`--allow-mismatch`) first."""
    return sorted(board.notes, key=lambda n: not n.startswith(MISMATCH_PREFIX))


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    """`fields` of each row (None as an empty cell; text `csv_cell`-safe)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(fields)
        writer.writerows([csv_cell(v) if isinstance(v, str) else v for v in map(row.get, fields)] for row in rows)


def model_card(model: Model, rows: list[dict[str, Any]]) -> str:
    """Hugging Face model-card `model-index` YAML for one model from its primary rows (lm-eval's values).

    What `yaml.dump` writes for the whole card, assembled from each result's text (dumped once per task and metric,
    every model's cards alike, with the value's own dump put in)."""
    head = _card_yaml(model.name, [])
    if not rows or not head.endswith(_EMPTY_RESULTS):
        return _card_yaml(model.name, [_card_result(row) for row in rows])
    return head[: -len(_EMPTY_RESULTS)] + "  results:\n" + "".join(map(_card_item, rows))


_EMPTY_RESULTS = "  results: []\n"
_VALUE_LINE = "      value: "
_CARD_ITEMS: dict[tuple[str, str, str, str], tuple[str, str]] = {}  # (family, task, language, metric) -> text
_YAML_FLOATS: dict[str, str] = {}  # repr(value) -> its YAML


def _card_yaml(name: str, results: list[dict[str, Any]]) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available: 10x faster
    card = {"model-index": [{"name": name, "results": results}]}
    return yaml.dump(card, Dumper=dumper, sort_keys=False, allow_unicode=True)


def _card_result(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": {"type": "text-generation", "name": row["family"]},
        "dataset": {"name": row["task"], "type": row["family"], "config": row["language"], "split": "test"},
        "metrics": [{"type": row["metric"].split(",")[0], "name": row["metric"], "value": row["value"]}],
        "source": {"name": "mlalign leaderboard", "url": "index.html"},
    }


def _card_item(row: dict[str, Any]) -> str:
    """One result of a card as `yaml.dump` writes it; the whole result dumped where its value line is not plain."""
    key = (row["family"], row["task"], row["language"], row["metric"])
    if key not in _CARD_ITEMS:
        text = _card_yaml("m", [_card_result(row | {"value": 0.5})])
        item = text.removeprefix("model-index:\n- name: m\n  results:\n")
        before, _, after = item.partition(_VALUE_LINE + "0.5\n")
        _CARD_ITEMS[key] = (before, after) if item.count(_VALUE_LINE) == 1 and after else ("", "")
    before, after = _CARD_ITEMS[key]
    if not after:
        return _card_yaml("m", [_card_result(row)]).removeprefix("model-index:\n- name: m\n  results:\n")
    value = repr(row["value"])
    if value not in _YAML_FLOATS:
        _YAML_FLOATS[value] = yaml.safe_dump(row["value"]).split("\n", 1)[0]
    return f"{before}{_VALUE_LINE}{_YAML_FLOATS[value]}\n{after}"


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def delta_style(c: dict[str, Any], scale: float) -> str:
    """Background colour of a Δ cell: green up, red down, stronger with size; faint unless significant (colour
    must not draw the eye to noise)."""
    alpha = min(abs(c["delta_pp"]) / scale, 1.0) * (0.75 if significant(c) else 0.15) + 0.08
    rgb = "26,150,65" if c["delta_pp"] > 0 else ("215,48,39" if c["delta_pp"] < 0 else "160,160,160")
    return f"background-color: rgba({rgb},{alpha:.2f})"


def html(board: Board, command: str, plots: dict[str, str]) -> str:
    """The self-contained page (inline CSS/JS); `plots`: the `src` of each of `PAGE_PLOTS` (a data URI)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlalign_tasks.leaderboard", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    scale = max([abs(c["delta_pp"]) for c in board.comparisons] + [1.0])
    pairs = board.pairs()
    families = []
    for family in board.families:
        comps = {(c["aligned"], c["language"]): c for c in board.comparisons if c["family"] == family}
        rows = []
        for lang in board.languages:
            views = [board.cells.get((m.name, family, lang)) for m in board.models]
            if any(views):
                deltas = [comps.get((a.name, lang)) for _, a in pairs]
                rows.append(
                    {"lang": lang, "seen_by": _seen_by(board, lang), "cells": _score_cells(views, deltas, scale)}
                )
        consistency = consistency_table(board, family)
        families.append(
            {
                "name": family,
                "metric": board.metrics[family],
                "rows": rows,
                "consistency": consistency,
                "averages": average_table(board, family),
                "references": reference_table(board, family),
            }
        )
    return env.get_template("index.html.j2").render(
        board=board,
        command=command,
        pairs=pairs,
        models=model_table(board),
        settings=settings_table(board),
        averages=average_table(board),
        groups=group_table(board),
        references=reference_table(board),
        families=families,
        notes=_ordered_notes(board),
        mismatch=MISMATCH_PREFIX,
        legend=legend(board),
        table_rows=table_rows,
        heatmap=plots["delta_heatmap.svg"],
        bars=plots["split_averages.svg"],
        significance=SIGNIFICANCE,
        version=__version__,
    )


# The page's big tables are built here rather than in the template: a board of 100 models has 100,000s of cells.


def _score_cells(views: list[dict[str, Any] | None], deltas: list[dict[str, Any] | None], scale: float) -> Markup:
    """The `<td>`s of one language of a family's table: each model's score, then each pair's Δ (texts made of
    numbers only: nothing to escape)."""
    out = []
    for view in views:
        if view is None:
            out.append('<td data-sort="">–</td>')
        else:
            out.append(f'<td class="num" data-sort="{view["value"]}">{cell_text(view)}</td>')
    for c in deltas:
        if c is None:
            out.append('<td data-sort="">–</td>')
            continue
        n = c["n_paired"] if c["n_paired"] is not None else "no samples"
        out.append(
            f'<td class="num delta{" sig" if significant(c) else ""}" data-sort="{c["delta_pp"]}" '
            f'style="{delta_style(c, scale)}" title="n paired = {n}">{delta_text(c)}</td>'
        )
    return Markup("\n".join(out))


def table_rows(rows: list[list[Cell]], num_from: int) -> Markup:
    """The `<tr>`s of a table: cells from `num_from` on (1-based) are numbers; published reference rows marked."""
    out = []
    for row in rows:
        mark = ' class="reference"' if any(isinstance(c, Strong) and c.text.startswith("† ") for c in row) else ""
        cells = "".join(
            (NUM_CELL if i >= num_from else "<td>") + html_escape(str(c)) + "</td>" for i, c in enumerate(row, 1)
        )
        out.append(f"<tr{mark}>{cells}</tr>")
    return Markup("\n".join(out))


NUM_CELL = '<td class="num">'


def _input_files(board: Board) -> list[tuple[Model, Path]]:
    files = []
    for model in board.models:
        for run in model.runs:
            paths = [run.path, *(Path(path) for r in run.tasks.values() for _, path in r.samples)]
            files += [(model, path) for path in dict.fromkeys(paths)]
    return files


def embed_inputs(board: Board, out: Path) -> Path:
    """Copy the results/samples files into out/inputs/<model>/ with a manifest that keeps names and pairing."""
    root, folder = out / INPUTS, slugs(board.models)
    for model, path in _input_files(board):
        target = root / folder[model.name] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    manifest = {
        "title": board.title,
        "description": board.description,
        "metrics": board.metrics,
        "models": [
            {"match": m.key, "name": m.name}
            | ({"base": m.base} if m.base else {})
            | ({"languages": list(m.seen)} if m.seen is not None else {})
            for m in board.models
        ],
    }
    (root / INPUTS_MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return root


def check_board_folder(out: Path, flag: str = "--out") -> None:
    """A board is written into a new or empty folder, or over an earlier board, where a folder can be made."""
    check_replaceable(out, flag, BOARD_MARKERS, "a leaderboard")
    check_writable(out, flag)


def board_owns(relative: PurePath, path: Path) -> bool:
    """Whether an entry of a board folder is the board's (replaced by a rebuild) or another's (kept): its top-level
    entries, all of `inputs`, the plots it draws and the model cards it wrote; not a file a user put beside them."""
    from mlalign_tasks.leaderboard.plots import PLOT_FILES

    top, *inner = relative.parts
    if top not in BOARD_ENTRIES or len(inner) > 1 and top != INPUTS:
        return False
    if not inner or top == INPUTS:
        return True
    if top == "plots":
        return relative.name in PLOT_FILES
    return top != "model_cards" or _is_card(path)


_CARD_SOURCE = "    source:\n      name: mlalign leaderboard\n      url: index.html\n"


def _is_card(path: Path) -> bool:
    """Whether `path` is a model card as `model_card` writes it: `model-index` alone, each result from the board."""
    if path.suffix != ".yaml" or path.is_symlink() or not path.is_file():
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = text.splitlines()[2:]  # after `model-index:` and `- name: ...`
    return (
        text.startswith("model-index:\n- name: ")
        and all(line.startswith(" ") for line in lines)
        and text.count("\n  - task:\n") == text.count(_CARD_SOURCE)
    )


def board_files(out: Path) -> list[Path]:
    """The entries of the board in `out` (not the other files that folder may hold)."""
    return [out / name for name in BOARD_ENTRIES if (out / name).exists()]


def _check_target(out: Path, inputs: list[Path], embed: bool) -> None:
    check_board_folder(out)
    entries = [out.resolve() / name for name in BOARD_ENTRIES]
    inside = [p for p in inputs if any(p.resolve().is_relative_to(entry) for entry in entries)]
    if inside and not (embed and all(p.resolve().is_relative_to(out.resolve() / INPUTS) for p in inside)):
        raise MlalignError(
            f"input {inside[0]} lies inside the board's own files in {out}, which are replaced; move it out "
            f"(inputs in {out / INPUTS} are fine when the board embeds its inputs)"
        )


def write_board(board: Board, out: Path, command: str, inputs: list[Path], embed: bool = True) -> Path:
    """Build the whole board in a temp folder beside `out`, then move its files in (an error leaves `out` untouched;
    files of `out` that the board does not write are kept). The CSVs that need no averages are written while
    `build_board(..., wait=False)`'s process computes them; then the plots and model cards are written by a second
    process (forked, where the platform forks) while this one writes the other tables, the README and the page."""
    _check_target(out, inputs, embed)
    with atomic_dir(out, owns=board_owns) as tmp:
        _write_csv(tmp / "results.csv", board.rows, ROW_FIELDS)  # what needs no averages, while they are computed
        _write_csv(tmp / "comparisons.csv", board.comparisons, list(COMPARISON_FIELDS))
        _write_csv(tmp / "consistency.csv", board.consistency, list(CONSISTENCY_FIELDS))
        _write_csv(tmp / "settings.csv", board.setting_rows, SETTINGS_FIELDS)
        board.settle()
        with Background(_write_figures_and_cards, board, tmp) as figures:
            _write_csv(tmp / "averages.csv", board.averages, list(AVERAGE_FIELDS))
            _write_csv(tmp / "deltas.csv", board.deltas, list(DELTA_FIELDS))
            (tmp / "results.json").write_text(results_json(board, command), encoding="utf-8")
            (tmp / "README.md").write_text(markdown(board, command), encoding="utf-8")
            page = html(board, command, {name: PLOT_SLOT.format(name) for name in PAGE_PLOTS})
            figures.result()
        for name in PAGE_PLOTS:  # the plots are written now
            page = page.replace(PLOT_SLOT.format(name), _data_uri(tmp / "plots" / name, "image/svg+xml"), 1)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        if embed:
            embed_inputs(board, tmp)
    return out


PAGE_PLOTS = ("delta_heatmap.svg", "split_averages.svg")  # the plots the page shows, inline
PLOT_SLOT = "mlalign-plot-slot:{}"  # where the page's plot goes until the plot is written


def _write_figures_and_cards(board: Board, tmp: Path) -> None:
    """The plots and the model cards."""
    from mlalign_tasks.leaderboard.plots import render_plots

    render_plots(board, tmp / "plots")
    cards = tmp / "model_cards"
    cards.mkdir()
    by_model: dict[str, list[dict[str, Any]]] = {}
    for (name, _, _), row in _index(board).items():
        by_model.setdefault(name, []).append(row)
    stems = slugs(board.models)
    for model in board.models:
        if model.adapter or model.base:
            card = model_card(model, by_model.get(model.name, []))
            (cards / f"{stems[model.name]}.yaml").write_text(card, encoding="utf-8")


def results_json(board: Board, command: str) -> str:
    """results.json: the tidy rows plus models, comparisons, consistency, averages and notes."""
    payload = {
        "title": board.title,
        "description": board.description,
        "command": command,
        "lm_eval_versions": board.lm_eval_versions,
        "metrics": board.metrics,
        "models": [
            {
                "name": m.name,
                "base_model": m.pretrained,
                "adapter": m.adapter,
                "compared_with": m.base,
                "trained_on": list(m.seen) if m.seen is not None else None,
                "sources": sorted({source_folder(r.path) for r in m.runs}),
            }
            for m in board.models
        ],
        "options": {
            k: str(v) if not isinstance(v, bool | int) else v
            for k, v in asdict(board.options).items()
            if k not in RESULT_NEUTRAL
        },
        "rows": board.rows,  # ROW_FIELDS and "primary", in that order
        "comparisons": board.comparisons,
        "consistency": board.consistency,
        "averages": board.averages,
        "deltas": board.deltas,
        "settings": board.setting_rows,
        "references": board.references,
        "notes": board.notes,
    }
    return _json_one_item_per_line(payload)


def _json_one_item_per_line(payload: dict[str, Any]) -> str:
    """JSON with each element of a top-level list on its own line: diffable, and written by json's C encoder
    (an `indent` would use the pure-Python one, seconds on a board of 100 models)."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    parts = []
    for key, value in payload.items():
        if isinstance(value, list) and value:
            items = ",\n  ".join(map(encode, value))
            parts.append(f" {encode(key)}: [\n  {items}\n ]")
        else:
            parts.append(f" {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(parts) + "\n}"

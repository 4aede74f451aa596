"""The board's index.html in a real headless Chromium, driven over the DevTools protocol: tables, coloured
delta cells and plots render, a real mouse click on a header sorts, the family filter hides sections."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlalign_tasks.leaderboard import make_leaderboard
from mlalign_tasks.leaderboard.synthetic import Item, write_run

CHROMIUM = os.environ.get("MLALIGN_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
]


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.next_id = 0
        self.exceptions: list[Any] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(msg["params"]["exceptionDetails"])
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the element."""
        x, y = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


@contextmanager
def open_page(url: str, profile: Path) -> Iterator[DevTools]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: run `bash scripts/install_chromium.sh` (or set MLALIGN_CHROMIUM)")
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    tools = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 300
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=120) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools.call("Runtime.enable")
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"  # not about:blank
        while not tools.js(loaded) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield tools
    finally:
        if tools is not None:
            tools.ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def items(right: list[bool], gold: int = 1) -> list[Item]:
    return [Item(gold if r else (gold + 1) % 3, gold) for r in right]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    base_right = {"en": 5, "de": 2, "fr": 6, "sw": 3}
    aligned_right = {"en": 6, "de": 10, "fr": 2, "sw": 7}  # fr gets worse: a red cell
    for name, args, right in (
        ("base", "pretrained=org/base", base_right),
        ("aligned", "pretrained=org/base,peft=runs/qalign", aligned_right),
    ):
        tasks = {
            f"{fam}_{lang}": items([i < k for i in range(10)])
            for lang, k in right.items()
            for fam in ("snli_aligned", "paws_aligned")
        }
        write_run(root / name, args, tasks)
    manifest = root / "m.yaml"
    manifest.write_text("models:\n  - {match: runs/qalign, name: qalign, languages: [de]}\n")
    out = root / "board"
    make_leaderboard([root / "base", root / "aligned"], out, manifest)
    return out


def test_page_renders_sorts_and_filters(board: Path, tmp_path: Path) -> None:
    with open_page((board / "index.html").as_uri(), tmp_path / "profile") as page:
        assert page.js("document.title") == "mlalign leaderboard"
        assert page.js("document.querySelectorAll('table.scores').length") == 2
        rows = page.js(
            "Array.from(document.querySelectorAll('#scores-snli_aligned tbody tr')).map(r => r.cells[0].textContent)"
        )
        assert rows == ["en", "de", "fr", "sw"]
        # every plot is decoded and laid out
        images = page.js(
            "Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth, i.getBoundingClientRect().height])"
        )
        assert [i[0] for i in images] == ["plot-heatmap", "plot-bars"]
        assert all(done and width > 200 and height > 50 for _, done, width, height in images), images
        # delta cells: green up, red down, bold when significant
        cells = page.js(
            "Array.from(document.querySelectorAll('#scores-snli_aligned td.delta')).map(td => "
            "[td.textContent.trim(), getComputedStyle(td).backgroundColor, getComputedStyle(td).fontWeight])"
        )
        by_sign = {text[0]: (bg, weight) for text, bg, weight in cells}
        green = [int(v) for v in by_sign["+"][0][5:-1].split(",")[:3]]
        red = [int(v) for v in by_sign["-"][0][5:-1].split(",")[:3]]
        assert green[1] > green[0] and red[0] > red[1]
        assert [c[2] for c in cells if c[0].startswith("+80.0*")] == ["700"]
        # a real click on the delta header sorts descending, a second click ascending
        delta_col = "#scores-snli_aligned thead th:last-child"
        page.click(delta_col)
        order = "Array.from(document.querySelectorAll('#scores-snli_aligned tbody tr')).map(r => [r.cells[0].textContent, parseFloat(r.cells[r.cells.length - 1].dataset.sort)])"
        after = page.js(order)
        assert [lang for lang, _ in after] == ["de", "sw", "en", "fr"]
        assert [d for _, d in after] == sorted((d for _, d in after), reverse=True)
        assert page.js(f"document.querySelector('{delta_col}').className") == "sorted-desc"
        page.click(delta_col)
        assert [lang for lang, _ in page.js(order)] == ["fr", "en", "sw", "de"]
        # filter by task family
        page.js(
            "(() => { const s = document.getElementById('family-filter'); s.value = 'paws_aligned'; s.dispatchEvent(new Event('change')); })()"
        )
        visible = page.js(
            "Array.from(document.querySelectorAll('section.family')).map(s => [s.dataset.family, s.offsetParent !== null])"
        )
        assert visible == [["snli_aligned", False], ["paws_aligned", True]]
        assert page.exceptions == []


def test_readme_from_hostile_results_renders_as_text(tmp_path: Path) -> None:
    """Model paths, adapter, task and family names, metric, lm_eval_version, manifest text with newlines and names
    with `|` (a line break in a name is refused), all carrying HTML and Markdown: the README rendered by
    Python-Markdown (MkDocs' renderer, which does not sanitise) runs no script in Chromium, shows the names as written, and keeps every table intact."""
    import markdown

    payload = {i: f"<img src=x onerror=window.pwned={i}>" for i in range(1, 8)}
    base = {"pretrained": f"org/{payload[1]}"}
    aligned = {"pretrained": f"org/{payload[1]}", "peft": f"{payload[2]}{{: onclick=window.pwned=9 }}"}
    tasks = {f"snli_aligned_{lang}": items([i < k for i in range(10)]) for lang, k in (("en", 5), ("de", 3))}
    for name, args in (("base", base), ("aligned", aligned)):
        path = write_run(tmp_path / name, args, tasks, lm_eval_version="0.4.13<script>window.pwned=3</script>")
        data = json.loads(path.read_text())
        data["results"][f"x{payload[4]}_de"] = {"acc,none": 0.5}  # not <family>_<lang>: noted as ignored
        for result in data["results"].values():
            result[f"acc`{payload[5]}`,none"] = result.pop("acc,none")
        path.write_text(json.dumps(data))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "title": "# Board <script>window.pwned=6</script>",
                "description": f"- [link](javascript:window.pwned=7)\n| a | b |\n{payload[6]}",
                "models": [{"match": base["pretrained"], "name": f"base | {payload[7]} second line"}],
            }
        )
    )
    out = tmp_path / "board"
    make_leaderboard([tmp_path / "base", tmp_path / "aligned"], out, manifest)
    body = markdown.markdown((out / "README.md").read_text(), extensions=["tables", "fenced_code", "attr_list"])
    page_file = tmp_path / "readme.html"
    page_file.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>readme</title></head><body>{body}</body></html>"
    )
    with open_page(page_file.as_uri(), tmp_path / "profile") as page:
        assert page.js("window.pwned === undefined && document.title === 'readme'")
        assert page.js("document.scripts.length") == 0
        handlers = page.js(
            "Array.from(document.querySelectorAll('*')).flatMap(e => e.getAttributeNames().filter(a => a.startsWith('on')))"
        )
        assert handlers == []
        assert page.js("Array.from(document.links).map(a => a.href)") == []
        assert page.js("Array.from(document.images).map(i => i.getAttribute('src'))") == [
            "plots/delta_heatmap.png", "plots/split_averages.png"
        ]  # fmt: skip
        widths = page.js(
            "Array.from(document.querySelectorAll('table')).map(t => Array.from(t.rows).map(r => r.cells.length))"
        )
        assert widths and all(len(set(rows)) == 1 for rows in widths), widths
        text = page.js("document.body.innerText")
        for shown in (
            f"base | {payload[7]} second line",
            payload[1],
            payload[2],
            payload[4],
            f"acc`{payload[5]}`,none",
        ):
            assert shown in text, shown
        assert page.js("document.querySelector('h1').textContent") == "# Board <script>window.pwned=6</script>"
        assert page.exceptions == []


def _with(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _xnli_group(data: dict[str, Any]) -> None:
    """lm-eval's own group entry (its aggregate over the languages), as it writes it."""
    entry = {"alias": "xnli", "acc,none": 0.625, "acc_stderr,none": 0.05}
    data["group_subtasks"]["xnli"] = ["xnli_en", "xnli_de"]
    data["results"]["xnli"] = data.setdefault("groups", {})["xnli"] = entry


@pytest.fixture(scope="module")
def full_board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base and its aligned model on one of our families and lm-eval's built-in XNLI (with its group score),
    a third model run with two seeds, and a published reference row."""
    root = tmp_path_factory.mktemp("browser-full")
    right = {"base": {"en": 5, "de": 2}, "aligned": {"en": 6, "de": 9}}
    for name, args in (("base", "pretrained=org/base"), ("aligned", "pretrained=org/base,peft=runs/qalign")):
        tasks = {f"{fam}_{lang}": items([i < k for i in range(10)]) for lang, k in right[name].items()
                 for fam in ("snli_aligned", "xnli")}  # fmt: skip
        _with(write_run(root / name, args, tasks), _xnli_group)
    for seed, k in ((1, 4), (2, 8)):
        path = write_run(
            root / f"seed{seed}", "pretrained=org/other", {"snli_aligned_de": items([i < k for i in range(10)])}
        )
        _with(path, lambda data, seed=seed: data["config"].update(random_seed=seed))
    manifest = root / "m.yaml"
    reference = {"model": "Paper-7B", "benchmark": "xnli", "languages": ["en", "de"], "value": 61.5,
                 "source": "https://example.org/paper"}  # fmt: skip
    manifest.write_text(
        yaml.safe_dump(
            {"models": [{"match": "runs/qalign", "name": "qalign", "languages": ["de"]}], "references": [reference]}
        )  # fmt: skip
    )
    out = root / "board"
    make_leaderboard([root / "base", root / "aligned", root / "seed1", root / "seed2"], out, manifest)
    return out


def _table(page: DevTools, selector: str) -> list[list[str]]:
    return page.js(
        f"Array.from(document.querySelectorAll({json.dumps(selector + ' tbody tr')}))"
        ".map(r => Array.from(r.cells).map(c => c.innerText.trim()))"
    )


def test_new_columns_and_reference_rows_render(full_board: Path, tmp_path: Path) -> None:
    """Wilson intervals, seeds as mean ± sd, lm-eval's group scores, per-model averages with the Δ's bootstrap
    interval, each model's settings, and published reference rows, visibly apart and in no statistic."""
    with open_page((full_board / "index.html").as_uri(), tmp_path / "profile") as page:
        snli = _table(page, "#scores-snli_aligned")
        # 5 of 10 right: Wilson 95% [23.7, 76.3]; the model run with seeds 4/10 and 8/10: 60 ± 28.3 sd
        assert snli == [
            ["en", "", "60.0 [31.3, 83.2]", "50.0 [23.7, 76.3]", "–", "+10.0 (p=1)"],
            ["de", "qalign", "90.0 [59.6, 98.2]", "20.0 [5.7, 51.0]", "60.0 ± 28.3 sd (2 runs)", "+70.0* (p=0.0156)"],
        ]
        header = page.js("Array.from(document.querySelectorAll('#scores-xnli thead th')).map(t => t.innerText)")
        assert header == ["language", "seen by", "qalign", "base", "other", "Δ qalign (pp)"]
        assert _table(page, "#groups") == [["xnli", "acc,none", "62.5 ± 5.0", "62.5 ± 5.0", "–"]]
        averages = _table(page, "#averages")
        own = {row[0]: row[2:] for row in averages if row[1] == "all its cells"}
        assert own == {"base": ["50.0", "–", "–", "20.0"], "qalign": ["60.0", "90.0", "–", "90.0"],
                       "other": ["–", "–", "–", "60.0"]}  # fmt: skip
        (delta,) = [row for row in averages if row[0].startswith("Δ qalign − base")]
        assert delta[2:] == ["+10.0 [+0.0, +25.0]", "+70.0 [+50.0, +90.0]", "–", "+70.0 [+50.0, +90.0]"]
        settings = {(row[0], row[1]): row for row in _table(page, "#settings")}
        assert set(settings) == {(m, f) for m in ("base", "qalign") for f in ("snli_aligned", "xnli")} | {
            ("other", "snli_aligned")
        }
        assert {row[4] for row in settings.values()} == {"0"} and {row[6] for row in settings.values()} == {"10 of 10"}
        # the published row: its own look (hatched, italic), its value as published, kept out of the averages
        references = _table(page, "#references")
        assert references == [
            ["xnli", "en, de", "qalign", "75.0", "this board"],
            ["xnli", "en, de", "base", "35.0", "this board"],
            ["xnli", "en, de", "† Paper-7B (published)", "61.5", "https://example.org/paper"],
        ]
        styles = page.js(
            "Array.from(document.querySelectorAll('#references tbody tr')).map(r => "
            "[r.className, getComputedStyle(r.cells[0]).fontStyle, getComputedStyle(r.cells[0]).backgroundImage])"
        )
        assert [s[0] for s in styles] == ["", "", "reference"]
        assert styles[2][1] == "italic" and "gradient" in styles[2][2]
        assert styles[0][1] == "normal" and styles[0][2] == "none"
        assert not any("Paper-7B" in cell for row in averages for cell in row)
        # every new table is laid out and shows its cells whole
        cut = page.js(
            "Array.from(document.querySelectorAll('#settings td, #groups td, #averages td, #references td, "
            "table.scores td')).filter(td => td.offsetParent === null || td.scrollWidth > td.clientWidth + 1)"
            ".map(td => td.innerText)"
        )
        assert cut == []
        assert page.exceptions == []

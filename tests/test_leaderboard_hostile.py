"""The leaderboard against hostile results and folders: what it does not own is kept, what lies outside the results
is not read, spreadsheet formulas and deep JSON are defused, odd model names and a kill mid-write break nothing."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files import atomic
from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
from mlalign_tasks.leaderboard.plots import PLOT_FILES
from mlalign_tasks.leaderboard.synthetic import Item, write_run

DATE = "2026-01-01T00-00-00.000000"


def mc(right: int, n: int = 10) -> list[Item]:
    return [Item(i % 3 if i < right else (i + 1) % 3, i % 3) for i in range(n)]


def write_pair(root: Path, base: str = "org/base", adapter: str = "runs/qalign") -> tuple[Path, Path]:
    """A base and an aligned run on snli_aligned en/de (the aligned model worse on en: a negative delta)."""
    write_run(root / "base", {"pretrained": base}, {"snli_aligned_en": mc(6), "snli_aligned_de": mc(2)})
    write_run(
        root / "aligned", {"pretrained": base, "peft": adapter}, {"snli_aligned_en": mc(4), "snli_aligned_de": mc(7)}
    )
    return root / "base", root / "aligned"


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_rebuilding_a_board_keeps_what_it_did_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A board published from a gh-pages checkout: its .git, CNAME and a page the user added survive every rebuild;
    only the board's own files are replaced (and `inputs` removed when no longer embedded)."""
    inputs = write_pair(tmp_path)
    out = tmp_path / "site"
    make_leaderboard(list(inputs), out)
    (out / ".git" / "objects").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/gh-pages\n")
    (out / ".git" / "objects" / "ab").write_bytes(b"\x00blob")
    (out / "CNAME").write_text("board.example.org\n")
    (out / "notes").mkdir()
    (out / "notes" / "about.md").write_text("added by the user")
    theirs = {k: v for k, v in files(out).items() if k.startswith((".git/", "CNAME", "notes/"))}
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"title": "Second edition"}))
    make_leaderboard(list(inputs), out, manifest)
    assert (out / "README.md").read_text().startswith("# Second edition") and (out / "inputs").is_dir()
    monkeypatch.chdir(out)  # `--out .` from inside the checkout
    make_leaderboard(list(inputs), Path("."), manifest, BoardOptions(embed=False))
    assert not (out / "inputs").exists()
    assert {k: v for k, v in files(out).items() if k in theirs} == theirs
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []


def test_a_board_killed_while_writing_leaves_the_old_one_and_no_leftovers(tmp_path: Path) -> None:
    """`mlalign leaderboard` killed (SIGKILL) while it renders: the old board and the user's file are intact, and
    the next build removes the killed one's temporary folder."""
    inputs = write_pair(tmp_path)
    out = tmp_path / "board"
    make_leaderboard(list(inputs), out)
    (out / "CNAME").write_text("mine\n")
    before = files(out)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mlalign_tasks.leaderboard import make_leaderboard, plots\n"
        "plots.render_plots = lambda board, out: time.sleep(300)\n"
        f"make_leaderboard([Path({str(inputs[0])!r}), Path({str(inputs[1])!r})], Path({str(out)!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob(".board.tmp-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "the board was not being written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".board.tmp-*")) and files(out) == before
    make_leaderboard(list(inputs), out)
    assert not list(tmp_path.glob(".board.*")) and (out / "CNAME").read_text() == "mine\n"


def user_files(out: Path) -> dict[str, bytes]:
    """Files a user adds to a published board: beside it, in its plots and model cards, and a git checkout."""
    added = {
        "CNAME": b"board.example.org\n", ".git/HEAD": b"ref: refs/heads/gh-pages\n", "plots/by-hand.png": b"\x89PNG",
        "plots/mine/notes.md": b"mine", "model_cards/README.md": b"# cards", "model_cards/hand-made.yaml": b"license: mit\n",
    }  # fmt: skip
    for name, data in added.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    return added


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_rebuild_keeps_the_users_files_inside_plots_and_model_cards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """Only the plots the board draws and the model cards it wrote are the board's: a user's files in `plots/` and
    `model_cards/` survive a rebuild, a card of a model no longer on the board goes, and a user's file named like
    a card the board now writes stops the build in one line before anything moves. The same where the system
    cannot swap two folders in one step (a flag renameat2 refuses with EINVAL, as a filesystem without it does)."""
    if swap == "two renames":
        monkeypatch.setattr(atomic, "RENAME_EXCHANGE", 1 << 30)
    base, aligned = write_pair(tmp_path)
    out = tmp_path / "board"
    make_leaderboard([base, aligned], out)
    theirs = user_files(out)
    (out / "model_cards" / "old-model.yaml").write_bytes((out / "model_cards" / "qalign.yaml").read_bytes())
    make_leaderboard([base, aligned], out)
    assert {k: v for k, v in files(out).items() if k in theirs} == theirs
    assert sorted(p.name for p in (out / "model_cards").iterdir()) == ["README.md", "hand-made.yaml", "qalign.yaml"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(["by-hand.png", "mine", *PLOT_FILES])
    (out / "model_cards" / "qalign.yaml").write_text("my own card\n")
    before = files(out)
    with pytest.raises(MlalignError, match=r"model_cards/qalign.yaml is not a file this command writes.*move yours"):
        make_leaderboard([base, aligned], out)
    assert files(out) == before and not list(tmp_path.glob(".board.*"))


KILL_AT_MOVE = """
import os, signal, sys
from pathlib import Path
from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
from mlalign_tasks.leaderboard.plots import PLOT_FILES

moves, kill_at = 0, int(sys.argv[1])


def counted(move):
    def at_move(*args, **kwargs):
        global moves
        moves += 1
        if moves == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return move(*args, **kwargs)

    return at_move


os.rename, os.replace = counted(os.rename), counted(os.replace)
make_leaderboard([Path(sys.argv[2]), Path(sys.argv[3])], Path(sys.argv[4]), Path(sys.argv[5]), BoardOptions(embed=False))
print(moves)
"""


def test_a_board_killed_at_any_move_is_the_old_or_the_new_one(tmp_path: Path) -> None:
    """A rebuild killed (SIGKILL) at each of its file moves in turn leaves, at every moment, the old board or the new
    one (never the new README beside old plots); the users' files are in the board or moved back by the next build."""
    base, aligned = write_pair(tmp_path)
    out, manifest = tmp_path / "board", tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"title": "Second edition"}))
    make_leaderboard([base, aligned], out, options=BoardOptions(embed=False))
    theirs = user_files(out)
    old = files(out)
    pristine = tmp_path / "pristine"
    shutil.copytree(out, pristine, symlinks=True)
    script = [sys.executable, "-c", KILL_AT_MOVE]
    paths = [str(base), str(aligned), str(out), str(manifest)]
    done = subprocess.run([*script, "0", *paths], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    new = files(out)
    assert new != old and {k: v for k, v in new.items() if k in theirs} == theirs and int(done.stdout) >= len(theirs)
    for kill_at in range(1, int(done.stdout) + 1):
        shutil.rmtree(out)
        shutil.copytree(pristine, out, symlinks=True)
        killed = subprocess.run([*script, str(kill_at), *paths], capture_output=True, text=True)
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr)
        seen = {k: v for k, v in files(out).items() if k not in theirs}
        assert seen in (
            {k: v for k, v in old.items() if k not in theirs},
            {k: v for k, v in new.items() if k not in theirs},
        ), kill_at
        make_leaderboard([base, aligned], out, manifest, BoardOptions(embed=False))
        assert files(out) == new and not list(tmp_path.glob(".board.*")), kill_at


def test_a_board_on_a_full_disk_fails_in_one_line_and_keeps_the_old_one(
    tmp_path: Path, file_size_limit: list[str]
) -> None:
    """Every file of the board is checked as it is written: on a full disk (here a file size limit, so that writes
    fail with EFBIG as they would with ENOSPC) the build stops with one line and the old board stays as it was."""
    base, aligned = write_pair(tmp_path)
    out = tmp_path / "board"
    make_leaderboard([base, aligned], out)
    before = files(out)
    limit = max(len(data) for name, data in before.items() if "/" not in name) // 2
    full = subprocess.run(
        [*file_size_limit, str(limit), sys.executable, "-m", "mlalign_tasks.cli", "leaderboard", str(base),
         str(aligned), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert full.returncode == 2 and full.stderr.startswith("error: File too large"), full.stderr
    assert full.stderr.count("\n") == 1 and files(out) == before and not list(tmp_path.glob(".board.*"))


HOLD_IN_WORKERS = """
import os, sys, time
from pathlib import Path
from mlalign_tasks.runtime.parallel import process_map


def hold(item):
    (Path(sys.argv[1]) / str(os.getpid())).touch()
    time.sleep(600)


process_map(hold, list(range(16)), at_least=1)
"""


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie that nobody reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2, reason="workers need Linux and 2 cores"
)
def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    """The parent killed outright (SIGKILL) while its workers parse: no worker outlives it."""
    parent = subprocess.Popen([sys.executable, "-c", HOLD_IN_WORKERS, str(tmp_path)])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 600
        while len(workers := [int(p.name) for p in tmp_path.iterdir()]) < 2:
            assert parent.poll() is None and time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 300
        while any(map(alive, workers)):
            assert time.monotonic() < deadline, "a worker outlived its killed parent"
            time.sleep(0.05)
    finally:
        for pid in filter(alive, workers):
            os.kill(pid, signal.SIGKILL)


def test_task_names_and_links_cannot_reach_outside_the_results(tmp_path: Path) -> None:
    """A task named `x/../../private/samples_mgsm_aligned_de` would make the samples path of that task a file outside
    the results folder (copied into the board's inputs); it is not a <family>_<language> task. A samples file or
    a results file that links outside is refused in one line."""
    secret = "SECRET-PRIVATE-DATA"
    path = write_run(tmp_path / "shared", {"pretrained": "org/m"}, {"snli_aligned_de": mc(3)}, date_id=DATE)
    results = path.parent  # the folder given to the leaderboard
    data = json.loads(path.read_text())
    task = "x/../../private/samples_mgsm_aligned_de"
    data["results"][task] = {"exact_match,none": 1.0}
    path.write_text(json.dumps(data))
    (results / "samples_x").mkdir()
    private = tmp_path / "shared" / "private"
    private.mkdir()
    leaked = private / f"samples_mgsm_aligned_de_{DATE}.jsonl"
    leaked.write_text(json.dumps({"doc_id": 0, "secret": secret}) + "\n")
    assert (results / f"samples_{task}_{DATE}.jsonl").resolve() == leaked  # the path the task name makes
    out = tmp_path / "board"
    board = make_leaderboard([results], out)
    assert [m.name for m in board.models] == ["m"] and {r["task"] for r in board.rows} == {"snli_aligned_de"}
    assert any(task in note for note in board.notes)
    assert not any(secret.encode() in content for content in files(out).values())

    samples = results / f"samples_snli_aligned_de_{DATE}.jsonl"
    samples.unlink()
    samples.symlink_to(leaked)
    with pytest.raises(MlalignError, match=r"samples_snli_aligned_de_.* leads outside its results folder") as err:
        make_leaderboard([results], tmp_path / "board2")
    assert "\n" not in str(err.value) and not (tmp_path / "board2").exists()
    samples.unlink()
    (results / "other").mkdir()
    (results / "other" / f"results_{DATE}.json").symlink_to(leaked)
    with pytest.raises(MlalignError, match=r"other/results_.* leads outside its results folder"):
        make_leaderboard([results], tmp_path / "board3")


def test_csv_cells_cannot_be_formulas(tmp_path: Path) -> None:
    """Model and adapter names beginning with = + - @ are written with a leading `'` in every CSV; the numbers
    (negative deltas included) are unchanged."""
    base, adapter = "=cmd|' /C calc'!A0", "@SUM(1+1)*cmd"
    inputs = write_pair(tmp_path, base=base, adapter=adapter)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"models": [{"match": adapter, "name": "-2+3"}]}))
    out = tmp_path / "board"
    board = make_leaderboard(list(inputs), out, manifest)
    assert any(c["delta_pp"] < 0 for c in board.comparisons)
    for name in ("results.csv", "comparisons.csv", "averages.csv", "consistency.csv"):
        with (out / name).open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert rows, name
        for row in rows:
            for key, cell in row.items():
                try:
                    float(cell)
                except ValueError:
                    assert not cell.startswith(("=", "+", "-", "@")), (name, key, cell)
    with (out / "comparisons.csv").open(newline="", encoding="utf-8") as f:
        written = [float(r["delta_pp"]) for r in csv.DictReader(f)]
    assert written == [c["delta_pp"] for c in board.comparisons]
    with (out / "results.csv").open(newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["base_model"] == "'" + base and "'-2+3" in (out / "averages.csv").read_text()


def test_deep_json_and_yaml_are_one_line_errors(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    results = tmp_path / f"results_{DATE}.json"
    results.write_text(deep)
    with pytest.raises(MlalignError, match="nests its JSON too deeply"):
        make_leaderboard([results], tmp_path / "board")
    inputs = write_pair(tmp_path)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(deep)
    with pytest.raises(MlalignError, match="manifest .* nests deeper than"):
        make_leaderboard(list(inputs), tmp_path / "board", manifest)
    (samples,) = inputs[0].glob("*/samples_snli_aligned_de_*.jsonl")
    samples.write_text(deep + "\n")
    with pytest.raises(MlalignError, match="is not an lm-eval sample record"):
        make_leaderboard(list(inputs), tmp_path / "board")
    assert not (tmp_path / "board").exists()


def test_model_names_that_are_paths_or_mathtext(tmp_path: Path) -> None:
    """Models named `..` and `manifest.yaml` (file names inside the board's inputs) and `$\\frac{a$` (mathtext for
    matplotlib): the board builds, embeds each model's files in its own folder and rebuilds from them."""
    inputs = write_pair(tmp_path)
    third = tmp_path / "third"
    write_run(third, {"pretrained": "org/base", "peft": "runs/other"}, {"snli_aligned_de": mc(5)})
    manifest = tmp_path / "m.yaml"
    names = {"org/base": "..", "runs/qalign": "manifest.yaml", "runs/other": "$\\frac{a$"}
    manifest.write_text(yaml.safe_dump({"models": [{"match": k, "name": v} for k, v in names.items()]}))
    out = tmp_path / "board"
    first = make_leaderboard([*inputs, third], out, manifest)
    assert sorted(m.name for m in first.models) == sorted(names.values())
    folders = sorted(p.name for p in (out / "inputs").iterdir() if p.is_dir())
    assert len(folders) == 3 and ".." not in folders and "manifest.yaml" not in folders
    assert (out / "inputs" / "manifest.yaml").is_file() and (out / "plots" / "delta_heatmap.svg").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    again = make_leaderboard([out / "inputs"], out, out / "inputs" / "manifest.yaml")
    assert [{**r, "source": ""} for r in again.rows] == [{**r, "source": ""} for r in first.rows]
    assert {r["source"] for r in again.rows} == set(folders)  # read from the copies


@pytest.mark.parametrize(
    ("where", "name"),
    [("base", "org/\r=1+1"), ("adapter", "runs/q\x00align"), ("base", "org/\ud800x"), ("task", "snli_aligned\r_de")],
)
def test_control_characters_in_names_are_refused(tmp_path: Path, where: str, name: str) -> None:
    """A carriage return (it would split a CSV row and start the next with a live formula), a NUL or a lone
    surrogate in a model, adapter or task name: one line naming it, and no board."""
    inputs = write_pair(tmp_path)
    (results,) = inputs[1].rglob("results_*.json")
    data = json.loads(results.read_text())
    if where == "task":
        data["results"][name] = data["results"]["snli_aligned_de"]
    else:
        data["config"]["model_args"]["pretrained" if where == "base" else "peft"] = name
    results.write_text(json.dumps(data))
    out = tmp_path / "board"
    with pytest.raises(MlalignError, match=f"the {'model' if where == 'base' else where} .* holds the character") as e:
        make_leaderboard(list(inputs), out)
    assert "\n" not in str(e.value) and not out.exists()
    inputs = write_pair(tmp_path / "fine")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"models": [{"match": "runs/qalign", "name": name}]}))
    with pytest.raises(MlalignError, match=r"models\[0\]\.name .* holds the character"):
        make_leaderboard(list(inputs), out, manifest)
    assert not out.exists()


def test_every_csv_row_stays_one_row(tmp_path: Path) -> None:
    """Free text from a results file (here its n-shot, shown in settings.csv) holding a carriage return and a NUL:
    each is written as `\\xNN`, so a reader that ends rows at a bare carriage return still sees one row per line
    and no cell starts a formula."""
    inputs = write_pair(tmp_path)
    for folder in inputs:
        (results,) = folder.rglob("results_*.json")
        data = json.loads(results.read_text())
        data["n-shot"] = {task: "0\r=1+1\x00" for task in data["results"]}
        results.write_text(json.dumps(data))
    out = tmp_path / "board"
    make_leaderboard(list(inputs), out)
    for name in ("results.csv", "comparisons.csv", "consistency.csv", "settings.csv", "averages.csv", "deltas.csv"):
        with (out / name).open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert rows and all(len(row) == len(rows[0]) for row in rows), name
        assert not any(cell.startswith("=") for row in rows for cell in row), name
        assert "\x00" not in (out / name).read_text() and "\r" not in (out / name).read_text()
    assert "0\\x0d=1+1\\x00" in (out / "settings.csv").read_text()


HOSTILE_SAMPLES = {
    "doc_id text": ({"doc_id": "abc"}, r"doc_id 'abc' is not an lm-eval item number"),
    "doc_id null": ({"doc_id": None}, "doc_id None is not an lm-eval item number"),
    "doc_id 2**70": ({"doc_id": 2**70}, "doc_id 1180591620717411303424 is not an lm-eval item number"),
    "resps text": ({"filtered_resps": [["abc", "False"]]}, r"filtered_resps \[\['abc', 'False'\]\] is neither"),
}


@pytest.mark.parametrize("case", list(HOSTILE_SAMPLES))
def test_hostile_sample_records_are_one_line_errors(tmp_path: Path, case: str) -> None:
    change, message = HOSTILE_SAMPLES[case]
    inputs = write_pair(tmp_path)
    (samples,) = inputs[1].rglob("samples_snli_aligned_de_*.jsonl")
    lines = samples.read_text().splitlines()
    lines[3] = json.dumps(json.loads(lines[3]) | change)
    samples.write_text("\n".join(lines) + "\n")
    out = tmp_path / "board"
    with pytest.raises(MlalignError, match=rf"{samples.name}:4: {message}") as e:
        make_leaderboard(list(inputs), out)
    assert "\n" not in str(e.value) and not out.exists()


def test_lone_surrogate_answers_and_text_counts_still_build(tmp_path: Path) -> None:
    """An answer holding a lone surrogate is an answer like any other; n-samples counts given as strings count as
    unknown: the board builds."""
    inputs = write_pair(tmp_path)
    (samples,) = inputs[1].rglob("samples_snli_aligned_de_*.jsonl")
    lines = samples.read_text().splitlines()
    lines[0] = json.dumps(json.loads(lines[0]) | {"filtered_resps": ["\ud800"]})
    samples.write_text("\n".join(lines) + "\n")
    for folder in inputs:  # both runs, so that they agree on their (unknown) item counts
        (results,) = folder.rglob("results_*.json")
        data = json.loads(results.read_text())
        data["n-samples"] = {task: {"original": "10", "effective": "10"} for task in data["results"]}
        results.write_text(json.dumps(data))
    board = make_leaderboard(list(inputs), tmp_path / "board")
    assert {row["language"] for row in board.rows} == {"en", "de"}

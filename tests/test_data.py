"""Data layer: registry, resolution order, and verified downloads against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlalign_tasks.errors import DataError
from mlalign_tasks.files import data

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(mirror_http, tmp_path, monkeypatch):
    """The mirror's HTTP server as the download source, an empty cache, no data directory; `mode` reset after."""
    mirror_http.mode, mirror_http.sent = "ok", 0
    monkeypatch.setenv("MLALIGN_DATA_URL", mirror_http.url)
    monkeypatch.delenv("MLALIGN_DATA_DIR")
    monkeypatch.setenv("MLALIGN_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("MLALIGN_CACHE_DIR", str(tmp_path / "cache"))
    yield mirror_http
    mirror_http.mode = "ok"


def cache_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_registry_pins_every_mirror_file(shared_data):
    names = {p.relative_to(shared_data).as_posix() for p in shared_data.rglob("*") if p.is_file()} - {"README.md"}
    by_sha256 = {name for name, e in data.registry().items() if e.sha256}
    assert names == by_sha256
    for entry in data.registry().values():
        assert (len(entry.sha256 or "") == 64 and entry.size) or (len(entry.git_blob or "") == 40 and not entry.sha256)
        assert entry.commit[:7] in entry.source()  # the download URL, or the scripts a packaged file came from


def test_packaged_prompts_are_the_mirrors_byte_for_byte(shared_data, tmp_path, monkeypatch):
    """The paper tasks' prompts, label words and language names ship in the package, with their provenance, and
    are used when no data directory or cache holds them, offline too."""
    entry = data.lookup("paper_tasks/prompts.json")
    packaged = Path(data.__file__).parents[1] / "resources" / entry.packaged
    assert packaged.read_bytes() == (shared_data / entry.name).read_bytes()
    assert data.sha256_file(packaged) == entry.sha256
    assert entry.repo == "Shimao-Zhang/LLM-Multilingual-Learner" and len(entry.commit) == 40
    assert entry.extracted_from == (
        "emotion_eval_2shot_enout.py",
        "snli_eval_6shot_enout.py",
        "paws_eval_4shot_enout.py",
    )
    monkeypatch.delenv("MLALIGN_DATA_DIR")
    monkeypatch.setenv("MLALIGN_CACHE_DIR", str(tmp_path / "cache"))
    assert data.resolve(entry.name) == packaged
    assert data.locate(entry) == (packaged, "the package")


@pytest.mark.parametrize("how", ["env", "argument"])
def test_a_data_dir_that_is_not_a_folder_is_an_error(tmp_path, monkeypatch, how):
    missing = tmp_path / "no-such-dir"
    if how == "env":
        monkeypatch.setenv("MLALIGN_DATA_DIR", str(missing))
    with pytest.raises(DataError, match=f"(MLALIGN_DATA_DIR=|--data-dir ){missing} is not a directory.*leave it unset"):
        data.resolve("mgsm/mgsm_de.tsv", data_dir=missing if how == "argument" else None)


def test_files_not_mirrored_are_pinned_by_the_blob_ids_the_mirror_lists(shared_data):
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| \S+ @ ([0-9a-f]{40}) \| `([^`]+)` \| `([0-9a-f]{40})` \|$", readme, flags=re.M)
    assert len(listed) == 43
    by_blob = {(e.commit, e.path, e.git_blob) for e in data.registry().values() if e.git_blob}
    # and GSM8KInstruct's nine non-English sets, pinned by scripts/pin_data.py from QAlign's tree
    gsm8k = {
        (e.commit, e.path, e.git_blob) for n, e in data.registry().items() if n.startswith("gsm8k/") and e.git_blob
    }
    assert len(gsm8k) == 9 and by_blob == set(listed) | gsm8k
    for name in ("question_translation/gsm8k/bn-en/train.bn", "question_translation/gsm8k/th-en/train.th"):
        assert data.lookup(name).git_blob and not (shared_data / name).exists()
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pin_data.py"), "--check", str(shared_data)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr  # the committed registry is exactly what the mirror pins


def test_git_blob_id_is_what_git_names_the_content(shared_data, tmp_path):
    path = shared_data / "question_translation/gsm8k/bn-en/train.en"
    assert data.git_blob_id(path) == "1b851d974a549372bdf858d5d3ea88ae8c12e629"  # the mirror README's value
    for sample in (shared_data / "mgsm/mgsm_de.tsv", tmp_path / "empty"):
        sample.touch()
        git = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, text=True, check=True)
        assert data.git_blob_id(sample) == git.stdout.strip()


@pytest.fixture
def blob_pinned(server, shared_data, monkeypatch):
    """The registry with a mirrored file pinned by its git blob id only (as the files the mirror lacks are)."""
    name = "question_translation/gsm8k/bn-en/train.en"
    git = subprocess.run(["git", "hash-object", str(shared_data / name)], capture_output=True, text=True, check=True)
    entry = dataclasses.replace(data.lookup(name), sha256=None, size=None, git_blob=git.stdout.strip())
    pinned = {**data.registry(), name: entry}
    monkeypatch.setattr(data, "registry", lambda: pinned)
    return entry


def test_download_verified_by_git_blob_id(blob_pinned, tmp_path, shared_data):
    path = data.resolve(blob_pinned.name)
    assert path == tmp_path / "cache" / blob_pinned.name
    assert path.read_bytes() == (shared_data / blob_pinned.name).read_bytes()
    path.write_bytes(path.read_bytes()[:-1])  # a damaged cached copy is caught too
    with pytest.raises(DataError, match=f"checksum mismatch for {blob_pinned.name} in the cache.*expected git blob"):
        data.resolve(blob_pinned.name)


@pytest.mark.parametrize("mode", ["corrupt", "cut"])
def test_blob_pinned_download_refuses_a_changed_or_truncated_file(blob_pinned, server, tmp_path, shared_data, mode):
    server.mode = mode
    size = (shared_data / blob_pinned.name).stat().st_size
    got = size if mode == "corrupt" else size // 2  # no pinned size: the blob id alone catches the cut
    with pytest.raises(
        DataError, match=rf"checksum mismatch .*\({got} bytes\): expected git blob {blob_pinned.git_blob}"
    ):
        data.resolve(blob_pinned.name)
    assert cache_files(tmp_path) == []


def test_explicit_dir_is_used_and_verified(shared_data):
    path = data.resolve("mgsm/mgsm_de.tsv")
    assert path.resolve() == (shared_data / "mgsm/mgsm_de.tsv").resolve()
    assert data.sha256_file(path) == data.lookup("mgsm/mgsm_de.tsv").sha256


def test_corrupt_explicit_file_is_reported(tmp_path, monkeypatch, shared_data):
    (tmp_path / "mgsm").mkdir()
    shutil.copy(shared_data / "mgsm/mgsm_en.tsv", tmp_path / "mgsm/mgsm_en.tsv")
    with open(tmp_path / "mgsm/mgsm_en.tsv", "a") as f:
        f.write("extra\t1\n")
    monkeypatch.setenv("MLALIGN_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="checksum mismatch for mgsm/mgsm_en.tsv.*restore"):
        data.resolve("mgsm/mgsm_en.tsv")


def test_offline_missing_names_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MLALIGN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLALIGN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"msvamp/test_Thai.json not found.*offline.*mlalign data fetch"):
        data.resolve("msvamp/test_Thai.json")


def test_unknown_name_and_pattern():
    with pytest.raises(DataError, match="unknown data file"):
        data.resolve("mgsm/mgsm_xx.tsv")
    with pytest.raises(DataError, match="no data file matches"):
        data.select(["nothing/*"])


def test_download_success_into_cache(server, tmp_path):
    path = data.resolve("mgsm/mgsm_sw.tsv")
    assert path == tmp_path / "cache/mgsm/mgsm_sw.tsv"
    assert data.sha256_file(path) == data.lookup("mgsm/mgsm_sw.tsv").sha256
    assert cache_files(tmp_path) == ["mgsm/mgsm_sw.tsv"]
    server.mode = "error"  # now served from the cache, no request needed
    assert data.resolve("mgsm/mgsm_sw.tsv") == path


def test_download_converts_exemplars_module(server, tmp_path, shared_data):
    path = data.resolve("mgsm/exemplars.json")
    assert path.read_bytes() == (shared_data / "mgsm/exemplars.json").read_bytes()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("corrupt", "checksum mismatch"),
        ("error", "HTTP 503"),
        ("cut", "incomplete download of mgsm/mgsm_ja.tsv.* of 81043 bytes"),
    ],
)
def test_failed_downloads_leave_nothing_behind(server, tmp_path, mode, message):
    server.mode = mode
    with pytest.raises(DataError, match=message):
        data.resolve("mgsm/mgsm_ja.tsv")
    assert cache_files(tmp_path) == []


def test_failed_download_keeps_good_cached_files(server, tmp_path):
    good = data.resolve("mgsm/mgsm_fr.tsv")
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    server.mode = "corrupt"
    with pytest.raises(DataError):
        data.resolve("mgsm/mgsm_es.tsv")
    assert cache_files(tmp_path) == ["mgsm/mgsm_fr.tsv"]
    assert hashlib.sha256(good.read_bytes()).hexdigest() == digest


def test_unreachable_server(monkeypatch, tmp_path):
    monkeypatch.delenv("MLALIGN_DATA_DIR")
    monkeypatch.setenv("MLALIGN_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("MLALIGN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MLALIGN_DATA_URL", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(DataError, match="check the network or set MLALIGN_DATA_DIR"):
        data.resolve("mgsm/mgsm_th.tsv")
    assert cache_files(tmp_path) == []


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlalign_tasks.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_a_blob_pinned_download_stops_at_the_size_limit_for_files_without_a_pinned_size(
    blob_pinned, server, tmp_path, monkeypatch
):
    monkeypatch.setattr(data, "UNSIZED_LIMIT", 2 << 20)  # 256 MiB in use; the rule, not the figure, is tested
    server.mode = "huge"
    with pytest.raises(
        DataError, match=r"larger than the 2097152 bytes it may have \(pinned size: none, pinned by git"
    ):
        data.resolve(blob_pinned.name)
    assert cache_files(tmp_path) == [] and server.sent < 64 << 20


def test_cli_fetch_list_verify(server, tmp_path):
    import os

    env = dict(os.environ)
    fetched = run_cli("data", "fetch", "msvamp/test_Swahili.json", "mgsm/mgsm_te.tsv", env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "2 file(s) present and verified" in fetched.stdout
    listed = run_cli("data", "list", "mgsm/mgsm_te.tsv", "mgsm/mgsm_bn.tsv", env=env)
    assert listed.returncode == 0 and "the cache" in listed.stdout and "downloadable" in listed.stdout
    (tmp_path / "cache/mgsm/mgsm_te.tsv").write_text("tampered\n")
    verified = run_cli("data", "verify", env=env)
    assert verified.returncode == 2
    assert "2 verified, 1 corrupt" in verified.stdout and "mgsm/mgsm_te.tsv" in verified.stderr  # + the prompts


def test_cli_offline_error_is_one_clear_line(tmp_path):
    """Offline, a converted file's message names what `data fetch` really downloads (a Python module)."""
    import os

    env = {**os.environ, "MLALIGN_DATA_DIR": str(tmp_path), "MLALIGN_CACHE_DIR": str(tmp_path / "c")}
    res = run_cli("data", "fetch", "mgsm/exemplars.json", env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: data file mgsm/exemplars.json not found")
    assert "downloads https://raw.githubusercontent.com/NJUNLP/QAlign/" in res.stderr
    assert "/evaluate/scripts/data/mgsm/exemplars.py and converts it to JSON" in res.stderr


@pytest.mark.parametrize("name", ["mgsm/mgsm_ja.tsv", "mgsm/exemplars.json"])
def test_a_download_stops_at_its_pinned_size(server, tmp_path, name):
    """A mirror serving 400 MiB for a file pinned at 81 KB (or for the exemplars module, converted after the
    download): the client stops reading just past the size it may have, keeps nothing and says why."""
    server.mode = "huge"
    with pytest.raises(DataError, match=f"download of {name} .* is larger than the \\d+ bytes it may have"):
        data.resolve(name)
    assert cache_files(tmp_path) == [] and server.sent < 64 << 20  # what the sockets buffered, not 400 MiB


def test_a_download_has_a_time_limit(server, tmp_path):
    """A mirror that sends a byte every 50 ms (for 2 min, the test's cap) never trips the socket timeout; the
    download gives up after the time its size allows, while the mirror still sends, and keeps nothing."""
    server.mode = "drip"
    entry = data.lookup("mgsm/mgsm_ja.tsv")
    with pytest.raises(DataError, match="download of mgsm/mgsm_ja.tsv .* took over 2 s"):
        data.download(entry, timeout=1)
    assert cache_files(tmp_path) == []


def test_a_download_on_a_full_disk_fails_in_one_line_and_keeps_nothing(server, tmp_path, file_size_limit):
    """A download that cannot be written (a full disk; here a file size limit, so that writes fail with EFBIG as
    with ENOSPC) is one line naming the cache, not the network, and leaves no file and no `.part` behind."""
    fetch = subprocess.run(
        [*file_size_limit, "16384", sys.executable, "-m", "mlalign_tasks.cli", "data", "fetch", "mgsm/mgsm_ja.tsv"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert fetch.returncode == 2 and fetch.stderr.count("\n") == 1, fetch.stderr
    assert (
        fetch.stderr.startswith("error: cannot write mgsm/mgsm_ja.tsv into the data cache")
        and "(File too large)" in fetch.stderr
    )
    assert cache_files(tmp_path) == [] and not list((tmp_path / "cache").rglob("*.part"))


def test_a_killed_download_leaves_no_part_file_behind(server, tmp_path):
    """`mlalign data fetch` killed (SIGKILL) mid-download leaves its `.part` file; the next download removes it."""
    import os
    import signal

    server.mode = "drip"
    fetch = subprocess.Popen(
        [sys.executable, "-m", "mlalign_tasks.cli", "data", "fetch", "mgsm/mgsm_ja.tsv"], env=dict(os.environ)
    )
    deadline = time.monotonic() + 300
    while not (server.sent and list((tmp_path / "cache" / "mgsm").glob(".mgsm_ja.tsv.*.part"))):
        assert fetch.poll() is None and time.monotonic() < deadline, "the download did not start"
        time.sleep(0.05)
    fetch.send_signal(signal.SIGKILL)
    fetch.wait()
    assert len(list((tmp_path / "cache").rglob("*.part"))) == 1
    server.mode = "ok"
    assert data.resolve("mgsm/mgsm_ja.tsv").is_file()
    assert cache_files(tmp_path) == ["mgsm/mgsm_ja.tsv"]


def test_verify_fails_when_files_are_missing(tmp_path):
    import os

    (tmp_path / "empty").mkdir()
    env = {**os.environ, "MLALIGN_DATA_DIR": str(tmp_path / "empty"), "MLALIGN_CACHE_DIR": str(tmp_path / "cache")}
    res = run_cli("data", "verify", env=env)
    assert res.returncode == 2 and "1 verified, 0 corrupt" in res.stdout  # the packaged prompts
    assert res.stderr.startswith("missing: ") and res.stderr.count("\n") == 1 and "mlalign data fetch" in res.stderr


def test_data_list_is_not_cut_when_piped() -> None:
    """Piped output (rich assumes 80 columns there) keeps every cell whole: the full source URL of each file."""
    import subprocess
    import sys

    from mlalign_tasks.files import data

    proc = subprocess.run(
        [sys.executable, "-m", "mlalign_tasks.cli", "data", "list", "mgsm/*"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    for entry in data.select(["mgsm/*"]):
        assert entry.url() in proc.stdout and entry.name in proc.stdout
    assert max(map(len, proc.stdout.splitlines())) > 80


def test_cli_lists_files_not_mirrored_as_downloadable_and_names_them_offline(shared_data):
    import os

    env = {**os.environ, "COLUMNS": "250"}
    listed = run_cli("data", "list", "question_translation/gsm8k/bn-en/*", "paper_tasks/prompts.json", env=env)
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 2}
    assert "git blob" in rows["question_translation/gsm8k/bn-en/train.bn"]
    assert "downloadable" in rows["question_translation/gsm8k/bn-en/train.bn"]
    assert "sha256" in rows["question_translation/gsm8k/bn-en/train.en"]
    assert "explicit dir" in rows["question_translation/gsm8k/bn-en/train.en"]
    res = run_cli("data", "fetch", "question_translation/gsm8k/bn-en/train.bn", env=env)  # offline (conftest)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.strip().startswith("error: data file question_translation/gsm8k/bn-en/train.bn not found")
    assert (
        "offline mode is on" in res.stderr
        and "mlalign data fetch question_translation/gsm8k/bn-en/train.bn" in res.stderr
    )


def test_a_failed_download_names_the_mirror_beside_the_repository(tmp_path, monkeypatch):
    """Outside make, MLALIGN_DATA_DIR is unset: when a download fails and the offline mirror lies at ../shared/data
    (where the Makefile finds it), the one error line says how to use it; without that folder it says nothing of it."""
    monkeypatch.delenv("MLALIGN_DATA_DIR", raising=False)
    monkeypatch.setenv("MLALIGN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    with pytest.raises(DataError) as without:
        data.resolve("mgsm/mgsm_de.tsv", offline=True)
    assert "MLALIGN_DATA_DIR=" not in str(without.value) and "\n" not in str(without.value)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape(f"`export MLALIGN_DATA_DIR={tmp_path / 'shared' / 'data'}` uses it")):
        data.resolve("mgsm/mgsm_de.tsv", offline=True)
    with pytest.raises(DataError, match=r"download of mgsm/mgsm_de\.tsv failed .*a data mirror is beside this folder"):
        data.resolve("mgsm/mgsm_de.tsv", offline=False, base_url="http://127.0.0.1:9")

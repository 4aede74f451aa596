"""`mlalign eval` and the plain `lm_eval --include_path "$(mlalign tasks-path)"` line on the tiny model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlalign_tasks import cli
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.pipeline.evaluate import (
    DEFAULT_TASKS,
    parse_batch_size,
    parse_gen_kwargs,
    parse_limit,
    parse_tasks,
    tasks_dir,
)
from mlalign_tasks.tasks.languages import (
    DEFAULT_FAMILIES,
    FAMILIES,
    LANGUAGES,
    PAPER_LANGS,
    SUPER_GROUPS,
    UnknownLanguageError,
    task_name,
)

BIN = Path(sys.executable).parent
FAST = ["--limit", "1", "--gen-kwargs", "max_gen_toks=4", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, tiny_model_dir) -> Path:
    """A real (untrained) PEFT LoRA adapter on the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path_factory.mktemp("adapter") / "lora"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    return adapter


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `mlalign ARGS` in-process through the real entry point; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["mlalign", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def read_run(output: Path) -> tuple[dict, list[Path]]:
    (model_dir,) = [p for p in output.iterdir()]
    (results_file,) = model_dir.glob("results_*.json")
    return json.loads(results_file.read_text(encoding="utf-8")), sorted(model_dir.glob("samples_*.jsonl"))


# ----------------------------------------------------------------------------- parsing


def test_task_spec_syntax() -> None:
    sel = parse_tasks("mgsm_aligned:de,fr,sw, msvamp_aligned_zh,paper_aligned:zh")
    assert sel.langs == {
        "mgsm_aligned": ["de", "fr", "sw"],
        "msvamp_aligned": ["zh"],
        "snli_aligned": ["zh"],
        "paws_aligned": ["zh"],
        "sentiment_aligned": ["zh"],
    }
    assert parse_tasks("paper_aligned,mgsm_aligned").lm_eval_tasks() == ["paper_aligned", "mgsm_aligned"]
    assert parse_tasks("snli_aligned,mgsm_aligned:en").lm_eval_tasks() == ["snli_aligned", "mgsm_aligned_en"]
    full = parse_tasks(",".join(DEFAULT_FAMILIES))
    assert full.lm_eval_tasks() == ["paper_aligned", "mgsm_aligned", "msvamp_aligned"]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("mgsm", "unknown task 'mgsm'.*groups: mgsm_aligned, msvamp_aligned"),
        # lm-eval tasks outside the multilingual suites need --include-defaults
        ("arc_easy", "unknown task 'arc_easy'"),
        ("msvamp_aligned:te", "unknown msvamp_aligned language code 'te'.*Valid codes: bn, de"),
        ("mgsm_aligned:de,xx", "unknown task 'xx'"),
        ("de,mgsm_aligned", "a language code must follow a FAMILY:LANG item"),
        ("nope_aligned:de", "unknown task group 'nope_aligned'"),
        ("paper_aligned:te", "unknown snli_aligned language code 'te'"),
        (" , ", "no tasks given"),
    ],
)
def test_task_spec_errors(spec: str, match: str) -> None:
    with pytest.raises(MlalignError, match=match):
        parse_tasks(spec)


def test_other_lm_eval_tasks_need_include_defaults() -> None:
    with pytest.raises(MlalignError, match="unknown task 'arc_easy'"):
        parse_tasks("mgsm_aligned:de,arc_easy")
    sel = parse_tasks("mgsm_aligned:de,arc_easy", allow_other=True)
    assert sel.lm_eval_tasks() == ["mgsm_aligned_de", "arc_easy"]
    with pytest.raises(MlalignError, match="language code must follow"):
        parse_tasks("de", allow_other=True)


def test_unknown_language_is_a_language_error() -> None:
    with pytest.raises(UnknownLanguageError):
        parse_tasks("mgsm_aligned:dee")


@pytest.mark.parametrize(
    ("text", "value"), [("5", 5), ("0.5", 0.5), ("1.0", None), ("1", 1), (None, None), ("none", None), ("All", None)]
)
def test_limit(text: str | None, value: float | None) -> None:
    assert parse_limit(text) == value


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "abc", "0.0", "nan", ""])
def test_bad_limit(text: str) -> None:
    with pytest.raises(MlalignError, match="--limit"):
        parse_limit(text)


def test_gen_kwargs_and_batch_size() -> None:
    assert parse_gen_kwargs("max_gen_toks=64,temperature=0") == {"max_gen_toks": 64, "temperature": 0}
    with pytest.raises(MlalignError, match="key=value"):
        parse_gen_kwargs("max_gen_toks")
    assert parse_gen_kwargs("top_p=0.9,num_beams=2,until=x") == {"top_p": 0.9, "num_beams": 2, "until": "x"}
    with pytest.raises(MlalignError, match="unknown setting 'max_gen_tok'; did you mean max_gen_toks"):
        parse_gen_kwargs("max_gen_tok=64")  # a typo: transformers' generate would fail with a traceback
    assert parse_batch_size("8") == 8 and parse_batch_size("auto") == "auto"
    with pytest.raises(MlalignError, match="--batch-size"):
        parse_batch_size("0")


# ----------------------------------------------------------------------------- bad input through the CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "mgsm_aligned:xx"], "unknown mgsm_aligned language code 'xx'"),
        (["--tasks", "gsm8k"], "unknown task 'gsm8k'"),
        (["--limit", "0"], "--limit '0'"),
        (["--num-fewshot", "9", "--tasks", "mgsm_aligned:de"], "at most 8"),
        (["--load-in-4bit", "--device", "cpu"], "--load-in-4bit needs a CUDA GPU"),
        (["--batch-size", "0"], "--batch-size '0'"),
        (["--gen-kwargs", "oops"], "--gen-kwargs"),
        (["--label-scoring", "first-token", "--apply-chat-template", "-t", "snli_aligned_de"], "drop --apply-chat"),
        (["--apply-chat-template", "-t", "snli_aligned_de"], "--label-scoring paper scores the token after"),
        (["--nf4-preset", "paper"], "--nf4-preset paper applies to 4-bit evaluation; add --load-in-4bit"),
        (["--load-in-4bit", "--dtype", "float16"], "--dtype float16 applies to full precision"),
        (["--seed", str(2**64)], f"--seed {2**64} must be from 0 to 4294967295"),
        (["--seed", "-1"], "--seed -1 must be from 0 to 4294967295"),
        (["--gen-kwargs", "max_gen_toks=abc"], "--gen-kwargs: max_gen_toks='abc' must be a positive integer"),
        (["--gen-kwargs", "max_gen_toks=-5"], "--gen-kwargs: max_gen_toks=-5 must be a positive integer"),
        (["--gen-kwargs", "do_sample=true,temperature=nan"], "--gen-kwargs: temperature=nan is not a finite number"),
        (["--gen-kwargs", "do_sample=true,temperature=0"], "temperature=0 must be above 0 with do_sample=true"),
        (["--gen-kwargs", "top_p=1.5"], "--gen-kwargs: top_p=1.5 must be a number from 0 to 1"),
        (["--peft", "runs/\udcffx"], "--peft 'runs/\\udcffx' holds the character '\\udcff'"),
    ],
)
def test_bad_input_is_one_error_line(monkeypatch, capsys, tmp_path, tiny_model_dir, args, message) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "eval", "-m", str(tiny_model_dir), "--output-path", str(out), *args
    )
    assert code == 2
    assert stderr.startswith("error:") and message in stderr and stderr.count("\n") == 1, stderr
    assert not out.exists()


def test_cuda_device_without_gpu(monkeypatch, capsys, tiny_model_dir) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-m", str(tiny_model_dir), "--device", "cuda")
    assert code == 2 and "no CUDA GPU is visible; use --device cpu" in err


def test_missing_model_and_adapter(monkeypatch, capsys, tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-m", str(tmp_path / "nope"), "--output-path", str(out))
    assert code == 2 and f"--model {tmp_path / 'nope'} does not exist" in err
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-m", "no-such-org/no-such-model", "--output-path", str(out))
    assert code == 2 and "--model no-such-org/no-such-model is not in the Hugging Face cache and HF_HUB_OFFLINE" in err
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-m", str(tiny_model_dir), "--peft", str(tmp_path))
    assert code == 2 and f"--peft {tmp_path} is a folder without adapter_config.json, so not a PEFT adapter" in err
    assert not out.exists()


def test_which_names_are_paths(monkeypatch, tmp_path) -> None:
    from mlalign_tasks.models.model_paths import missing_local

    monkeypatch.chdir(tmp_path)
    assert not missing_local("gpt2") and not missing_local("owner/model")  # Hub ids: the Hub decides
    (tmp_path / "adapters").mkdir()
    assert missing_local("adapters/qwen-qalign")  # its first part is a folder here: a path
    assert missing_local("my-adapter", bare_hub_ids=False) and not missing_local("owner/adapter", bare_hub_ids=False)
    assert all(missing_local(name) for name in ("./m", "../m", "/no/m", "~/no-such-m", "runs/x/adapter"))


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "-m", "{model}", "--peft", "."],  # an existing folder that is not an adapter
        ["eval", "-m", "{model}", "--peft", "my-adapter"],  # absent, and not owner/name as Hub adapters are
        ["train", "--config", "cpu-smoke"],  # the recipe's ./tiny-model, run from a folder without one
        ["analyze", "pca", "--model", "{model}", "--peft", ".", "--out", "pca"],
        ["analyze", "logit-lens", "--model", "{model}", "--peft", "./nope", "--langs", "de", "--out", "lens"],
    ],
)
def test_a_wrong_local_path_fails_at_once_without_asking_the_hub(tmp_path, tiny_model_dir, command) -> None:
    """With the Hub allowed but out of reach, transformers and PEFT retry it for half a minute for a name they
    cannot open as a folder; a name meant as a path is refused without asking the Hub (here a server on 127.0.0.1
    that records every request) and before any data is read (the data folder is empty)."""
    asked: list[str] = []

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(f"{self.command} {self.path}")
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args) -> None:
            pass

    (tmp_path / "data").mkdir()
    with ThreadingHTTPServer(("127.0.0.1", 0), Hub) as hub:
        threading.Thread(target=hub.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{hub.server_address[1]}"
        env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint, "MLALIGN_DATA_DIR": str(tmp_path / "data")}
        args = [a.replace("{model}", str(tiny_model_dir)) for a in command]
        proc = subprocess.run([str(BIN / "mlalign"), *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        hub.shutdown()
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "does not exist (relative to" in proc.stderr or "is a folder without adapter_config.json" in proc.stderr
    assert asked == [], f"the Hub was asked: {asked}"


def test_corrupt_data_stops_before_the_model_loads(monkeypatch, capsys, tmp_path, shared_data, tiny_model_dir) -> None:
    data = tmp_path / "data"
    shutil.copytree(shared_data / "mgsm", data / "mgsm")
    tsv = data / "mgsm" / "mgsm_sw.tsv"
    tsv.write_bytes(tsv.read_bytes()[:-10])
    out = tmp_path / "out"
    args = ["eval", "-m", str(tiny_model_dir), "-t", "mgsm_aligned", "--data-dir", str(data), "--output-path", str(out)]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "checksum mismatch for mgsm/mgsm_sw.tsv" in err
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_eval_every_group(monkeypatch, capsys, tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "results"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "eval", "-m", str(tiny_model_dir), "--output-path", str(out), *FAST
    )
    assert code == 0, stderr[-3000:]
    results, samples = read_run(out)
    tasks = {task_name(f, lang) for f in DEFAULT_FAMILIES for lang in FAMILIES[f]}  # the default --tasks
    assert set(results["results"]) >= tasks
    groups = {g for g, families in SUPER_GROUPS.items() if set(families) <= set(DEFAULT_FAMILIES)}  # not toy_aligned
    assert set(results["groups"]) == {*DEFAULT_FAMILIES, *groups}
    assert {p.name.split("_2")[0].removeprefix("samples_") for p in samples} == tasks
    assert results["config"]["model_args"] == f"pretrained={tiny_model_dir}"
    assert results["model_name"] == str(tiny_model_dir)
    for name in tasks:
        metric = "exact_match,last_number" if name.startswith(("mgsm", "msvamp")) else "acc,none"
        assert 0.0 <= results["results"][name][metric] <= 1.0, name
        assert results["n-samples"][name]["effective"] == 1
    mean = results["groups"]["mgsm_aligned"]["exact_match,last_number"]
    per_lang = [
        results["results"][task_name("mgsm_aligned", lang)]["exact_match,last_number"]
        for lang in FAMILIES["mgsm_aligned"]
    ]
    assert mean == pytest.approx(sum(per_lang) / len(per_lang))
    line = json.loads(samples[0].read_text(encoding="utf-8").splitlines()[0])
    assert {"doc", "resps", "filtered_resps", "target"} <= set(line)
    # the table: one row per language of any family, one column per family, then the mean
    rows = {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.count("│") > 2}
    assert set(rows) >= {*PAPER_LANGS, "te", "mean"}
    assert "┃ lang" in stdout and list(rows)[-1] == "mean"
    assert [code for code in rows if code in LANGUAGES] == [code for code in LANGUAGES if code in rows]
    assert all(f in stdout for f in DEFAULT_FAMILIES)
    assert [p.name for p in out.iterdir()] == [results["config"]["model_args"].split("=")[1].replace("/", "__")]
    # the long steps' progress (in a log: a line at the end): lm-eval's generations and the paper scoring
    assert re.search(r"generating \(lm-eval generate_until\): (\d+)/\1 requests, in 0:\d\d:\d\d", stderr), stderr
    assert re.search(r"scoring labels \(token sets\): (\d+)/\1 prompts, in", stderr)


@pytest.mark.slow
def test_eval_with_adapter_and_fewshot(monkeypatch, capsys, tmp_path, tiny_model_dir, tiny_adapter) -> None:
    """A real PEFT LoRA adapter is applied; 8-shot MGSM runs; model_args names base and adapter."""
    adapter = tiny_adapter
    out = tmp_path / "results"
    args = ["eval", "-m", str(tiny_model_dir), "--peft", str(adapter), "-t", "mgsm_aligned:ja", "--num-fewshot", "8"]
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args, "--output-path", str(out), *FAST)
    assert code == 0, stderr[-3000:]
    results, samples = read_run(out)
    assert results["config"]["model_args"] == f"pretrained={tiny_model_dir},peft={adapter}"
    assert results["model_name"] == str(adapter)
    assert results["n-shot"]["mgsm_aligned_ja"] == 8
    (sample,) = [json.loads(line) for line in samples[0].read_text(encoding="utf-8").splitlines()]
    prompt = sample["arguments"]["gen_args_0"]["arg_0"]
    assert prompt.count("### Instruction:") == 9 and "ロジャー" in prompt
    assert "mean" in stdout and "ja" in stdout


def test_preloaded_model_keeps_model_args(monkeypatch, tmp_path, tiny_model_dir, tiny_adapter) -> None:
    """The --load-in-4bit path (a model object handed to HFLM), NF4 on the CPU: results still name base model and
    adapter (contract for the leaderboard)."""
    from mlalign_tasks.pipeline import evaluate

    monkeypatch.setattr(evaluate, "resolve_device", lambda device, load_in_4bit: "cpu")
    req = evaluate.EvalRequest(
        model=str(tiny_model_dir),
        adapter=str(tiny_adapter),
        tasks=parse_tasks("msvamp_aligned:sw"),
        limit=1,
        gen_kwargs={"max_gen_toks": 2},
        output_path=tmp_path / "out",
        load_in_4bit=True,
    )
    results = evaluate.run(req)
    saved, samples = read_run(tmp_path / "out")
    assert saved["config"]["model_args"] == f"pretrained={tiny_model_dir},peft={tiny_adapter}"
    assert saved["model_name"] == str(tiny_adapter) and saved["mlalign"]["load_in_4bit"] is True
    assert saved["mlalign"]["nf4_preset"] == "mlalign"
    assert len(samples) == 1 and results["results"]["msvamp_aligned_sw"]["exact_match,last_number"] in (0.0, 1.0)


@pytest.mark.slow
def test_plain_lm_eval_command_line(tmp_path, tiny_model_dir) -> None:
    """The documented line, lm_eval ... --include_path "$(mlalign tasks-path)", for every group."""
    out = tmp_path / "lm_eval_out"
    line = (
        f"lm_eval --model hf --model_args pretrained={tiny_model_dir} "
        f"--tasks mgsm_aligned,msvamp_aligned,paper_aligned "
        f'--include_path "$(mlalign tasks-path)" --limit 1 --gen_kwargs max_gen_toks=4 '
        f"--output_path {out} --log_samples"
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    results, samples = read_run(out)
    assert set(results["groups"]) == {*DEFAULT_FAMILIES, "paper_aligned"}
    tasks = [task_name(family, lang) for family in DEFAULT_FAMILIES for lang in FAMILIES[family]]
    assert len(samples) == len(tasks) == 81
    assert all(results["n-samples"][task]["effective"] == 1 for task in tasks)
    assert "mgsm_aligned_te" in result.stdout and "sentiment_aligned_bn" in result.stdout


def test_tasks_path(monkeypatch, capsys) -> None:
    code, stdout, _ = run_cli(monkeypatch, capsys, "tasks-path")
    assert code == 0 and Path(stdout.strip()) == tasks_dir()
    assert (tasks_dir() / "mgsm_aligned" / "_template_yaml").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit '0'"),
        (["--tasks", "mgsm_aligned:xx"], "unknown mgsm_aligned language code 'xx'"),
        (["--batch-size", "0"], "--batch-size '0'"),
        (["--max-gen-toks", "-5"], "--max-gen-toks -5 must be >= 0"),
        (["--analysis-limit", "-1"], "--analysis-limit -1 must be >= 0"),
        (["--load-in-4bit", "--device", "cpu"], "--load-in-4bit needs a CUDA GPU"),
        (["--board", "FILE/board"], "--board FILE/board: it or a parent folder is a file"),
        (["--model", "./no/such/model"], "model ./no/such/model does not exist"),
        (["--recipe", "cpu_ddp"], "is an accelerate config, not a trainer recipe"),
        (["--data-dir", "nodata"], "--data-dir nodata is not a directory"),
        (["--train-flag=--bogus_flag=1"], "bad training arguments"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--nf4-preset", "paper"], "--nf4-preset paper applies to 4-bit evaluation; add --load-in-4bit"),
        (["--board", "mine"], "--board mine (a folder) exists and is not empty and not a leaderboard; refusing"),
        (["--out", "mine"], "--out mine (a folder) exists and is not empty and not an `mlalign run` folder"),
        (["--board", "runs/x/leaderboard"], "--board runs/x/leaderboard and --out runs/x overlap"),
        (["--board", "runs", "--out", "runs/x"], "--board runs and --out runs/x overlap"),
        (["--train-flag=--mixture=swhi"], "--mixture swhi: `mlalign run` builds stage I's data from --langs"),
        (["--recipe", "qalign", "--model", "tiny"], "fine-tunes the whole model, and `mlalign run` evaluates LoRA"),
    ],
)
def test_run_checks_every_option_before_the_first_stage(monkeypatch, capsys, tmp_path, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    Path("FILE").write_text("not a folder")
    Path("mine").mkdir()
    Path("mine/notes.txt").write_text("the user's")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", "runs/x", *args)
    assert code == 2 and err.startswith("error:") and message in err and err.count("\n") == 1, err
    assert not Path("runs").exists()  # nothing ran: no stage output, not even the run folder
    assert [p.name for p in Path("mine").iterdir()] == ["notes.txt"]


def test_run_refuses_a_board_on_a_read_only_filesystem_before_the_first_stage(tmp_path) -> None:
    """A --board where no folder can be made (a read-only filesystem, mounted in a user namespace) is refused in one
    line before the first stage, not after training and both evals."""
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    mount = [
        "unshare",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        'mount -t tmpfs -o ro none "$0" && exec "$@"',
    ]
    if shutil.which("unshare") is None or subprocess.run([*mount, str(read_only), "true"]).returncode != 0:
        pytest.skip("no user namespace to mount a read-only filesystem in")
    board, out = read_only / "board", tmp_path / "runs" / "x"
    refused = subprocess.run(
        [*mount, str(read_only), str(BIN / "mlalign"), "run", "--out", str(out), "--board", str(board)],
        capture_output=True, text=True,
    )  # fmt: skip
    line = f"error: --board {board}: cannot write in {read_only} (Read-only file system); choose a writable folder"
    assert refused.returncode == 2 and refused.stderr == line + "\n", refused.stderr
    assert not out.exists()


def test_built_in_models_and_their_defaults(tmp_path) -> None:
    from mlalign_tasks.pipeline.study import build_stages
    from mlalign_tasks.pipeline.study_options import TINY, TOY, builtin_kind, configure

    for recipe in ("cpu-smoke", "cpu-smoke.yaml", "qalign-cpu-smoke"):
        assert builtin_kind(None, recipe) == TINY
    assert builtin_kind(None, None) == builtin_kind(None, "toy-world") == TOY
    for recipe in ("qwen2.5-1.5b-12gb", "qalign-qlora-24gb"):
        assert builtin_kind(None, recipe) is None
    for kind in ("tiny", "toy"):
        cfg = configure(model=kind, out=tmp_path / kind, board=tmp_path / f"{kind}-board")
        stages, paths = build_stages(cfg)
        assert stages[0].name == "model" and paths["model"] == cfg.out / "model"
        if kind == "toy":  # QAlign's two stages, and stage I's adapter evaluated beside them on the same items
            names = [stage.name for stage in stages]
            assert {"train", "train-response", "eval-base", "eval-question", "eval-aligned"} <= set(names), names
            assert paths["adapter"] == cfg.out / "train-response" / "adapter"
    toy = configure()
    assert (toy.data.languages, toy.data.qt_source, toy.evaluation.tasks) == ("qaa,qab", "toy", "toy_aligned")
    assert (toy.analysis.task, toy.analysis.lens_langs) == ("toy_sentiment", "en,qaa,qab,qac,qba,qca")
    assert configure(languages="qac").data.languages == "qac"  # what is given wins
    tiny = configure(model="tiny")
    assert (tiny.data.languages, tiny.evaluation.tasks) == ("de,zh", "mgsm_aligned,msvamp_aligned,paper_aligned")


def test_a_real_model_gets_full_size_defaults_and_the_recipes_data(monkeypatch, capsys, tiny_model_dir) -> None:
    """The demo's small sizes only on the tiny model: a real model or recipe evaluates every item with each task's
    own generation length and trains on the recipe's data, unless the user asks for less; the run says which."""
    from mlalign_tasks.pipeline.study_options import DEMO_SCALE, configure, describe_defaults

    demo = configure(model="tiny")
    assert (demo.evaluation.limit, demo.evaluation.max_gen_toks, demo.data.examples_per_language) == (8, 48, 32) == (
        DEMO_SCALE.eval_limit, DEMO_SCALE.max_gen_toks, DEMO_SCALE.examples_per_language,
    )  # fmt: skip
    assert {source for _, source in demo.defaulted.values()} == {"the tiny model's"}
    real = configure(recipe="qwen2.5-1.5b-12gb")
    e, a = real.evaluation, real.analysis
    assert (e.limit, e.max_gen_toks, a.limit, e.batch_size) == (None, None, None, "auto")
    assert (real.data.languages, real.data.examples_per_language) == ("de,es,fr,ja,ru,sw,zh", 1000)
    line = describe_defaults(real.defaulted)
    assert "all evaluation items per task (full size; --limit)" in line
    assert "1000 training pairs per language (recipe qwen2.5-1.5b-12gb; --examples-per-language)" in line
    asked = configure(model="Qwen/Qwen2.5-1.5B", eval_limit=8, max_gen_toks=None, languages="sw")
    assert (asked.evaluation.limit, asked.evaluation.max_gen_toks, asked.data.languages) == (8, None, "sw")
    assert asked.data.examples_per_language is None
    assert not {"eval_limit", "max_gen_toks", "languages"} & set(asked.defaulted)
    # `mlalign run --model DIR` says what it chose before anything runs (here a refused option stops it).
    code, out, err = run_cli(
        monkeypatch, capsys, "run", "--model", str(tiny_model_dir), "--limit", "3", "--nf4-preset", "paper"
    )
    assert code == 2 and "--nf4-preset paper applies to 4-bit" in err
    assert "each task's own number of new tokens (full size; --max-gen-toks)" in out and "--limit)" not in out


@pytest.mark.parametrize(
    "command", [["tiny-model", "--out"], ["data", "build-qt", "--langs", "de", "--n", "2", "--out"]]
)
def test_output_under_a_file_is_one_error_line(monkeypatch, capsys, tmp_path, command) -> None:
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(monkeypatch, capsys, *command, str(tmp_path / "afile" / "sub"))
    assert code == 2 and err.count("\n") == 1 and "afile is a file, so it cannot hold the output folder" in err, err


def test_recipes_lists_the_shipped_configs(monkeypatch, capsys) -> None:
    from mlalign_trainer import recipes

    code, out, _ = run_cli(monkeypatch, capsys, "recipes")
    assert code == 0 and all(name in out for name in ("cpu-smoke", "qwen2.5-1.5b-12gb", "llama2-7b-24gb", "cpu_ddp"))
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    assert "question + response" in rows["qalign"] and "stages" not in rows["zhang2024"]
    code, out, _ = run_cli(monkeypatch, capsys, "recipes", "cpu_ddp")
    assert code == 0 and Path(out.strip()) == recipes.ACCELERATE_DIR / "cpu_ddp.yaml" and Path(out.strip()).is_file()
    code, _, err = run_cli(monkeypatch, capsys, "recipes", "nope")
    assert code == 2 and "neither a file nor a shipped recipe" in err


def test_recipes_table_is_not_cut_when_piped() -> None:
    """Piped (rich would assume 80 columns), every row keeps its whole path and stage list on one line."""
    from mlalign_trainer import recipes

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlalign_tasks.cli", "recipes"], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "…" not in proc.stdout and max(map(len, lines)) > 80
    for name, path in recipes.shipped_configs().items():
        assert any(name in line and str(path) in line for line in lines), name
    assert any("qalign" in line and "stages question + response" in line for line in lines)


def test_a_comma_in_a_model_path_cannot_smuggle_lm_eval_settings(monkeypatch, capsys, tmp_path, tiny_model_dir) -> None:
    """`-m "$PWD/evil,trust_remote_code=True"` names a real folder, but lm-eval's model_args string would load `evil`
    with trust_remote_code=True and run its code. Refused in one line by eval and run; the analyses, which pass
    the path to transformers whole, load the folder that was named. No code of `evil` runs anywhere."""
    executed = tmp_path / "EXECUTED"
    evil = tmp_path / "evil"
    evil.mkdir()
    auto_map = {"AutoConfig": "evil_code.EvilConfig", "AutoModelForCausalLM": "evil_code.EvilModel"}
    (evil / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": auto_map}))
    (evil / "evil_code.py").write_text(f"open({str(executed)!r}, 'w').write('ran')\n")
    smuggled = tmp_path / "evil,trust_remote_code=True"
    shutil.copytree(tiny_model_dir, smuggled)
    out = tmp_path / "out"
    for args in (
        ["eval", "-m", str(smuggled), "-t", "mgsm_aligned:de", "--output-path", str(out), *FAST],
        ["eval", "-m", str(tiny_model_dir), "--peft", str(smuggled), "-t", "mgsm_aligned:de", *FAST],
        ["run", "--model", str(smuggled), "--out", str(out / "run"), "--board", str(out / "board")],
    ):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "contains ',' or '=', which lm-eval would read" in err, err
    assert not out.exists()
    code, _, err = run_cli(
        monkeypatch, capsys, "analyze", "pca", "--model", str(smuggled), "--langs", "de", "--task", "sentiment",
        "--limit", "2", "--device", "cpu", "--out", str(out / "pca"),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((out / "pca" / "pca.json").read_text())["model"] == str(smuggled)
    assert not executed.exists()


@pytest.mark.slow
def test_a_killed_eval_leaves_nothing_the_leaderboard_reads(tmp_path, tiny_model_dir) -> None:
    """`mlalign eval` killed (SIGKILL) while it moves its files into place: its hidden staging folder, holding the
    results file, is not a run for the leaderboard, and the next eval removes it (no "duplicate model")."""
    out = tmp_path / "results"
    args = ["eval", "-m", str(tiny_model_dir), "-t", "mgsm_aligned:de", "--output-path", str(out), *FAST]
    pause = (  # holds the process where a kill leaves the most behind: samples moved, results still staged
        "import os, sys, time\n"
        "move = os.replace\n"
        "os.replace = lambda a, b: time.sleep(300) if os.path.basename(a).startswith('results_') else move(a, b)\n"
        f"sys.argv = ['mlalign', *{args!r}]\n"
        "from mlalign_tasks.cli import main\nmain()\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", pause], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not (list(out.glob(".mlalign-eval-*/*/results_*.json")) and list(out.glob("*/samples_*.jsonl"))):
        assert killed.poll() is None and time.monotonic() < deadline, "the evaluation did not reach its last move"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    board = [sys.executable, "-m", "mlalign_tasks.cli", "leaderboard", str(out), "--out", str(tmp_path / "board")]
    refused = subprocess.run(board, capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.startswith("error: no lm-eval results file"), refused.stderr
    again = subprocess.run([sys.executable, "-m", "mlalign_tasks.cli", *args], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list(out.glob(".mlalign-eval-*")) and len(list(out.glob("*/results_*.json"))) == 1
    built = subprocess.run(board, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert len(json.loads((tmp_path / "board" / "results.json").read_text())["models"]) == 1


HOLD_AFTER_EVALUATING = (  # the real evaluation, then a wait for Ctrl-C before the results are written
    "import sys, time\n"
    "from pathlib import Path\n"
    "import lm_eval\n"
    "evaluate, ready = lm_eval.simple_evaluate, Path(sys.argv[1])\n"
    "def held(*args, **kwargs):\n"
    "    results = evaluate(*args, **kwargs)\n"
    "    ready.touch()\n"
    "    time.sleep(600)\n"
    "    return results\n"
    "lm_eval.simple_evaluate = held\n"
    "sys.argv = ['mlalign', *sys.argv[2:]]\n"
    "from mlalign_tasks.cli import main\nmain()\n"
)


def interrupt_eval(tmp_path: Path, out: Path, tiny_model_dir: Path, meanwhile) -> subprocess.CompletedProcess:
    """`mlalign eval --output-path OUT` interrupted (SIGINT, as Ctrl-C) once it has evaluated; `meanwhile()` first."""
    ready = tmp_path / "evaluated"
    ready.unlink(missing_ok=True)
    args = ["eval", "-m", str(tiny_model_dir), "-t", "mgsm_aligned:de", "--output-path", str(out), *FAST]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:  # a file, not a pipe, so that the progress bars never block on a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_AFTER_EVALUATING, str(ready), *args], stdout=subprocess.DEVNULL, stderr=stderr
        )
        deadline = time.monotonic() + 900
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the evaluation did not finish"
            time.sleep(0.05)
        meanwhile()
        proc.send_signal(signal.SIGINT)
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", log.read_text().splitlines()[-1])


@pytest.mark.slow
def test_an_interrupted_eval_removes_only_what_it_created(tmp_path, tiny_model_dir) -> None:
    """Ctrl-C on an eval into a folder it created: what another eval and the user put there meanwhile is kept (only
    the interrupted run's own staging goes); with nothing else there, the folder it created goes too."""
    out = tmp_path / "results"

    def others_write() -> None:
        (out / "org__other").mkdir()
        (out / "org__other" / "results_2026-01-01T00-00-00.json").write_text("{}")
        (out / "my_notes.txt").write_text("mine")

    interrupted = interrupt_eval(tmp_path, out, tiny_model_dir, others_write)
    assert interrupted.returncode == 130 and interrupted.stderr == "interrupted", interrupted.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "my_notes.txt", "org__other", "org__other/results_2026-01-01T00-00-00.json"
    ]  # fmt: skip
    alone = interrupt_eval(tmp_path, tmp_path / "alone", tiny_model_dir, lambda: None)
    assert alone.returncode == 130 and not (tmp_path / "alone").exists()


@pytest.mark.slow
def test_eval_takes_lm_evals_use_cache(monkeypatch, capsys, tmp_path, tiny_model_dir) -> None:
    """`--use_cache PATH` as lm-eval spells it: the answers go to PATH_rank0.db; other settings on it are one line."""
    import sqlite3

    args = ["eval", "--model", str(tiny_model_dir), "--tasks", "paws_aligned:en", "--limit", "2", "--device", "cpu"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--use_cache", str(tmp_path / "cache"))
    assert code == 0, err
    with sqlite3.connect(tmp_path / "cache_rank0.db") as conn:
        assert conn.execute('SELECT COUNT(*) FROM "unnamed"').fetchone() == (2 * 2,)  # 2 items x 2 labels
    code, _, err = run_cli(monkeypatch, capsys, *args, "--use-cache", str(tmp_path / "cache"), "--batch-size", "2")
    assert code == 2 and err.strip().splitlines()[-1].endswith(
        "holds answers of another evaluation (batch_size differ); pass another path, one per model and settings"
    ), err


@pytest.mark.slow
@pytest.mark.parametrize(("limit", "items", "cut"), [(4096, "1", "results_"), (16384, "20", "samples_")])
def test_an_eval_on_a_full_disk_fails_in_one_line_and_writes_nothing(
    tmp_path, tiny_model_dir, file_size_limit, limit, items, cut
) -> None:
    """lm-eval logs a failed write and goes on: on a full disk (here a file size limit, so that the write fails with
    EFBIG as it would with ENOSPC) the cut results or samples file is caught, the eval exits 2 with one line, and
    nothing is left in --output-path (which it had created)."""
    out = tmp_path / "results"
    args = ["eval", "-m", str(tiny_model_dir), "-t", "mgsm_aligned:de", "--output-path", str(out), *FAST]
    args[args.index("--limit") + 1] = items
    full = subprocess.run(
        [*file_size_limit, str(limit), str(BIN / "mlalign"), *args], capture_output=True, text=True
    )  # fmt: skip
    line = full.stderr.strip().splitlines()[-1]
    assert full.returncode == 2 and line.startswith(f"error: lm-eval could not write {cut}"), full.stderr[-3000:]
    assert "check free space" in line and not out.exists() and "results:" not in full.stdout


def test_one_seed_default_across_commands() -> None:
    """--seed is 0 wherever it is not given: every command, the trainer, and `mlalign run` unless its recipe names
    a seed (a paper's protocol keeps its own)."""
    import typer.main
    from mlalign_trainer import sft

    from mlalign_tasks.pipeline.study_options import configure

    defaults: dict[str, object] = {}

    def walk(command, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        for param in command.params:
            if param.name == "seed":
                defaults[path] = param.default

    walk(typer.main.get_command(cli.app), "")
    assert defaults == {
        "tiny-model": 0, "eval": 0, "data build-qt": 0, "leaderboard": 0, "analyze logit-lens": 0, "analyze pca": 0,
        "run": None,
    }  # fmt: skip
    assert sft.parse_args(["--model_name_or_path", "m", "--output_dir", "o"])[1].seed == 0
    assert configure().seed == 0 and configure(model="m").seed == 0
    recipe = configure(model="m", recipe="qalign")
    assert recipe.seed == 1234 and recipe.defaulted["seed"] == (1234, "recipe qalign")
    assert configure(model="m", recipe="qalign", seed=0).seed == 0


def test_eval_under_a_multi_process_launch_runs_in_the_first_process(tmp_path, tiny_model_dir) -> None:
    """`mlalign eval` is one process: under torchrun (which `accelerate launch --multi_gpu` runs) the first process
    evaluates alone and says so in one note, the others exit without an error, so the launcher reports no failure
    and prints no traceback; the results are written once (README: Faster evaluation)."""
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "mlalign_tasks.cli", "eval",
        "-m", str(tiny_model_dir), "-t", "snli_aligned_de", "--limit", "1", "--output-path", str(out),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "error" not in result.stderr.lower(), result.stderr[-3000:]
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: mlalign eval runs in one process")]
    assert len(notes) == 1 and "the first of the 2 launched evaluates alone" in notes[0]
    assert 'accelerate launch -m lm_eval --model hf --include_path "$(mlalign tasks-path)"' in notes[0]
    (model_dir,) = out.iterdir()
    assert len(list(model_dir.glob("results_*.json"))) == 1


@pytest.mark.parametrize(
    "command",
    [[], ["eval"], ["run"], ["leaderboard"], ["analyze", "pca"], ["analyze", "logit-lens"], ["data", "build-qt"]],
)
def test_piped_help_is_not_cut(command) -> None:
    """Help written to a pipe or file is as wide as it needs (rich would cut it at 80 columns)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([str(BIN / "mlalign"), *command, "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "…" not in proc.stdout, proc.stdout
    if command == ["eval"]:
        assert f"[default: {DEFAULT_TASKS}]" in proc.stdout


def test_train_help_puts_mlaligns_options_first() -> None:
    """`mlalign train --help` shows mlalign's options, then TRL's model options, and counts TRL's and transformers'
    training options, which `--help-all` lists."""
    short = subprocess.run([str(BIN / "mlalign"), "train", "--help"], capture_output=True, text=True).stdout
    full = subprocess.run([str(BIN / "mlalign"), "train", "--help-all"], capture_output=True, text=True).stdout
    titles = ["mlalign's options", "TRL's ModelConfig", "TRL's SFTConfig and transformers' TrainingArguments"]
    assert [short.index(t) for t in titles] == sorted(short.index(t) for t in titles)
    assert "--examples_per_language" in short and "--lora_r" in short and "--logging_steps " not in short
    assert "`mlalign train --help-all` lists them all" in short and "--logging_steps " in full
    assert len(short.splitlines()) < len(full.splitlines()) / 3


def test_the_tiny_model_has_its_own_generation_cap(monkeypatch, capsys, tmp_path, tiny_model_dir) -> None:
    """On the tiny model (its marker file) `mlalign eval` caps generations and batches them unless told otherwise,
    and the results record the cap; a model without the marker keeps the tasks' own length."""
    from mlalign_tasks.models.tiny_model import EVAL_BATCH_SIZE, MAX_GEN_TOKS, is_tiny

    out = tmp_path / "out"
    args = ["eval", "-m", str(tiny_model_dir), "-t", "mgsm_aligned:de", "--limit", "2", "--device", "cpu"]
    code, stdout, err = run_cli(monkeypatch, capsys, *args, "--output-path", str(out))
    assert code == 0 and f"at most {MAX_GEN_TOKS} new tokens per generation" in stdout, err
    results, _ = read_run(out)
    assert results["mlalign"]["generation_cap"] == MAX_GEN_TOKS
    assert results["configs"]["mgsm_aligned_de"]["generation_kwargs"]["max_gen_toks"] == MAX_GEN_TOKS
    assert results["config"]["batch_size"] == EVAL_BATCH_SIZE
    code, _, _ = run_cli(monkeypatch, capsys, *args, "--gen-kwargs", "max_gen_toks=4", "--output-path", str(out / "b"))
    results, _ = read_run(out / "b")
    assert code == 0 and results["mlalign"]["generation_cap"] is None
    assert results["configs"]["mgsm_aligned_de"]["generation_kwargs"]["max_gen_toks"] == 4
    real = tmp_path / "not-tiny"
    shutil.copytree(tiny_model_dir, real, ignore=shutil.ignore_patterns("mlalign_tiny.json"))
    assert is_tiny(tiny_model_dir) and not is_tiny(real)


# ----------------------------------------------------------------------------- `mlalign run`'s folders

REPO = Path(__file__).resolve().parents[1]


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_default_folders_are_named_for_the_model(tiny_model_dir) -> None:
    from mlalign_tasks.pipeline.study_options import configure

    assert (configure().out, configure().board) == (Path("runs/demo"), Path("leaderboards/demo"))  # `make demo`
    tiny = configure(model="tiny")
    assert (tiny.out, tiny.board) == (Path("runs/tiny"), Path("leaderboards/tiny"))
    assert configure(model="Qwen/Qwen2.5-1.5B").out == Path("runs/Qwen--Qwen2.5-1.5B")
    assert configure(model=str(tiny_model_dir)).board == Path("leaderboards") / tiny_model_dir.name
    assert configure(recipe="cpu-smoke").out == Path("runs/tiny")  # the recipe's model
    assert configure(model="tiny", out=Path("x")).out == Path("x")  # what is given wins


def test_the_published_demo_board_is_not_replaced_by_another_model(monkeypatch, capsys, tmp_path) -> None:
    """What a new user did: `mlalign run --model tiny ...` aimed at the demo's board (then its default) replaced
    it. Now it is refused before anything runs, naming what differs and the flag that would replace it."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "leaderboards" / "demo", "leaderboards/demo")
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        monkeypatch, capsys, "run", "--model", "tiny", "--limit", "2", "--board", "leaderboards/demo"
    )
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: --board leaderboards/demo holds the results of another configuration (")
    assert "model toy -> tiny" in err and "nothing was written: add --replace to replace them" in err
    assert snapshot(tmp_path) == before  # no run folder, the board untouched
    code, _, err = run_cli(monkeypatch, capsys, "run", "--limit", "2")  # the toy world, fewer items
    assert code == 2 and "evaluation.limit 200 -> 2" in err and "--replace" in err
    assert snapshot(tmp_path) == before


def test_a_board_no_run_published_is_not_replaced(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "leaderboards" / "demo", "board")
    Path("board/mlalign_study.json").unlink()  # as `mlalign leaderboard` writes a board
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--board", "board")
    assert code == 2 and "--board board holds a leaderboard that `mlalign run` did not publish" in err
    assert snapshot(tmp_path) == before


def test_replace_lets_another_configuration_in(tmp_path) -> None:
    from mlalign_tasks.errors import MlalignError
    from mlalign_tasks.pipeline.study_options import configure
    from mlalign_tasks.pipeline.study_record import BOARD_RECORD, check_config, computed

    board = tmp_path / "board"
    shutil.copytree(REPO / "leaderboards" / "demo", board)
    assert computed(configure()) == json.loads((board / BOARD_RECORD).read_text())  # the committed demo's
    check_config(configure(board=board, out=tmp_path / "run"))  # the demo's own configuration
    other = configure(model="tiny", board=board, out=tmp_path / "run")
    with pytest.raises(MlalignError, match="add --replace"):
        check_config(other)
    check_config(other, replace=True)
    assert not (tmp_path / "run").exists()

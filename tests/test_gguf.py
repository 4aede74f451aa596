"""GGUF files as `--model` inputs: the tiny model written to GGUF offline, converted once, used by every command."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import gguf
import pytest
import torch
import yaml
from mlalign_trainer import sft
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from mlalign_tasks import cli
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.artefacts import METADATA_FILE
from mlalign_tasks.files.data import sha256_file
from mlalign_tasks.leaderboard.runs import load_run
from mlalign_tasks.models import gguf_models
from mlalign_tasks.pipeline import study
from mlalign_tasks.pipeline.study_options import configure

TEXT = "Roger has 5 tennis balls. Er kauft 2 Dosen, 汉字 ąę!"


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`mlalign ARGS` in-process through the real entry point; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["mlalign", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def converted(tiny_gguf: Path) -> Path:
    return Path(gguf_models.resolve_model(str(tiny_gguf)))


def test_a_gguf_file_becomes_the_same_model_once(tiny_gguf, tiny_model_dir, converted) -> None:
    source = gguf_models.model_source(converted)
    assert source == {"gguf_file": tiny_gguf.name, "sha256": sha256_file(tiny_gguf)}
    assert converted.name == f"gguf-{source['sha256']}" and converted.parent == gguf_models.cache_dir()
    assert "quantization_config" not in AutoConfig.from_pretrained(converted).to_dict()
    original, tokenizer = (
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    ids = tokenizer(TEXT).input_ids
    assert AutoTokenizer.from_pretrained(converted)(TEXT).input_ids == ids  # <bos> and every merge kept
    ids = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(AutoModelForCausalLM.from_pretrained(converted)(ids).logits, original(ids).logits)
    said: list[str] = []
    assert gguf_models.resolve_model(str(tiny_gguf), log=said.append) == str(converted)
    assert said == []  # found by its sha256: not converted again


def test_bad_gguf_inputs_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(MlalignError, match=r"no such GGUF file; pass the path"):
        gguf_models.resolve_model(str(tmp_path / "absent.gguf"))
    bert = tmp_path / "bert.gguf"
    writer = gguf.GGUFWriter(bert, "bert")
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(MlalignError) as err:
        gguf_models.resolve_model(str(bert))
    assert "'bert' cannot be loaded by transformers; it reads" in str(err.value) and "gemma3, " in str(err.value)
    assert "\n" not in str(err.value)
    (tmp_path / "text.gguf").write_text("not a model", encoding="utf-8")
    with pytest.raises(MlalignError, match="is not a readable GGUF file"):
        gguf_models.resolve_model(str(tmp_path / "text.gguf"))


def test_a_packaged_model_without_its_package_offline_names_the_extra(monkeypatch, tmp_path) -> None:
    spec = dataclasses.replace(gguf_models.PACKAGED["gemma-3-270m"], package="mlalign-no-such-package")
    monkeypatch.setitem(gguf_models.PACKAGED, "gemma-3-270m", spec)
    monkeypatch.setenv(gguf_models.CACHE_ENV, str(tmp_path))  # not converted yet, whatever the user's cache holds
    said: list[str] = []
    with pytest.raises(MlalignError, match=r"MLALIGN_OFFLINE forbids downloads; install it with `pip install "):
        gguf_models.resolve_model("gemma-3-270m", log=said.append)
    assert "238 MB of wheels" in said[0] and "minutes on two CPU cores" in said[0]  # the cost, said first


@pytest.mark.slow
def test_eval_train_merge_and_analyze_take_a_gguf_file(monkeypatch, capsys, tmp_path, tiny_gguf, converted) -> None:
    identity = f"{tiny_gguf.name}@sha256:{sha256_file(tiny_gguf)}"
    results = tmp_path / "results"
    args = ["eval", "-m", str(tiny_gguf), "-t", "mgsm_aligned:de", "--limit", "1", "--gen-kwargs", "max_gen_toks=4"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--device", "cpu", "--output-path", str(results))
    assert code == 0, err[-3000:]
    flat = "".join(out.split())  # the table wraps its title
    assert identity in flat and str(converted) not in flat  # the table's title names the file
    (results_file,) = results.glob("*/results_*.json")
    assert (
        json.loads(results_file.read_text(encoding="utf-8"))["mlalign"]["model_source"]["gguf_file"] == tiny_gguf.name
    )
    assert load_run(results_file).pretrained == identity  # the board names the file, not the cache folder
    code, _, err = run_cli(monkeypatch, capsys, "leaderboard", str(results), "--out", str(tmp_path / "board"))
    assert code == 0, err[-3000:]
    board = (tmp_path / "board" / "results.json").read_text(encoding="utf-8")
    assert identity in board and str(converted) not in board

    adapter = tmp_path / "adapter"
    train = ["--model_name_or_path", str(tiny_gguf), "--output_dir", str(adapter), "--languages", "de"]
    train += ["--examples_per_language", "4", "--max_steps", "1", "--per_device_train_batch_size", "4"]
    assert sft.main([*train, "--effective_batch_size", "4", "--max_length", "256", "--report_to", "none"]) == 0
    meta = json.loads((adapter / METADATA_FILE).read_text(encoding="utf-8"))
    assert meta["base_model"] == str(converted)
    assert meta["base_model_source"] == gguf_models.model_source(converted)

    # the study's board names and pairs the converted model as its results do (by the file and its sha256)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--peft", str(adapter), "--device", "cpu",
                           "--output-path", str(results))  # fmt: skip
    assert code == 0, err[-3000:]
    cfg = configure(model=str(tiny_gguf), out=tmp_path / "run", board=tmp_path / "study-board", device="cpu")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(study.board_manifest(cfg, str(converted), adapter)), encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "leaderboard", str(results), "--out", str(tmp_path / "study-board"),
                           "--manifest", str(manifest))  # fmt: skip
    assert code == 0, err[-3000:]
    models = json.loads((tmp_path / "study-board" / "results.json").read_text(encoding="utf-8"))["models"]
    stem = tiny_gguf.name.removesuffix(".gguf")
    assert [(m["name"], m["base_model"], m["compared_with"]) for m in models] == [
        (f"{stem} (base)", identity, None),
        (f"{stem} + QAlign", identity, identity),
    ]

    merged = tmp_path / "merged"
    code, _, err = run_cli(
        monkeypatch, capsys, "merge", "--peft", str(adapter), "--out", str(merged), "-m", str(tiny_gguf)
    )
    assert code == 0, err[-3000:]
    assert (merged / "model.safetensors").is_file()

    lens = ["analyze", "pca", "-m", str(tiny_gguf), "--out", str(tmp_path / "pca"), "--langs", "de", "--limit", "4"]
    code, _, err = run_cli(monkeypatch, capsys, *lens, "--device", "cpu")
    assert code == 0, err[-3000:]


def test_a_study_on_a_gguf_file_runs_on_its_converted_folder(tmp_path, tiny_gguf, converted) -> None:
    cfg = configure(model=str(tiny_gguf), out=tmp_path / "run", board=tmp_path / "board", device="cpu")
    _, paths = study.build_stages(cfg)
    assert paths["model"] == converted

"""`--batch-size auto`: a fixed size on the CPU, and a probe as long as the requests need; Ctrl-C stops at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest
from lm_eval.api.instance import Instance

from mlalign_tasks.models.hf_lm import CPU_AUTO_BATCH, MlalignLM

GENERATING, GENERATED = "test: a batch of generations starts", "test: a batch of generations ended"


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> MlalignLM:
    return MlalignLM(pretrained=str(tiny_model_dir), batch_size="auto", max_batch_size=2, device="cpu")


def test_the_probe_is_as_long_as_the_requests_need(lm):
    """lm-eval's search (here from 2 sequences) runs at the length asked for, not the model's 16384 positions."""
    shapes = []
    call = lm._model_call
    lm._model_call = lambda inps, **kw: (shapes.append(tuple(inps.shape)), call(inps, **kw))[1]
    try:
        assert lm.probe_batch_size(40) == 2
    finally:
        del lm._model_call
    assert lm.max_length == 16384 and shapes == [(2, 40)] * 5


def test_generations_set_the_probe_length_and_run_in_fixed_batches_on_the_cpu(lm, capsys):
    contexts = ["Question: what is one plus one?\nAnswer:", "Q: 2+2?\nA:"]
    requests = [
        Instance("generate_until", {}, (c, {"until": ["\n"], "max_gen_toks": 5}), idx=i) for i, c in enumerate(contexts)
    ]
    probes = []
    call = lm._model_call
    lm._model_call = lambda inps, **kw: (probes.append(tuple(inps.shape)), call(inps, **kw))[1]
    try:
        assert len(lm.generate_until(requests, disable_tqdm=True)) == 2
    finally:
        del lm._model_call
    assert probes == []  # no search on the CPU: lm-eval's would run 64 sequences of 16384 positions
    assert lm._probe_length == len(lm.tok_encode(contexts[0])) + 5
    assert lm.auto_batch_size(10_000) == CPU_AUTO_BATCH
    assert f"batches of {CPU_AUTO_BATCH}" in capsys.readouterr().err


@pytest.mark.slow
def test_auto_on_the_cpu_is_quick_and_ctrl_c_stops_at_once(tmp_path, tiny_model_dir):
    """With the tiny model (16384 positions) lm-eval's search ran 14 minutes at 13 GB; here it takes seconds. A
    second evaluation, interrupted once its first batch of 8 x 1000 new tokens has started, exits before that batch
    ends (130) and leaves no results behind."""
    base = [sys.executable, "-m", "mlalign_tasks.cli", "eval", "-m", str(tiny_model_dir), "--batch-size", "auto"]
    quick = [*base, "-t", "mgsm_aligned:de,snli_aligned_de", "--limit", "2", "--gen-kwargs", "max_gen_toks=4"]
    done = subprocess.run([*quick, "--output-path", str(tmp_path / "ok")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"batches of {CPU_AUTO_BATCH}" in done.stderr
    (results,) = (tmp_path / "ok").glob("*/results_*.json")
    assert json.loads(results.read_text())["config"]["batch_size"] == "auto"

    long = [*base[3:], "-t", "mgsm_aligned:de", "--limit", "64", "--gen-kwargs", "max_gen_toks=1000"]
    traced = (  # the same command, saying on stderr when a batch of generations starts and when it ends
        "import sys\n"
        "from lm_eval.models.huggingface import HFLM\n"
        "generate = HFLM._model_generate\n"
        "def traced(*args, **kwargs):\n"
        f"    print({GENERATING!r}, file=sys.stderr, flush=True)\n"
        "    out = generate(*args, **kwargs)\n"
        f"    print({GENERATED!r}, file=sys.stderr, flush=True)\n"
        "    return out\n"
        "HFLM._model_generate = traced\n"
        f"sys.argv = ['mlalign', *{[*long, '--output-path', str(tmp_path / 'cut')]!r}]\n"
        "from mlalign_tasks.cli import main\nmain()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", traced], stderr=subprocess.PIPE, text=True)
    lines, generating = [], threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(GENERATING):
                generating.set()

    reader = threading.Thread(target=read_stderr)
    reader.start()
    assert generating.wait(timeout=900), "".join(lines)[-3000:]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=900)
    reader.join()
    err = "".join(lines)
    assert err.count(GENERATING) == 1 and GENERATED not in err, "Ctrl-C was not heard within the first batch"
    assert proc.returncode == 130 and err.rstrip().endswith("interrupted") and "Traceback" not in err
    assert not (tmp_path / "cut").exists()

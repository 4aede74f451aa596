"""Shared fixtures: offline data from ../shared/data, isolated caches, the mirror over HTTP, one tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MLALIGN_DATA_DIR", str(SHARED_DATA))
    os.environ["MLALIGN_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("MLALIGN_CACHE_DIR", str(Path(config.rootpath) / ".pytest_cache" / "mlalign-cache"))
    os.environ.setdefault("MLALIGN_MODEL_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "model-cache"))
    os.environ.setdefault("MLALIGN_BOARD_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "board-cache"))
    # boards draw their plots in a forked process: importing matplotlib here once spares every board the import
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.backends.backend_svg  # noqa: F401
    import matplotlib.figure  # noqa: F401


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data mirror (tests never copy it into the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"offline data mirror not found at {SHARED_DATA}; tests need ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Llama model, built once per test session."""
    from mlalign_tasks.models.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


def write_gguf(model_dir: Path, path: Path) -> Path:
    """Write the Llama model in `model_dir` (float32, byte-level BPE tokenizer) to the GGUF file `path`, as
    llama.cpp's converter lays it out: its tensor names, and q/k rows permuted for its rotary layout."""
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = {**tokenizer["model"]["vocab"], **{t["content"]: t["id"] for t in tokenizer["added_tokens"]}}
    tokens = sorted(vocab, key=vocab.get)
    specials = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    head_dim = config.hidden_size // config.num_attention_heads

    def permute(weights, heads):  # llama.cpp's: each head's rotary halves interleaved
        return weights.reshape(heads, 2, head_dim // 2, -1).swapaxes(1, 2).reshape(weights.shape)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tokenizer["model"]["merges"]])
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_pad_token_id(config.pad_token_id)
    writer.add_add_bos_token(True)
    for name, weights in load_file(model_dir / "model.safetensors").items():
        if name.endswith("self_attn.q_proj.weight"):
            weights = permute(weights, config.num_attention_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            weights = permute(weights, config.num_key_value_heads)
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a GGUF file."""
    return write_gguf(tiny_model_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny-llama.gguf")


class MirrorHandler(BaseHTTPRequestHandler):
    """Serves the mirror under canonical URLs /{owner}/{repo}/{commit}/{path}; `mode` injects failures."""

    mirror: Path
    mode = "ok"
    sent = 0
    by_url: dict = {}  # URL path -> registry entry
    url = ""  # the server's base URL, for MLALIGN_DATA_URL

    def log_message(self, *args) -> None:
        pass

    def stream(self, body: bytes) -> bool:
        """Write `body` in 64 KiB pieces, counting what went out, until the client hangs up (then False)."""
        try:
            for start in range(0, len(body), 64 << 10):
                self.wfile.write(body[start : start + (64 << 10)])
                type(self).sent += len(body[start : start + (64 << 10)])
        except OSError:
            return False
        return True

    def do_GET(self) -> None:
        entry = self.by_url.get(self.path)
        if entry is None or not (self.mirror / entry.name).is_file():  # not in the mirror: pinned by blob id only
            self.send_error(404)
            return
        if self.mode == "error":
            self.send_error(503, "unavailable")
            return
        body = (self.mirror / entry.name).read_bytes()
        if entry.transform == "python_literals_to_json":  # the canonical file is a Python module
            obj = json.loads(body)
            body = "".join(f"{k.upper()} = {v!r}\n" for k, v in obj.items()).encode()
        if self.mode == "corrupt":
            body = body[:-10] + b"0123456789"
        self.send_response(200)
        if self.mode == "huge":  # 400 MiB without a length, as a hostile mirror sends it
            self.end_headers()
            self.stream(body + b"#" * (400 << 20))
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "drip":  # a byte every 50 ms until the client hangs up (at most 2 min): never idle long enough
            for i in range(2400):  # for a socket timeout, and longer than a loaded machine needs to reach a time limit
                if not self.stream(body[i : i + 1]):
                    return
                time.sleep(0.05)
            return
        if self.mode == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture(scope="session")
def mirror_http(shared_data):
    """A real HTTP server on 127.0.0.1 serving the mirror's files under their canonical URLs (`MirrorHandler`)."""
    from mlalign_tasks.files import data

    MirrorHandler.mirror = shared_data
    MirrorHandler.by_url = {"/" + e.url("").split("/", 3)[3]: e for e in data.registry().values() if e.path}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    MirrorHandler.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield MirrorHandler
    httpd.shutdown()


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding mlalign installed from its wheel (built from this tree), outside the repository.

    Its dependencies are this environment's, reached through a path file: installing them again would take minutes.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp)], check=True)
    (wheel,) = tmp.glob("mlalign-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "mlalign-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)])
    return venv


@pytest.fixture(scope="session")
def file_size_limit() -> list[str]:
    """`[*file_size_limit, BYTES, COMMAND...]` runs COMMAND with files limited to BYTES: a larger write fails with
    EFBIG, as one on a full disk fails with ENOSPC (SIGXFSZ, which would kill the process instead, is ignored)."""
    return [
        sys.executable, "-c",
        "import os, resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2)\n"
        "os.execv(sys.argv[2], sys.argv[2:])\n",
    ]  # fmt: skip

"""The toy world's model: a small Llama pretrained from scratch on a generated corpus (transformers Trainer, CPU).

The corpus is English-centric, as a real LLM's: English review documents with their labels in the paper
tasks' format, English word problems with worked solutions in MGSM's prompt, English everyday text, and
monolingual text in every synthetic language (reviews, word problems and sentences, never a task answer,
never a translation, a share of their words left in English as code-switching). `build_toy_model` builds it
deterministically from `ToyModelConfig`, which holds every knob (`mlalign toy-model`, or the model stage of
`mlalign run --model toy`).

The pretrained model ships in the package (`PACKAGED`, weights stored in bfloat16 and xz-compressed: 1.9 MB), built by
`scripts/build_toy_model.py` with the default configuration; `install` writes it out in float32 for a run, once the
decompressed weights match the size and sha256 recorded in `MARKER_FILE`.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.files.atomic import atomic_dir, weights_written, write_json_atomic
from mlalign_tasks.files.output_dirs import check_replaceable
from mlalign_tasks.tasks import toy_tasks
from mlalign_tasks.tasks.languages import TOY_LANGUAGES
from mlalign_tasks.tasks.toy_world import World, review, sentence, word_problem

MARKER_FILE = "mlalign_toy.json"  # beside the weights: marks a model as the toy world's, with its configuration
PACKAGED = "resources/toy_model"  # the default toy model, in the package (built by scripts/build_toy_model.py)
WEIGHTS = "model.safetensors"
PACKED_WEIGHTS = WEIGHTS + ".xz"  # the packaged bfloat16 weights, xz-compressed (any `xz -d` restores them)
# LZMA2 for 2-byte values (no literal context, 2-byte positions): 1.86 MB of 2.76 MB, where the defaults give 1.97 MB
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 0, "lp": 1, "pb": 1}]


@dataclass(frozen=True)
class CorpusMix:
    """How many documents of each kind the pretraining corpus holds."""

    review_docs: int = 3000  # English: 2-4 reviews, each followed by its label, as in the 2-shot prompts
    problem_docs: int = 3000  # English: a word problem and its worked solution in MGSM's prompt
    text_docs: int = 3000  # English: everyday sentences and unlabelled reviews
    docs_per_language: int = 800  # each synthetic language: reviews, word problems and sentences, no answers
    code_switch: float = 0.15  # chance that a word of synthetic-language text is left in English
    repeat: float = 0.3  # chance that a text document repeats one of its sentences


@dataclass(frozen=True)
class ToyModelConfig:
    """Every knob of the toy model: world, corpus, architecture, pretraining."""

    world: World = field(default_factory=World)
    corpus: CorpusMix = field(default_factory=CorpusMix)
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    block_size: int = 256
    batch_size: int = 16
    steps: int = 1000  # fewer: the English task is learned, but question alignment does not take (README)
    learning_rate: float = 3e-3
    seed: int = 0
    threads: int = 2  # torch CPU threads: part of what makes the build reproducible bit for bit

    def as_dict(self) -> dict:
        return asdict(self)


def check_out(out: Path) -> None:
    """Refuse (one line, before any work) an `out` that is neither new, empty nor an earlier toy model's folder."""
    check_replaceable(out, "--out", (MARKER_FILE,), "a model directory written by `mlalign toy-model`")


def corpus(cfg: ToyModelConfig) -> list[str]:
    """The pretraining documents, shuffled; no test item or exemplar of the toy tasks appears in them."""
    world, mix = cfg.world, cfg.corpus
    rng = random.Random(f"{world.seed}:corpus")
    skip = toy_tasks.held_out(world)

    def fresh(make):
        while True:
            item = make(rng)
            if (item if isinstance(item, str) else item[0]) not in skip:
                return item

    def with_repeat(parts: list[str]) -> list[str]:
        return [*parts, rng.choice(parts)] if rng.random() < mix.repeat else parts

    docs = []
    for _ in range(mix.review_docs):
        docs.append("\n".join(toy_tasks.labelled(*fresh(review), "en", world) for _ in range(rng.randint(2, 4))))
    for _ in range(mix.problem_docs):
        question, solution, _ = fresh(word_problem)
        docs.append(toy_tasks.math_prompt(question) + " " + solution)
    for _ in range(mix.text_docs):
        parts = [fresh(sentence) if rng.random() < 0.6 else fresh(review)[0] for _ in range(rng.randint(2, 5))]
        docs.append(" ".join(with_repeat(parts)))
    makers = ((0.4, lambda r: review(r)[0]), (0.7, lambda r: word_problem(r)[0]), (1.0, sentence))
    for code in TOY_LANGUAGES:
        for _ in range(mix.docs_per_language):
            parts = []
            for _ in range(rng.randint(2, 4)):
                roll = rng.random()
                parts.append(fresh(next(make for bound, make in makers if roll < bound)))
            texts = []
            for part in with_repeat(parts):
                keep = frozenset(w for w in part.split() if rng.random() < mix.code_switch) if mix.code_switch else None
                texts.append(world.translate(part, code, keep or frozenset()))
            docs.append("\n".join(texts))
    rng.shuffle(docs)
    return docs


def corpus_hash(docs: list[str]) -> str:
    return hashlib.sha256("\0".join(docs).encode("utf-8")).hexdigest()


def build_toy_model(out: str | Path, cfg: ToyModelConfig | None = None, log=print) -> Path:
    """Pretrain the toy model and write it (weights, tokenizer, `MARKER_FILE`) to `out` atomically."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from mlalign_tasks.models.tiny_model import build_tokenizer, new_llama

    cfg = cfg or ToyModelConfig()
    out = Path(out)
    check_out(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        docs = corpus(cfg)
        tokenizer = build_tokenizer(cfg.vocab_size, docs)
        ids = [i for doc in docs for i in [*tokenizer(doc)["input_ids"], tokenizer.eos_token_id]]
        blocks = [ids[i : i + cfg.block_size] for i in range(0, len(ids) - cfg.block_size + 1, cfg.block_size)]
        log(f"toy corpus: {len(docs)} documents, {len(ids)} tokens, {len(blocks)} blocks of {cfg.block_size}")
        model = new_llama(
            tokenizer,
            cfg.seed,
            vocab_size=len(tokenizer),
            hidden_size=cfg.hidden_size,
            intermediate_size=3 * cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads,
            max_position_embeddings=1024,
        )
        with atomic_dir(out) as tmp, weights_written(out):
            args = TrainingArguments(
                output_dir=str(tmp / ".trainer"),
                per_device_train_batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate,
                max_steps=cfg.steps,
                lr_scheduler_type="cosine",
                warmup_steps=0.05,
                weight_decay=0.01,
                logging_steps=max(1, cfg.steps // 10),
                save_strategy="no",
                report_to="none",
                use_cpu=True,
                seed=cfg.seed,
                full_determinism=True,
                disable_tqdm=True,
            )
            dataset = Dataset.from_dict({"input_ids": blocks, "labels": blocks})
            trainer = Trainer(model=model, args=args, train_dataset=dataset)
            trainer.train()
            losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json_atomic(
                tmp / MARKER_FILE,
                {
                    "config": cfg.as_dict(),
                    "corpus_sha256": corpus_hash(docs),
                    "corpus_tokens": len(ids),
                    "final_loss": round(float(losses[-1]), 4) if losses else None,
                    "torch": torch.__version__,
                },
            )
            (tmp / ".trainer").rmdir() if (tmp / ".trainer").is_dir() and not any(
                (tmp / ".trainer").iterdir()
            ) else None
    finally:
        torch.set_num_threads(threads)
    return out


def read_marker(model_dir: str | Path) -> dict | None:
    """The toy model's record (configuration, corpus hash), or None when `model_dir` is not a toy model."""
    path = Path(model_dir) / MARKER_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _packaged() -> Path:
    from importlib import resources

    return Path(str(resources.files("mlalign_tasks").joinpath(PACKAGED)))


def packaged_record() -> dict:
    """The packaged model's record: its build configuration, corpus hash, and the size and sha256 of its stored
    (bfloat16) weights, which are checked against it."""
    folder = _packaged()
    _packaged_bytes(folder)
    return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))


def _packaged_bytes(folder: Path) -> bytes:
    """The stored weights, decompressed no further than their recorded size and checked against their sha256."""
    rebuild = "reinstall mlalign or rebuild it with `python scripts/build_toy_model.py`"
    if not (folder / MARKER_FILE).is_file():
        raise MlalignError(f"the packaged toy model is missing ({folder}); {rebuild}")
    record = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    size, digest = record.get("weights_bytes"), record.get("weights_sha256")
    if not isinstance(size, int) or not isinstance(digest, str):
        raise MlalignError(f"{folder / MARKER_FILE} records no size and sha256 of the toy model's weights; {rebuild}")
    packed = folder / PACKED_WEIGHTS
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        data = decompressor.decompress(packed.read_bytes(), max_length=size + 1)  # no more than recorded: no xz bomb
    except (OSError, lzma.LZMAError) as e:
        raise MlalignError(f"cannot read the packaged toy model's weights {packed} ({e}); {rebuild}") from None
    if len(data) > size or not decompressor.eof:
        state = "expand beyond" if len(data) > size else "are cut short of"
        raise MlalignError(f"the packaged toy model's weights {packed} {state} their recorded {size} bytes; {rebuild}")
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        raise MlalignError(f"the packaged toy model's weights {packed} do not match their recorded sha256; {rebuild}")
    return data


def packaged_weights(packaged: Path | None = None) -> dict:
    """The packaged weights (or those `package` stored in the folder `packaged`) as stored, checked against their
    record: name -> bfloat16 tensor."""
    from safetensors.torch import load

    return load(_packaged_bytes(packaged or _packaged()))


def install(out: str | Path, packaged: str | Path | None = None) -> Path:
    """Write the packaged toy model (or the one `package` stored in the folder `packaged`) into the folder `out`
    (weights back in float32, as it was trained); weights that do not match their record are refused before anything
    is written."""
    from safetensors.torch import save_file

    folder, out = Path(packaged) if packaged else _packaged(), Path(out)
    weights = {name: tensor.float() for name, tensor in packaged_weights(folder).items()}
    out.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.is_file() and item.name != PACKED_WEIGHTS:
            shutil.copyfile(item, out / item.name)
    save_file(weights, out / WEIGHTS, metadata={"format": "pt"})
    return out


def write_packaged(out: str | Path, packaged: str | Path | None = None) -> Path:
    """The packaged model (or the one stored in `packaged`) written to `out` atomically (`mlalign toy-model`): a new
    folder or an earlier one's."""
    out = Path(out)
    check_out(out)
    with atomic_dir(out) as tmp:
        install(tmp, packaged)
    return out


def package(model_dir: str | Path, dest: str | Path) -> None:
    """Store a built toy model as the packaged one: its weights in bfloat16 (xz), their size and sha256 added to its
    `MARKER_FILE`, the other files as they are."""
    import torch
    from safetensors.torch import load_file, save

    model_dir, dest = Path(model_dir), Path(dest)
    with atomic_dir(dest) as tmp:
        for item in model_dir.iterdir():
            if item.is_file() and item.name not in (WEIGHTS, MARKER_FILE):
                shutil.copyfile(item, tmp / item.name)
        weights = {name: t.to(torch.bfloat16) for name, t in sorted(load_file(model_dir / WEIGHTS).items())}
        stored = save(weights, metadata={"format": "pt"})
        record = read_marker(model_dir) or {}
        record |= {"weights_bytes": len(stored), "weights_sha256": hashlib.sha256(stored).hexdigest()}
        write_json_atomic(tmp / MARKER_FILE, record)
        (tmp / PACKED_WEIGHTS).write_bytes(lzma.compress(stored, format=lzma.FORMAT_XZ, filters=XZ_FILTERS))

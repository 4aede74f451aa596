"""How an interrupted evaluation resumes: lm-eval's request cache (`mlalign eval --use_cache PATH`), bound to what
changes an answer.

lm-eval (`simple_evaluate(use_cache=PATH)`) wraps the model in `lm_eval.api.model.CachingLM`: a sqlite file
``PATH_rank0.db`` maps the sha256 of each request (its kind and arguments: the prompt, the continuation or the
generation settings) to the model's answer, written as the model reports it through its `cache_hook` (ours
a batch's answers at once: `mlalign_tasks.models.hf_lm.BatchAnswers`), so that a rerun computes only the requests
with no answer yet; sampled generations are never replayed. Its key names neither the model nor how it is run, so here the file also records, in a table of its own,
everything else an answer depends on (`answer_key`), and a file recorded for anything else is refused, or, for a
stage's own cache, started afresh.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from mlalign_tasks import __version__
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.models.model_identity import identify, local_model

if TYPE_CHECKING:
    from mlalign_tasks.pipeline.evaluate import EvalRequest

DB_SUFFIX = "_rank0.db"  # what lm-eval appends to PATH; `mlalign eval` runs in one process, rank 0
KEY_TABLE = "mlalign_answer_key"  # beside lm-eval's own table ("unnamed")
SOFTWARE = ("lm_eval", "torch", "transformers", "peft")  # whose releases may change an answer


@dataclass(frozen=True)
class RequestCache:
    """Where an evaluation keeps the answers of its finished requests.

    Parameters:
        path: lm-eval's `use_cache` PATH; the answers are in ``PATH_rank0.db``.
        fresh_when_stale: a file recorded for another model or settings is removed and started afresh (a stage's
            own cache, in its work folder) instead of refused (the user's ``--use_cache``).
    """

    path: Path
    fresh_when_stale: bool = False

    @property
    def db(self) -> Path:
        return Path(f"{self.path}{DB_SUFFIX}")


def _files_digest(name: str) -> str | None:
    """The identity of a model's or adapter's files (its folder's top level: config, weights, tokenizer), a Hugging
    Face id's those of its snapshot in the Hub cache; None for an id not cached."""
    path = local_model(name)
    return identify(path, every_file=True).sha256 if path else None


def answer_key(req: EvalRequest, device: str, token_sets: dict | None) -> dict:
    """What an answer depends on beside its request: the model's and adapter's files, how the model is loaded and
    batched (padding shifts the last bits), the paper tasks' label token sets and the software that computes it.
    The seed is not in it: it changes only sampled generations, which lm-eval never caches."""
    from dataclasses import asdict

    key = {
        "model": [req.model, _files_digest(req.model)],
        "adapter": [req.adapter, _files_digest(req.adapter)] if req.adapter else None,
        "dtype": req.dtype.value,
        "load_in_4bit": req.nf4_preset.value if req.load_in_4bit else False,
        "device": device,
        "batch_size": req.batch_size,
        "label token sets": {task: asdict(sets) for task, sets in sorted(token_sets.items())} if token_sets else None,
        "software": {"mlalign": __version__} | {name: version(name) for name in SOFTWARE},
    }
    return json.loads(json.dumps(key, sort_keys=True))  # as a file records it (tuples as lists)


def _recorded_key(db: Path) -> dict | None:
    """The answer key `db` records; None when it has none (lm-eval wrote it alone)."""
    try:
        with closing(sqlite3.connect(db)) as conn:  # read-write: a crash's journal is rolled back
            row = conn.execute(f'SELECT value FROM "{KEY_TABLE}" WHERE key = ?', ("key",)).fetchone()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None
        raise MlalignError(f"--use_cache: cannot read {db} ({e}); pass another path") from None
    except sqlite3.DatabaseError:
        raise MlalignError(f"--use_cache: {db} is not a request cache (sqlite file); pass another path") from None
    return json.loads(row[0]) if row else None


def prepare(cache: RequestCache, key: dict) -> str:
    """lm-eval's `use_cache` value for `cache`, whose file holds only answers computed under `key` (recorded in a
    new file); a file recorded for anything else, or unreadable, is refused with the settings that differ, or removed
    when the cache is `fresh_when_stale`."""
    db = cache.db
    if db.is_dir():
        raise MlalignError(f"--use_cache {cache.path}: {db} is a folder; pass a path whose {DB_SUFFIX} is a file")
    if db.exists():
        try:
            recorded = _recorded_key(db)
        except MlalignError:
            if not cache.fresh_when_stale:
                raise
            recorded = None  # unreadable (a crash of the machine while writing): started afresh
        if recorded == key:
            return str(cache.path)
        if not cache.fresh_when_stale:
            if recorded is None:
                what = "answers that name no model and settings (lm_eval's own cache?)"
            else:
                what = (
                    f"answers of another evaluation ({', '.join(n for n in key if recorded.get(n) != key[n])} differ)"
                )
            raise MlalignError(
                f"--use_cache {cache.path}: {db} holds {what}; pass another path, one per model and settings"
            )
        db.unlink()
    db.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(f'CREATE TABLE "{KEY_TABLE}" (key TEXT PRIMARY KEY, value TEXT)')
        conn.execute(f'INSERT INTO "{KEY_TABLE}" VALUES (?, ?)', ("key", json.dumps(key, sort_keys=True)))
    return str(cache.path)

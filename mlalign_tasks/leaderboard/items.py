"""A cell's logged items as columns (`Items`), and the answer codes that let two models' answers be compared."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np

NO_ANSWER = -1  # the answer code of an item the model gave no answer to
_TEXT_ANSWER = 1 << 62  # text answers' codes lie above every choice index


class Items(NamedTuple):
    """One cell's logged items as columns, sorted by item key: keys (doc ids; see `leaf_keys`), answer codes
    (`answer_code`) and scores (NaN where the metric is missing or not finite)."""

    keys: np.ndarray
    answers: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, keys: Any, answers: Any, scores: Any) -> Items:
        """Columns sorted by key; of items logged twice, the last one is kept (as lm-eval's reruns overwrite)."""
        keys = np.asarray(keys, dtype=np.int64)
        answers = np.asarray(answers, dtype=np.int64)
        scores = np.array(scores, dtype=np.float64)
        scores[~np.isfinite(scores)] = np.nan
        if keys.size > 1 and not (keys[1:] > keys[:-1]).all():
            order = np.argsort(keys, kind="stable")
            keys, answers, scores = keys[order], answers[order], scores[order]
            last = np.append(keys[1:] != keys[:-1], True)
            keys, answers, scores = keys[last], answers[last], scores[last]
        return cls(keys, answers, scores)

    @classmethod
    def join(cls, parts: list[Items]) -> Items:
        """The items of several files of one cell (a group's leaves, with distinct keys)."""
        if len(parts) == 1:
            return parts[0]
        return cls.of(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    @property
    def size(self) -> int:
        return int(self.keys.size)


def answer_code(answer: str | int | None) -> int:
    """An answer as an int64 that compares as the answer does: a choice index is itself, a text answer a 62-bit
    digest of it (above every choice index), no answer `NO_ANSWER`."""
    if answer is None:
        return NO_ANSWER
    if isinstance(answer, int):
        return answer
    digest = int.from_bytes(hashlib.blake2b(answer.encode(errors="surrogatepass"), digest_size=8).digest(), "big")
    return _TEXT_ANSWER | digest & (_TEXT_ANSWER - 1)

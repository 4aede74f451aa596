"""`--label-scoring first-token`: the paper's scoring of the label words, one forward per item."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mlalign_tasks import evaluate, paper_prompts
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.label_scoring import first_token_choices


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
        name = f"{paper_prompts.PAPER_TASKS[task]}_{lang}"
        (samples_file,) = out.glob(f"*/samples_{name}_*.jsonl")
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        items = paper_prompts.load_items(task, lang, limit=5)
        labels = paper_prompts.english_labels(task)
        correct = 0
        for sample in sorted(samples, key=lambda s: s["doc_id"]):
            item = items[sample["doc_id"]]
            ids = tokenizer(item["prompt"])["input_ids"]  # with BOS, as lm-eval encodes the context for this model
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
            firsts = [tokenizer(item["prompt"] + w)["input_ids"][len(ids)] for w in labels]
            expected = [logprobs[t].item() for t in firsts]  # the paper: first-token probabilities, one forward
            got = [float(resp[0]) for resp in sample["filtered_resps"]]
            assert got == pytest.approx(expected, abs=1e-4)
            pick = max(range(len(expected)), key=expected.__getitem__)
            assert sample["acc"] == float(pick == item["label"])
            correct += pick == item["label"]
        assert math.isclose(results["results"][name]["acc,none"], correct / 5)

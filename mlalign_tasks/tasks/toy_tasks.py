"""The toy world's tasks for lm-eval, parallel across its languages, in the real tasks' formats.

- ``toy_sentiment_aligned``: the paper tasks' format (``sentiment_aligned``): a 2-shot prefix in language X
  whose answers are the English label words, then the review and ``<Emotion in X>: "``; the English label
  word that follows is scored (``doc_to_choice``), so every label scoring of the paper tasks applies.
- ``toy_math_aligned``: MGSM's format (``mgsm_aligned``): QAlign's prompt with the question in X, greedy
  generation, the last number scored; few-shot exemplars are X questions with English worked solutions.

Items are drawn from seeded streams of the toy grammar (`mlalign_tasks.tasks.toy_world`) that the pretraining
corpus and the question-translation data leave out (`held_out`), so every score is on unseen text.
"""

from __future__ import annotations

import random
from functools import cache

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.tasks.languages import TOY_FAMILIES, TOY_LANGS, check_lang
from mlalign_tasks.tasks.toy_world import World, review, word_problem

SENTIMENT_FAMILY, MATH_FAMILY = TOY_FAMILIES
SENTIMENT_ITEMS = 500
MATH_ITEMS = 250
MATH_FEWSHOT = 8
LABELS = ("positive", "negative")  # index = the review's label
# The word before the answer, as in the paper's "Emotion: ". Every toy language borrows it from English (as
# German does): a word of its own would be one no text of the corpus ever uses.
KEYWORD = "Emotion"
DEFAULT_WORLD = World()
# MGSM's prompt (tasks_yaml/mgsm_aligned/_template_yaml: description + doc_to_text), which the corpus's solved
# English problems use too.
MATH_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{question}\n\n### Response:"
)


def _stream(world: World, name: str) -> random.Random:
    return random.Random(f"{world.seed}:{name}")


@cache
def _english(world: World) -> dict[str, list]:
    """The English test items, exemplars and 2-shot examples of both tasks."""
    rng = _stream(world, "sentiment-shots")
    shots: dict[int, str] = {}
    while len(shots) < len(LABELS):
        text, label = review(rng)
        shots.setdefault(label, text)
    shot_texts = set(shots.values())
    rng = _stream(world, "sentiment-test")
    reviews: dict[str, int] = {}
    while len(reviews) < SENTIMENT_ITEMS:
        text, label = review(rng)
        if text not in shot_texts:
            reviews.setdefault(text, label)
    rng = _stream(world, "math-test")
    problems: dict[str, tuple[str, int]] = {}
    while len(problems) < MATH_ITEMS + MATH_FEWSHOT:
        question, solution, answer = word_problem(rng)
        problems.setdefault(question, (solution, answer))
    return {
        "shots": [(shots[label], label) for label in range(len(LABELS))],
        "reviews": list(reviews.items()),
        "problems": [(q, *rest) for q, rest in problems.items()],
    }


def held_out(world: World | None = None) -> frozenset[str]:
    """Every English text of the test items and exemplars: the corpus and the training data never use them."""
    english = _english(world or DEFAULT_WORLD)
    return frozenset(
        [text for text, _ in english["shots"]]
        + [text for text, _ in english["reviews"]]
        + [question for question, _, _ in english["problems"]]
    )


QUESTION_POOL = 4000  # distinct English questions the question-translation data are drawn from


@cache
def questions(world: World | None = None) -> list[str]:
    """English questions of both tasks (reviews and word problems, alternately) for question-translation data:
    the tasks' training distribution, without the held-out test items and exemplars."""
    world = world or DEFAULT_WORLD
    rng, skip = _stream(world, "questions"), held_out(world)
    pool: dict[str, None] = {}
    while len(pool) < QUESTION_POOL:
        text = review(rng)[0] if len(pool) % 2 == 0 else word_problem(rng)[0]
        if text not in skip:
            pool.setdefault(text)
    return list(pool)


ANSWERED_POOL = 4000  # distinct English items with their answers the response-stage data are drawn from


@cache
def answered(world: World | None = None, math_only: bool = False) -> list[tuple[str, str]]:
    """English items of both tasks with their answers (reviews and word problems, alternately), as (prompt,
    completion) in the tasks' own formats (the 0-shot sentiment prompt and its label word, MGSM's prompt and the
    worked solution): the response-stage data, without the held-out test items and exemplars (`math_only`: the same
    pool's word problems alone)."""
    world = world or DEFAULT_WORLD
    rng, skip = _stream(world, "answered"), held_out(world)
    pool: dict[str, tuple[str, bool]] = {}  # prompt -> (completion, whether it is a word problem)
    while len(pool) < ANSWERED_POOL:
        if len(pool) % 2 == 0:
            text, label = review(rng)
            prompt, completion, problem = f'{text}\n{KEYWORD}: "', f'{LABELS[label]}"', False
        else:
            text, solution, _ = word_problem(rng)
            prompt, completion, problem = math_prompt(text), f" {solution}", True
        if text not in skip:
            pool.setdefault(prompt, (completion, problem))
    return [(prompt, completion) for prompt, (completion, problem) in pool.items() if problem or not math_only]


def labelled(text: str, label: int, lang: str, world: World | None = None) -> str:
    """A review in `lang` followed by its English label, as the 2-shot prefix (and the English corpus) shows it."""
    world = world or DEFAULT_WORLD
    return f'{world.translate(text, lang)}\n{KEYWORD}: "{LABELS[label]}"'


def math_prompt(question: str) -> str:
    """MGSM's zero-shot prompt for a question (the solution follows after one space)."""
    return MATH_PROMPT.format(question=question)


def sentiment_items(lang: str, world: World | None = None) -> list[dict]:
    """{"idx", "prompt", "label"}: the 2-shot prefix in `lang`, the review, then ``<Emotion>: "``."""
    check_lang(lang, TOY_LANGS, what="toy task language")
    world = world or DEFAULT_WORLD
    english = _english(world)
    prefix = "\n".join(labelled(text, label, lang, world) for text, label in english["shots"])
    return [
        {"idx": i, "prompt": f'{prefix}\n{world.translate(text, lang)}\n{KEYWORD}: "', "label": label}
        for i, (text, label) in enumerate(english["reviews"])
    ]


def reviews(lang: str, world: World | None = None) -> list[str]:
    """The test reviews in `lang`, without prompt (parallel sentences for the PCA)."""
    check_lang(lang, TOY_LANGS, what="toy task language")
    world = world or DEFAULT_WORLD
    return [world.translate(text, lang) for text, _ in _english(world)["reviews"]]


def math_items(lang: str, world: World | None = None) -> tuple[list[dict], list[dict]]:
    """(test items {"question", "answer"}, exemplars {"question", "answer", "solution"}); questions in `lang`,
    the exemplars' worked solutions in English (the model's language)."""
    check_lang(lang, TOY_LANGS, what="toy task language")
    world = world or DEFAULT_WORLD
    problems = _english(world)["problems"]
    rows = [
        {"question": world.translate(q, lang), "answer": str(answer), "solution": solution}
        for q, solution, answer in problems
    ]
    test = [{"question": r["question"], "answer": r["answer"]} for r in rows[:MATH_ITEMS]]
    return test, rows[MATH_ITEMS:]


def dataset(family: str, lang: str, world: World | None = None):
    """The lm-eval dataset of one toy task: split "test" (and "fewshot" for the math task)."""
    import datasets

    if family == SENTIMENT_FAMILY:
        # paper_choices / paper_suffix: what --label-scoring paper scores (the English label words, as is)
        rows = [
            {**item, "choices": list(LABELS), "paper_choices": list(LABELS), "paper_suffix": ""}
            for item in sentiment_items(lang, world)
        ]
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
    if family == MATH_FAMILY:
        test, fewshot = math_items(lang, world)
        return datasets.DatasetDict(
            {"test": datasets.Dataset.from_list(test), "fewshot": datasets.Dataset.from_list(fewshot)}
        )
    raise MlalignError(f"unknown toy task family {family!r}; valid: {', '.join(TOY_FAMILIES)}")

"""How a training example is written, as a TRL prompt/completion row.

- ``plain``: the question, then the paper's instruction line (``Translate the input from German to English:``).
- ``qalign``: QAlign's instruction (``Translate the following sentences from German to English. {question}``) as the
  instruction of the Alpaca no-input template; in stage II the question itself is the instruction. The completion
  follows ``### Response:`` directly; TRL appends the EOS, and the loss is on the completion and the EOS.
- ``chat``: the plain text (stage I) or the question (stage II) as a user turn of the model's chat template.
"""

from __future__ import annotations

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.tasks.languages import LANGUAGES

# QAlign's prompt (stage I and II, and its evaluation: tasks_yaml/mgsm_aligned/_template_yaml).
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
QALIGN_INSTRUCTION = "Translate the following sentences from {source} to {target}. {question}"
PAPER_INSTRUCTION = "Translate the input from {source} to {target}:"


def paper_instruction(source: str, target: str = "en") -> str:
    """The paper's instruction line for a language pair (codes)."""
    return PAPER_INSTRUCTION.format(source=LANGUAGES[source].name, target=LANGUAGES[target].name)


def translation_row(question: str, translation: str, source: str, target: str, fmt: str) -> dict:
    """A stage-I example: `question` in language `source` -> `translation` in `target` (codes)."""
    if fmt == "qalign":
        instruction = QALIGN_INSTRUCTION.format(
            source=LANGUAGES[source].name, target=LANGUAGES[target].name, question=question
        )
        return {"prompt": ALPACA_NO_INPUT.format(instruction=instruction), "completion": translation}
    text = f"{question}\n{paper_instruction(source, target)}\n"
    if fmt == "chat":
        return {
            "prompt": [{"role": "user", "content": text}],
            "completion": [{"role": "assistant", "content": translation}],
        }
    return {"prompt": text, "completion": translation}


def response_row(question: str, answer: str, fmt: str) -> dict:
    """A stage-II example: an English question -> its answer."""
    if fmt == "qalign":
        return {"prompt": ALPACA_NO_INPUT.format(instruction=question), "completion": answer}
    if fmt == "chat":
        return {
            "prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": answer}],
        }
    raise MlalignError(
        f"--prompt_format {fmt}: stage II writes question-answer examples in QAlign's Alpaca template (qalign) "
        "or the model's chat template (chat)"
    )

"""The lm-eval hooks of every task folder: the templates name them as ``!function mlalign_tasks.tasks.task_hooks.x``
(lm-eval imports a dotted path when no such file lies next to the YAML), and the generated per-language YAMLs
pass the family and the language in ``dataset_kwargs``."""

from __future__ import annotations

from mlalign_tasks.tasks import math_tasks, paper_prompts, toy_tasks
from mlalign_tasks.tasks.languages import TOY_FAMILIES

extract_filter = math_tasks.extract_filter
qalign_filter = math_tasks.qalign_filter
process_results = math_tasks.process_results

# paper family -> (task, label words)
_PAPER_FAMILIES = {
    family: (task, paper_prompts.LabelWords.english) for task, family in paper_prompts.PAPER_TASKS.items()
} | paper_prompts.LABEL_VARIANTS


def load_dataset(family: str, lang: str, data_dir: str | None = None, **_: object):
    """custom_dataset hook, called as fn(**metadata, **dataset_kwargs); other keyword arguments are ignored."""
    if family in TOY_FAMILIES:
        return toy_tasks.dataset(family, lang)
    if family in _PAPER_FAMILIES:
        task, words = _PAPER_FAMILIES[family]
        return paper_prompts.dataset(task, lang, data_dir, words)
    return math_tasks.load_dataset(family, lang, data_dir)

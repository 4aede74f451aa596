"""lm-eval's built-in multilingual suites on the board: names checked against lm-eval's own task index, languages
normalised across suites, group scores and per-language groups (Global-MMLU) with their subject tasks, like with
like, published reference rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.leaderboard import BoardOptions, make_leaderboard
from mlalign_tasks.leaderboard.runs import split_task
from mlalign_tasks.leaderboard.synthetic import Item, write_run
from mlalign_tasks.tasks import suites


@pytest.mark.slow
def test_every_builtin_name_is_in_lm_evals_task_index() -> None:
    from lm_eval.tasks import TaskManager

    index = TaskManager().task_index
    for suite in suites.BUILTIN:
        names = {suite.prefix + code for code in suite.codes}
        assert not names - set(index), (suite.name, sorted(names - set(index)))
        kinds = {index[n].kind.name for n in names}
        assert kinds == {"GROUP" if suite.per_language_group else "TASK"}, (suite.name, kinds)
        if suite.group is not None:  # the group's own members are exactly the suite's languages
            assert set(index[suite.group].cfg["task"]) == names, suite.name


def test_language_normalisation() -> None:
    assert split_task("belebele_deu_Latn") == ("belebele", "de")
    assert split_task("belebele_zho_Hant") == ("belebele", "zh-Hant")
    assert split_task("belebele_arb_Latn") == ("belebele", "ar-Latn")
    assert split_task("xwinograd_jp") == ("xwinograd", "ja")
    assert split_task("paws_de") == ("pawsx", "de") and split_task("paws_aligned_de") == ("paws_aligned", "de")
    assert split_task("global_mmlu_full_fil") == ("global_mmlu_full", "fil")
    assert split_task("my_task_de") == ("my_task", "de") and split_task("arc_easy") is None
    for suite in suites.SUITES.values():
        assert len(set(suite.languages)) == len(suite.codes), suite.name  # one cell per language
        assert all(suite.task(lang) in suites.CELLS for lang in suite.languages)
    assert suites.SUITES["belebele"].task("de") == "belebele_deu_Latn"


def mc(right: int, n: int = 10, choices: int = 3) -> list[Item]:
    return [Item(0 if i < right else 1, 0) for i in range(n)]


def add_groups(path: Path, groups: dict[str, list[str]], scores: dict[str, float]) -> None:
    """Group entries as lm-eval writes them (results, groups and group_subtasks)."""
    data = json.loads(path.read_text())
    for group, children in groups.items():
        data["group_subtasks"][group] = children
        entry = {"alias": group, "acc,none": scores[group], "acc_stderr,none": 0.05}
        data["results"][group] = entry
        data.setdefault("groups", {})[group] = entry
    path.write_text(json.dumps(data))


def builtin_runs(root: Path) -> list[Path]:
    adapter = root / "adapters" / "qa"
    adapter.mkdir(parents=True)
    (adapter / "mlalign_training.json").write_text(json.dumps({"languages": ["de", "zh"]}))
    out = []
    for name, args, shift in (("base", "pretrained=org/b", 0), ("aligned", f"pretrained=org/b,peft={adapter}", 2)):
        tasks = {
            "xnli_de": mc(4 + shift), "xnli_en": mc(6 + shift), "belebele_deu_Latn": mc(3 + shift),
            "belebele_zho_Hans": mc(2 + shift), "belebele_swh_Latn": mc(5), "global_mmlu_de_stem": mc(2 + shift),
            "global_mmlu_de_humanities": mc(4 + shift), "mgsm_aligned_de": mc(1 + shift),
        }  # fmt: skip
        path = write_run(root / name, args, tasks)
        add_groups(
            path,
            {"xnli": ["xnli_de", "xnli_en"], "global_mmlu_de": ["global_mmlu_de_stem", "global_mmlu_de_humanities"]},
            {"xnli": (10 + 2 * shift) / 20, "global_mmlu_de": (6 + 2 * shift) / 20},
        )
        out.append(root / name)
    return out


def test_builtin_suites_on_one_board(tmp_path: Path) -> None:
    paths = builtin_runs(tmp_path)
    board = make_leaderboard(paths, tmp_path / "board")
    assert board.families == ["mgsm_aligned", "xnli", "belebele", "global_mmlu"]
    assert board.languages == ["en", "zh", "de", "sw"]
    with (tmp_path / "board" / "results.csv").open() as f:
        rows = {(r["model"], r["task"]): r for r in csv.DictReader(f)}
    inputs = {m: json.loads(next((tmp_path / d).rglob("results_*.json")).read_text())["results"] for m, d in
              (("b", "base"), ("qa", "aligned"))}  # fmt: skip
    assert len(rows) == 2 * (8 + 2)  # every task and group lm-eval reported
    for (model, task), r in rows.items():  # each number traced back to its input file
        assert float(r["value"]) == inputs[model][task][r["metric"]]
    assert (
        rows[("qa", "belebele_zho_Hans")]["language"] == "zh" and rows[("qa", "belebele_zho_Hans")]["split"] == "seen"
    )
    assert rows[("qa", "belebele_swh_Latn")]["split"] == "unseen"
    assert rows[("qa", "xnli")]["level"] == "group" and rows[("qa", "xnli")]["language"] == ""
    assert rows[("qa", "global_mmlu_de")]["level"] == "language" and rows[("qa", "global_mmlu_de")]["n"] == "20"
    assert rows[("qa", "global_mmlu_de_stem")]["level"] == "subtask"
    assert rows[("qa", "global_mmlu_de_stem")]["family"] == "global_mmlu"
    comps = {(c["family"], c["language"]): c for c in board.comparisons}
    # the per-language group's paired test reads both subject tasks' samples: 4 items gained of 20
    assert comps[("global_mmlu", "de")]["n_paired"] == 20 and comps[("global_mmlu", "de")]["only_aligned"] == 4
    assert comps[("belebele", "sw")]["delta_pp"] == 0.0
    readme = (tmp_path / "board" / "README.md").read_text()
    assert "## lm-eval group scores" in readme and "| xnli | acc,none | 50.0 ± 5.0 | 70.0 ± 5.0 |" in readme
    embedded = sorted(p.name for p in (tmp_path / "board" / "inputs" / "qa").iterdir())
    assert len(embedded) == 9 and len(set(embedded)) == 9  # results + 8 samples files, each copied once


def test_unlike_runs_are_refused_unless_allowed(tmp_path: Path) -> None:
    paths = builtin_runs(tmp_path)
    for run in paths:  # MGSM is a generation task in both runs, scored by the same extraction
        path = next(run.rglob("results_*.json"))
        data = json.loads(path.read_text())
        data["configs"]["mgsm_aligned_de"]["output_type"] = "generate_until"
        path.write_text(json.dumps(data))
    data["n-shot"]["xnli_de"] = 5
    data["configs"]["mgsm_aligned_de"]["generation_kwargs"] = {"max_gen_toks": 16}
    path.write_text(json.dumps(data))
    with pytest.raises(MlalignError, match=r"xnli_de was evaluated with different few-shot examples \(b: 0; qa: 5\); "
                       r"evaluate every model with the same --num-fewshot, or pass --allow-mismatch"):  # fmt: skip
        make_leaderboard(paths, tmp_path / "board")
    assert not (tmp_path / "board").exists()
    board = make_leaderboard(paths, tmp_path / "board", options=BoardOptions(allow_mismatch=True))
    readme = (tmp_path / "board" / "README.md").read_text()
    notes = readme.split("## Notes\n\n")[1].splitlines()
    assert notes[:2] == [
        "- NOT LIKE WITH LIKE: xnli_de: different few-shot examples (b: 0; qa: 5)",
        "- NOT LIKE WITH LIKE: mgsm_aligned_de: different generation settings (b: task default; qa: max_gen_toks=16)",
    ]
    assert sum(n.startswith("NOT LIKE WITH LIKE") for n in board.notes) == 2
    assert "--allow-mismatch" in readme  # the regenerate command keeps the flag
    settings = {
        (r["model"], r["family"]): r for r in json.loads((tmp_path / "board" / "results.json").read_text())["settings"]
    }
    assert settings[("qa", "xnli")]["shots"] == "0 | 5" and settings[("b", "xnli")]["shots"] == "0"
    assert settings[("qa", "mgsm_aligned")]["generation"] == "max_gen_toks=16"
    page = (tmp_path / "board" / "index.html").read_text()
    assert '<li class="mismatch">NOT LIKE WITH LIKE: xnli_de' in page


QALIGN = "https://github.com/NJUNLP/QAlign"
QALIGN_LANGS = ["bn", "th", "sw", "ja", "zh", "de", "fr", "ru", "es", "en"]


def test_published_reference_rows(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    tasks = {f"qalign_mgsm_{lang}": [Item("1" if i < 5 else "2", "1") for i in range(10)] for lang in QALIGN_LANGS}
    write_run(runs, "pretrained=org/m", tasks, generative=set(tasks), gen_filter="qalign")
    references = [
        {"model": "QAlign-7B", "benchmark": "qalign_mgsm", "languages": QALIGN_LANGS, "value": 49.6, "source": QALIGN},
        {
            "model": "MetaMath-7B",
            "benchmark": "qalign_mgsm",
            "languages": QALIGN_LANGS,
            "value": 38.4,
            "source": QALIGN,
        },
        {
            "model": "QAlign-7B",
            "benchmark": "qalign_msvamp",
            "languages": QALIGN_LANGS,
            "value": 57.2,
            "source": QALIGN,
        },
    ]
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"references": references}))
    board = make_leaderboard([runs], tmp_path / "board", manifest)
    readme = (tmp_path / "board" / "README.md").read_text()
    assert f"| qalign_mgsm | {', '.join(QALIGN_LANGS)} | m | 50.0 | this board |" in readme
    assert f"| qalign_mgsm | {', '.join(QALIGN_LANGS)} | **† QAlign-7B** (published) | 49.6 | {QALIGN} |" in readme
    assert "MetaMath-7B** (published) | 38.4" in readme and "57.2" in readme
    # never in the statistics: averages and comparisons hold the board's own model only
    assert {a["model"] for a in board.averages} == {"m"} and board.comparisons == []
    data = json.loads((tmp_path / "board" / "results.json").read_text())
    assert [r["value"] for r in data["references"]] == [0.496, 0.384, 0.572]
    page = (tmp_path / "board" / "index.html").read_text()
    assert page.count('<tr class="reference">') == 2 * 2 + 1  # top table and the family's table
    manifest.write_text(yaml.safe_dump({"references": [{**references[0], "value": 149.6}]}))
    with pytest.raises(MlalignError, match=r"references\[0\].value must be a percentage between 0 and 100"):
        make_leaderboard([runs], tmp_path / "b2", manifest)
    manifest.write_text(yaml.safe_dump({"references": [{**references[0], "source": "the paper"}]}))
    with pytest.raises(MlalignError, match="source must be the http"):
        make_leaderboard([runs], tmp_path / "b2", manifest)


def test_a_vllm_run_names_its_adapter_by_lora_local_path(tmp_path: Path) -> None:
    """lm-eval's vLLM backend takes the adapter as `lora_local_path` (README: Faster evaluation): the board pairs
    that run with its base model as it pairs `peft=`."""
    tasks = {"mgsm_aligned_de": [Item("1" if i < 3 else "2", "1") for i in range(10)]}
    write_run(tmp_path / "base", "pretrained=org/b", tasks, generative=set(tasks))
    tasks = {"mgsm_aligned_de": [Item("1" if i < 6 else "2", "1") for i in range(10)]}
    write_run(tmp_path / "lora", "pretrained=org/b,lora_local_path=adapters/qa,max_lora_rank=16", tasks,
              generative=set(tasks))  # fmt: skip
    board = make_leaderboard([tmp_path / "base", tmp_path / "lora"], tmp_path / "board")
    assert [(m.name, m.adapter, m.base) for m in board.models] == [("b", None, None), ("qa", "adapters/qa", "org/b")]
    (comparison,) = board.comparisons
    assert (comparison["base"], comparison["aligned"], round(comparison["delta_pp"], 6)) == ("b", "qa", 30.0)


def _limit(data: dict) -> None:
    data["n-samples"]["xnli_de"] = {"original": 5010, "effective": 10}


def _chat_template(data: dict) -> None:
    data["chat_template_sha"] = "3f1c"


def _paper_scoring(data: dict) -> None:
    data["configs"]["xnli_de"].setdefault("metadata", {})["label_scoring"] = "paper"


def _task_hash(data: dict) -> None:
    data["task_hashes"] = {"xnli_de": "other"}


@pytest.mark.parametrize(
    ("change", "what", "cells"),
    [
        (_limit, r"items \(evaluated of available\) \(b: 10 of 10; qa: 10 of 5010\); evaluate every model with the "
                 r"same --limit", 1),
        (_chat_template, r"prompts or template \(task config, chat template, system instruction\) \(b: \w{12}; qa: "
                         r"\w{12}\); evaluate every model with the same tasks and template", 7),
        (_paper_scoring, r"label scorings \(b: label; qa: paper\); evaluate every model with the same `mlalign eval "
                         r"--label-scoring`", 1),
        (_task_hash, r"evaluated prompts and items \(lm-eval's task hash\) \(b: \w+; qa: \w+\)", 1),
    ],
)  # fmt: skip
def test_each_setting_that_differs_is_refused(tmp_path: Path, change, what: str, cells: int) -> None:
    """Items, prompts/template, scoring and lm-eval's task hash (shots, generation and precision: above and in
    test_leaderboard.py): refused by default, a note first with --allow-mismatch."""
    paths = builtin_runs(tmp_path)
    for run in paths:
        path = next(run.rglob("results_*.json"))
        data = json.loads(path.read_text())
        data["task_hashes"] = {"xnli_de": "same"}
        if run == paths[1]:  # the aligned model's run
            change(data)
        path.write_text(json.dumps(data))
    with pytest.raises(MlalignError, match=f"^xnli_de was evaluated with different {what}"):
        make_leaderboard(paths, tmp_path / "board")
    board = make_leaderboard(paths, tmp_path / "board", options=BoardOptions(allow_mismatch=True))
    # one note per cell the difference touches (a chat template: every task of the run)
    assert len([n for n in board.notes if n.startswith("NOT LIKE WITH LIKE: ")]) == cells


def test_a_familys_per_task_hashes_show_as_one_digest() -> None:
    """The settings table names one digest per family, not 20 hashes: equal exactly when every task's hash is."""
    from mlalign_tasks.leaderboard.likeness import _joined

    hashes = {f"{i:012x}" for i in range(20)}
    shown = _joined("task_hash", hashes)
    assert shown.startswith("20 hashes, digest ") and len(shown) == len("20 hashes, digest ") + 12
    assert _joined("task_hash", set(sorted(hashes))) == shown
    assert _joined("task_hash", (hashes - {f"{0:012x}"}) | {"f" * 12}) != shown
    assert _joined("prompt", {"abc"}) == "abc" and _joined("shots", {"0", "5"}) == "0 | 5"

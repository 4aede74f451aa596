"""The toy world: lexicons, translation, parallel tasks in the real formats, corpus and training data kept apart."""

from __future__ import annotations

import random

import pytest

from mlalign_tasks.errors import MlalignError
from mlalign_tasks.tasks import toy_tasks
from mlalign_tasks.tasks.languages import FAMILIES, LANGUAGES, TOY_LANGUAGES, UnknownLanguageError
from mlalign_tasks.tasks.toy_world import (
    DIGITS,
    FAMILY_SOUNDS,
    NEGATIVE,
    POSITIVE,
    SCRIPTS,
    WORDS,
    World,
    review,
    word_problem,
)

WORLD = toy_tasks.DEFAULT_WORLD


def test_language_table_is_complete_and_local_use_coded():
    for code, lang in TOY_LANGUAGES.items():
        assert "qaa" <= code <= "qtz" and LANGUAGES[code] is lang  # ISO 639-2 local-use range, in the one table
        assert lang.script in SCRIPTS and lang.digits in DIGITS and lang.family in FAMILY_SOUNDS
    assert FAMILIES["toy_sentiment_aligned"] == FAMILIES["toy_math_aligned"] == ("en", *TOY_LANGUAGES)


def test_lexicons_are_deterministic_distinct_and_share_words_within_a_family_only():
    again = World(seed=WORLD.seed, overlap=WORLD.overlap).lexicons
    assert again == WORLD.lexicons
    for lexicon in again.values():
        assert set(lexicon) == set(WORDS) and len(set(lexicon.values())) == len(WORDS)
        assert not set(lexicon.values()) & set(WORDS)
    shared = {
        (a, b): sum(WORLD.lexicons[a][w] == WORLD.lexicons[b][w] for w in WORDS) / len(WORDS)
        for a in TOY_LANGUAGES
        for b in TOY_LANGUAGES
        if a < b
    }
    for (a, b), share in shared.items():
        if TOY_LANGUAGES[a].family == TOY_LANGUAGES[b].family:
            assert 0.1 < share < 0.45, (a, b, share)  # both take the family's word: about overlap² = 0.25
        else:
            assert share == 0, (a, b)
    assert World(overlap=0.0).lexicons["qaa"]["good"] != World(overlap=0.0).lexicons["qac"]["good"]
    assert World(overlap=1.0).lexicons["qaa"] == World(overlap=1.0).lexicons["qac"]
    with pytest.raises(MlalignError, match="overlap 1.5"):
        World(overlap=1.5)


def test_translation_maps_words_digits_names_and_order():
    text = "tom has 7 coins . how many coins does tom have now ?"
    assert WORLD.translate(text, "en") == text
    latin = WORLD.translate(text, "qaa").split()
    assert latin[0] == "tom" and latin[2] == "7" and len(latin) == len(text.split())
    assert WORLD.translate(text, "qab").split()[2] == "७"  # Devanagari digits
    cyrillic = WORLD.translate(text, "qbb").split()
    assert cyrillic[0] == "том" and cyrillic[2] == "٧"
    reversed_words = WORLD.translate(text, "qca").split()
    assert reversed_words[:4] == [WORLD.word(w, "qca") for w in ("coins",)] + ["7", WORLD.word("has", "qca"), "τομ"]
    assert reversed_words[4] == "."  # each sentence reversed, its end kept last
    assert WORLD.translate(text, "qaa", keep=frozenset({"coins"})).split()[3] == "coins"
    with pytest.raises(UnknownLanguageError, match="unknown toy language code 'de'"):
        WORLD.translate(text, "de")


def test_sentiment_items_are_parallel_in_the_paper_format():
    en = toy_tasks.sentiment_items("en")
    assert len(en) == toy_tasks.SENTIMENT_ITEMS and len({it["prompt"] for it in en}) == len(en)
    assert {it["label"] for it in en} == {0, 1} and 0.4 < sum(it["label"] for it in en) / len(en) < 0.6
    first = en[0]["prompt"].split("\n")
    assert first[1] == 'Emotion: "positive"' and first[3] == 'Emotion: "negative"' and first[-1] == 'Emotion: "'
    for code in TOY_LANGUAGES:
        items = toy_tasks.sentiment_items(code)
        assert [it["label"] for it in items] == [it["label"] for it in en]  # gold from English by index
        lines = items[3]["prompt"].split("\n")
        assert lines[1] == 'Emotion: "positive"' and lines[-1] == 'Emotion: "'  # English labels after X
        assert lines[-2] == WORLD.translate(en[3]["prompt"].split("\n")[-2], code)


def test_math_items_are_parallel_with_english_solutions():
    en, shots = toy_tasks.math_items("en")
    qcb, qcb_shots = toy_tasks.math_items("qcb")
    assert len(en) == toy_tasks.MATH_ITEMS and len(shots) == toy_tasks.MATH_FEWSHOT
    assert [r["answer"] for r in qcb] == [r["answer"] for r in en]
    assert qcb[0]["question"] == WORLD.translate(en[0]["question"], "qcb")
    assert qcb_shots[0]["solution"] == shots[0]["solution"] and shots[0]["solution"].endswith(
        f"the answer is {shots[0]['answer']} ."
    )


def test_held_out_items_are_not_in_the_question_pool():
    held = toy_tasks.held_out()
    pool = toy_tasks.questions()
    assert len(pool) == len(set(pool)) == toy_tasks.QUESTION_POOL and not held & set(pool)
    kinds = {"review": sum("how many" not in q for q in pool), "problem": sum("how many" in q for q in pool)}
    assert kinds["review"] == kinds["problem"]


def test_answered_items_are_both_tasks_in_their_formats_outside_the_held_out_items():
    """The `toy` response source draws from both tasks' answered items, `toy_math` from the word problems alone."""
    from mlalign_trainer import response_data

    pool = toy_tasks.answered()
    assert len(pool) == len(dict(pool)) == toy_tasks.ANSWERED_POOL
    held = toy_tasks.held_out()
    reviews = [(p.removesuffix('\nEmotion: "'), c) for p, c in pool if p.endswith('\nEmotion: "')]
    problems = [(p, c) for p, c in pool if p.startswith(toy_tasks.MATH_PROMPT.split("{")[0])]
    assert len(reviews) == len(problems) == len(pool) // 2
    for text, completion in reviews:  # the test prompt's last lines, then the label word the scoring compares
        label = toy_tasks.LABELS.index(completion.removesuffix('"'))
        assert text not in held and set(text.split()) & set((POSITIVE, NEGATIVE)[label])
    for prompt, completion in problems:  # MGSM's prompt, one space, the worked solution (as the corpus has them)
        question = prompt.split("### Instruction:\n")[1].split("\n\n")[0]
        assert prompt == toy_tasks.math_prompt(question) and question not in held
        assert completion.startswith(" " + question.split(" how many")[0]) and " the answer is " in completion
    build = response_data.build_response_dataset("toy", 10, seed=0, fmt="plain")
    assert build.languages == ["en"] and {(r["prompt"], r["completion"]) for r in build.dataset} <= set(pool)
    math = response_data.build_response_dataset("toy_math", len(problems), seed=0, fmt="plain")  # word problems only
    assert {(r["prompt"], r["completion"]) for r in math.dataset} == set(problems)
    with pytest.raises(MlalignError, match="toy items carry their tasks' own prompts.*--prompt_format plain"):
        response_data.build_response_dataset("toy", 10, fmt="qalign")


def test_generators_are_consistent():
    rng = random.Random(0)
    for _ in range(200):
        text, label = review(rng)
        words = set(text.split())
        assert words & set((POSITIVE, NEGATIVE)[label]) and not words & set((POSITIVE, NEGATIVE)[1 - label])
        question, solution, answer = word_problem(rng)
        assert solution.startswith(question.split(" how many")[0]) and solution.endswith(f"is {answer} .")
        assert answer == eval(solution.split(" so ")[1].split(" = ")[0].split(" has ")[1])  # a + b or a - b


def test_lm_eval_renders_the_toy_prompts():
    from lm_eval.tasks import TaskManager

    from mlalign_tasks.pipeline.evaluate import tasks_dir

    loaded = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(["toy_aligned"])
    sentiment = loaded["tasks"]["toy_sentiment_aligned_qba"]
    doc = sentiment.test_docs()[5]
    assert sentiment.fewshot_context(doc, 0) == toy_tasks.sentiment_items("qba")[5]["prompt"]
    assert sentiment.doc_to_choice(doc) == ["positive", "negative"]
    math = loaded["tasks"]["toy_math_aligned_qab"]
    doc = math.test_docs()[2]
    question = toy_tasks.math_items("qab")[0][2]["question"]
    assert math.fewshot_context(doc, 0) == toy_tasks.math_prompt(question)
    assert "toy_aligned" in loaded["groups"]


def test_cognates_are_english_words_shared_by_a_family_in_its_script():
    world = World(cognates=0.5)
    for code, lang in TOY_LANGUAGES.items():
        lexicon = world.lexicons[code]
        letters = SCRIPTS[lang.script]
        cognates = {w for w in WORDS if lexicon[w] == "".join(letters.get(c, c) for c in w)}
        assert 0.1 < len(cognates) / len(WORDS) < 0.5, code  # about overlap x cognates of its words
        assert not any(lexicon[w] == w for w in WORDS) or lang.script == "latin"  # other scripts transliterate
    assert all(lexicon[w] != w for w in WORDS for lexicon in WORLD.lexicons.values())  # the default: none


def test_paper_label_scoring_applies_to_the_toy_reviews(tmp_path):
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    from mlalign_tasks.models.tiny_model import build_tiny_model
    from mlalign_tasks.pipeline.evaluate import tasks_dir
    from mlalign_tasks.tasks.label_scoring import Scoring, apply_scoring

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "tiny"))
    loaded = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(["toy_sentiment_aligned_qaa"])
    sets = apply_scoring(loaded["tasks"], tokenizer, Scoring.paper, seed=0)
    positive, negative = sets["toy_sentiment_aligned_qaa"].labels.values()
    assert positive and negative and not set(positive) & set(negative)


def test_toy_world_recipe_trains_on_toy_questions(tmp_path):
    from mlalign_trainer import sft

    qt, args, model_args = sft.parse_args(["--config", "toy-world", "--output_dir", str(tmp_path)])
    assert (qt.qt_source, qt.languages, model_args.model_name_or_path) == ("toy", "qaa,qab", "./toy-model")
    assert model_args.use_peft and not model_args.load_in_4bit and args.use_cpu
    assert (qt.prompt_format, model_args.lora_target_modules) == ("qalign", "model.embed_tokens")  # the embeddings


def test_toy_world_qalign_recipe_is_toy_world_then_a_new_adapter_on_its_merge(tmp_path):
    from mlalign_trainer import recipes, sft

    def parse(*argv):
        return sft.parse_args([*argv, "--output_dir", str(tmp_path)])

    def flags(name: str, stage: str) -> dict:
        path = recipes.recipe_path(name)
        values = recipes.stage_flags(recipes.read_recipe(path), stage, path)
        return {k: v for k, v in values.items() if k not in ("stage", "output_dir")}

    assert flags("toy-world-qalign", "question") == flags("toy-world", "question")  # stage I is toy-world's
    qt, args, model_args = parse("--config", "toy-world-qalign", "--stage", "response")
    assert (qt.stage, qt.response_source, qt.prompt_format, qt.init_from, qt.merge_init_from) == (
        "response", "toy", "plain", "runs/toy-world-qalign/question", True,
    )  # fmt: skip
    linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert model_args.lora_target_modules == ["model.embed_tokens", *linear]  # a new adapter on stage I merged
    assert (args.max_steps, qt.examples_per_language, args.learning_rate, args.lr_scheduler_type) == (
        200, 3200, 1e-3, "linear",
    )  # fmt: skip
    _, _, question = parse("--config", "toy-world-qalign", "--stage", "question")
    assert question.lora_target_modules == "model.embed_tokens"


def test_the_packaged_toy_model_installs_as_built(tmp_path):
    """The shipped weights are the default build's in bfloat16; a run gets them back in float32, loadable."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from mlalign_tasks.models import toy_model

    record = toy_model.packaged_record()
    assert record["config"] == toy_model.ToyModelConfig().as_dict()  # built with today's defaults
    out = toy_model.install(tmp_path / "model")
    stored = toy_model.packaged_weights()
    installed = load_file(out / toy_model.WEIGHTS)
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    assert all(installed[k].dtype == torch.float32 and torch.equal(installed[k], stored[k].float()) for k in stored)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == 1_377_408 and toy_model.read_marker(out) is not None


def test_toy_model_command_writes_the_packaged_model(tmp_path):
    from typer.testing import CliRunner

    from mlalign_tasks.cli import app
    from mlalign_tasks.models import toy_model

    out = tmp_path / "toy"
    for _ in range(2):  # a folder it wrote earlier is rewritten
        result = CliRunner().invoke(app, ["toy-model", "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert toy_model.read_marker(out)["config"] == toy_model.ToyModelConfig().as_dict()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    result = CliRunner().invoke(app, ["toy-model", "--out", str(tmp_path / "mine")])
    assert result.exit_code != 0 and "refusing to replace it" in str(result.exception)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("attack", ["tampered", "bomb", "truncated", "garbage"])
def test_packaged_toy_model_is_checked_before_install(tmp_path, monkeypatch, attack):
    """Weights that differ from their recorded sha256, expand past their recorded size (an xz bomb: 64 MiB of
    zeros, cut at the recorded size), are cut short or are not xz are refused with one line; nothing is written."""
    import lzma
    import shutil

    from typer.testing import CliRunner

    from mlalign_tasks.cli import app
    from mlalign_tasks.models import toy_model

    packaged = tmp_path / "packaged"
    shutil.copytree(toy_model._packaged(), packaged)
    packed = packaged / toy_model.PACKED_WEIGHTS
    stored = lzma.decompress(packed.read_bytes())
    if attack == "tampered":  # one weight byte changed, the size kept
        changed = stored[:-1] + bytes([stored[-1] ^ 1])
        packed.write_bytes(lzma.compress(changed, format=lzma.FORMAT_XZ))
    elif attack == "bomb":
        bomb = lzma.LZMACompressor(format=lzma.FORMAT_XZ)
        chunk = bytes(1 << 24)
        packed.write_bytes(b"".join(bomb.compress(chunk) for _ in range(4)) + bomb.flush())
    elif attack == "truncated":
        packed.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    else:
        packed.write_bytes(b"not an xz archive")
    monkeypatch.setattr(toy_model, "_packaged", lambda: packaged)
    expected = {
        "tampered": "do not match their recorded sha256",
        "bomb": "expand beyond their recorded",
        "truncated": "are cut short of their recorded",
        "garbage": "cannot read the packaged toy model's weights",
    }[attack]
    with pytest.raises(MlalignError, match=expected) as caught:
        toy_model.install(tmp_path / "direct")
    assert "\n" not in str(caught.value) and not (tmp_path / "direct").exists()
    result = CliRunner().invoke(app, ["toy-model", "--out", str(tmp_path / "toy")])
    assert isinstance(result.exception, MlalignError) and expected in str(result.exception)
    assert not (tmp_path / "toy").exists()


def test_packaging_the_installed_model_gives_the_packaged_files_byte_for_byte(tmp_path):
    """`package` (what `scripts/build_toy_model.py` and its --check run) records the weights' size and sha256 in the
    marker as the packaged one does: the installed model packaged again is the packaged folder, file for file."""
    import hashlib

    from mlalign_tasks.models import toy_model

    installed = toy_model.install(tmp_path / "model")
    toy_model.package(installed, tmp_path / "packaged")
    shipped = toy_model._packaged()
    names = sorted(p.name for p in shipped.iterdir())
    assert sorted(p.name for p in (tmp_path / "packaged").iterdir()) == names
    for name in names:
        assert hashlib.sha256((tmp_path / "packaged" / name).read_bytes()).digest() == (
            hashlib.sha256((shipped / name).read_bytes()).digest()
        ), name
    again = toy_model.write_packaged(tmp_path / "again", tmp_path / "packaged")  # a build's folder, as shipped
    assert (again / toy_model.WEIGHTS).read_bytes() == (installed / toy_model.WEIGHTS).read_bytes()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seed", "3"], "--seed 3: the package ships seed 0; give --out DIR to build another seed"),
        (["--check", "--out", "m"], "--check compares with the package and --out writes elsewhere: give one of them"),
        (["--seed", "3", "--out", "."], "a model directory written by `mlalign toy-model`"),  # before the build
    ],
)
def test_build_script_refuses_in_one_line_before_building(tmp_path, args, expected):
    """`scripts/build_toy_model.py` builds other pretraining seeds into a folder only (the package keeps seed 0), and
    refuses a folder it may not replace before the build."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_toy_model.py"
    (tmp_path / "notes.txt").write_text("kept")
    done = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") <= 2, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]

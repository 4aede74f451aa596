"""Logit lens and PCA on the tiny model: exact equalities, library cross-checks, determinism, bad input."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlalign_tasks.analysis import paper_items
from mlalign_tasks.analysis.hidden_states import load_model, parse_layers, run_batches
from mlalign_tasks.analysis.logit_lens import LogitLens, final_norm, first_token_ids, run_logit_lens
from mlalign_tasks.analysis.paper_lens import kept_items, mean_ci
from mlalign_tasks.analysis.pca import mean_pooled, parse_pairs, pc1_correlations, pca_2d, run_pca
from mlalign_tasks.analysis.protocols import LensProtocol, Pooling
from mlalign_tasks.errors import MlalignError
from mlalign_tasks.models.model_loading import ModelSpec, Nf4Preset

TOL = 1e-5
ENOUT = LensProtocol.english_output


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path):
    return load_model(ModelSpec(str(tiny_model_dir), device="cpu"))


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random (non-identity) LoRA adapter on the tiny model, standing in for a trained one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter") / "lora"
    get_peft_model(base, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Paper prompts of different lengths (so batches are left padded)."""
    _, items = paper_items.prompts("snli", ["en", "sw", "zh"], limit=2, seed=0)
    return [it["prompt"] for lang_items in items.values() for it in lang_items]


def lens_probs(lm, prompts: list[str], batch_size: int) -> torch.Tensor:
    """Lens distributions [N, L+1, V] through the production path (one forward per batch, left padding)."""
    lens = LogitLens(lm.model)
    with lens.capturing():
        out = run_batches(lm, prompts, lambda b: {"p": lens.logits(b).softmax(-1).transpose(0, 1)}, batch_size)
    return out["p"]


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run `mlalign ARGS` in-process; returns (exit code, stderr)."""
    from mlalign_tasks import cli

    monkeypatch.setattr(sys, "argv", ["mlalign", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return int(exc.value.code or 0), capsys.readouterr().err


def test_last_layer_equals_model_next_token_distribution(lm, prompts):
    probs = lens_probs(lm, prompts, batch_size=4)
    assert probs.shape == (len(prompts), lm.num_layers + 1, lm.model.config.vocab_size)
    for i, prompt in enumerate(prompts):  # each prompt alone, no padding, the model's own head
        enc = lm.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            own = lm.model(**enc).logits[0, -1].softmax(-1)
        assert torch.allclose(probs[i, -1], own, atol=TOL, rtol=0), (i, (probs[i, -1] - own).abs().max())


def test_inner_layers_equal_manual_norm_and_unembed(lm, prompts):
    probs = lens_probs(lm, prompts, batch_size=3)
    norm, head = lm.model.model.norm, lm.model.lm_head
    for i, prompt in enumerate(prompts):
        enc = lm.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            hidden = lm.model(**enc, output_hidden_states=True).hidden_states
            for layer in range(lm.num_layers):
                h = hidden[layer][0, -1]
                normed = h * torch.rsqrt(h.pow(2).mean() + norm.variance_epsilon) * norm.weight
                manual = (head.weight @ normed).softmax(-1)
                assert torch.allclose(probs[i, layer], manual, atol=TOL, rtol=0), (i, layer)
    # the inner layers are genuinely different distributions from the last one
    assert (probs[:, 1] - probs[:, -1]).abs().max() > 1e-4


def test_label_first_tokens_are_word_prefixes_in_context(lm, prompts):
    words = ["entailment", "neutral", "contradiction", ""]
    ids = first_token_ids(lm.tokenizer, prompts[0], words)
    assert ids[-1] is None
    for word, tok in zip(words[:-1], ids[:-1], strict=True):
        piece = lm.tokenizer.decode([tok])
        assert piece and word.startswith(piece), (word, piece)


def test_mean_pooling_equals_manual_means_with_and_without_bos(lm, prompts):
    texts = [p[-80:] for p in prompts]
    layers = [0, 2, lm.num_layers]
    everything = mean_pooled(lm, texts, layers, batch_size=4, pooling=Pooling.all)
    content = mean_pooled(lm, texts, layers, batch_size=4, pooling=Pooling.content)
    for i, text in enumerate(texts):
        enc = lm.tokenizer(text, return_tensors="pt")
        assert enc["input_ids"][0, 0] == lm.tokenizer.bos_token_id
        with torch.no_grad():
            hidden = lm.model(**enc, output_hidden_states=True).hidden_states
        for j, layer in enumerate(layers):
            assert torch.allclose(everything[i, j], hidden[layer][0].mean(0), atol=TOL), (i, layer)  # BOS included
            assert torch.allclose(content[i, j], hidden[layer][0, 1:].mean(0), atol=TOL), (i, layer)  # BOS left out


def test_pca_matches_scikit_learn():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(40, 12)) @ np.diag(np.linspace(3, 0.1, 12))
    scores, components, ratio = pca_2d(x)
    ref = PCA(n_components=2, svd_solver="full").fit(x)
    np.testing.assert_allclose(scores, ref.transform(x), atol=1e-10)
    np.testing.assert_allclose(components, ref.components_, atol=1e-10)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, atol=1e-12)


def test_pc1_correlation_matches_scipy():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(1)
    en = rng.normal(size=25)
    pc1 = {"en": en, "de": en + rng.normal(scale=0.5, size=25), "sw": rng.normal(size=25), "ja": np.ones(25)}
    r = pc1_correlations(pc1, [("en", "de"), ("de", "sw"), ("en", "ja")])
    assert set(r) == {"en-de", "de-sw", "en-ja"}
    assert r["en-de"] == pytest.approx(pearsonr(en, pc1["de"]).statistic, abs=1e-12)
    assert r["de-sw"] == pytest.approx(pearsonr(pc1["de"], pc1["sw"]).statistic, abs=1e-12)
    assert r["en-ja"] is None  # constant: correlation undefined


def test_pairs_default_to_the_papers_nine():
    seven = ["en", "de", "fr", "hi", "th", "sw", "ms"]
    assert [f"{a}-{b}" for a, b in parse_pairs(None, seven)] == [
        "en-de", "en-fr", "en-hi", "de-fr", "de-hi", "fr-hi", "en-th", "en-sw", "en-ms"
    ]  # fmt: skip
    assert parse_pairs(None, ["en", "de", "sw"]) == [("en", "de"), ("en", "sw")]
    assert parse_pairs(None, ["en", "ja", "zh"]) == [("en", "ja"), ("en", "zh")]  # no paper pair: English with each
    assert parse_pairs("ja-zh, en-ja", ["en", "ja", "zh"]) == [("ja", "zh"), ("en", "ja")]
    for bad in ("en-xx", "en", "en-en", ","):
        with pytest.raises(MlalignError, match="--pairs"):
            parse_pairs(bad, ["en", "ja"])


def test_logit_lens_cli_base_and_aligned(tiny_model_dir, adapter_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "lens"
    args = ["analyze", "logit-lens", "--model", str(tiny_model_dir), "--peft", str(adapter_dir), "--task", "snli"]
    args += ["--protocol", "english-output"]
    code, err = run_cli(
        [*args, "--langs", "en,sw", "--limit", "3", "--out", str(out), "--device", "cpu"], monkeypatch, capsys
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "logit_lens.json", "logit_lens_curves.png", "logit_lens_curves.svg",
        "logit_lens_entropy.png", "logit_lens_entropy.svg",
    ]  # fmt: skip
    result = json.loads((out / "logit_lens.json").read_text())
    assert result["langs"] == ["en", "sw"] and len(result["items"]) == 3
    assert re.search(r"logit lens: 12/12 prompts, in 0:\d\d:\d\d", err)  # 2 languages x 3 items x 2 variants
    assert set(result["variants"]) == {"base", "aligned"}
    vocab = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    for by_lang in result["variants"].values():
        for stats in by_lang.values():
            assert stats["last_layer_max_prob_diff"] < TOL
            assert len(stats["english_prob"]) == len(stats["entropy"]) == result["num_layers"] + 1
            assert all(0 < p < 1 for p in stats["english_prob"] + stats["native_prob"])
            assert all(0 < h <= np.log(vocab) + 1e-4 for h in stats["entropy"])
            assert len(stats["top_tokens"][0]) == 5
    base, aligned = result["variants"]["base"]["sw"], result["variants"]["aligned"]["sw"]
    assert base["english_prob"][0] == pytest.approx(aligned["english_prob"][0])  # embeddings: no LoRA there
    assert abs(base["entropy"][-1] - aligned["entropy"][-1]) > 1e-4  # the adapter changes the later layers


def test_logit_lens_without_native_labels_reports_null(tiny_model_dir, tmp_path):
    result = run_logit_lens(
        ModelSpec(str(tiny_model_dir), device="cpu"), "paws", "de,en", tmp_path / "paws", limit=2, protocol=ENOUT
    )
    assert result["variants"]["base"]["de"]["native_prob"] is None  # PAWS has no German label words
    assert result["variants"]["base"]["en"]["native_prob"] == result["variants"]["base"]["en"]["english_prob"]


def test_pca_base_and_aligned_consistent_and_deterministic(tiny_model_dir, adapter_dir, tmp_path):
    from scipy.stats import pearsonr

    spec = ModelSpec(str(tiny_model_dir), adapter_dir, device="cpu")
    kwargs = {"layers": "1,-1", "limit": 6, "batch_size": 4}
    result = run_pca(spec, "de,sw", tmp_path / "a", seed=3, **kwargs)
    assert result["langs"] == ["en", "de", "sw"] and result["layers"] == [1, 4]
    assert (result["input"], result["pooling"], result["pairs"]) == ("prompt", "all", ["en-de", "en-sw"])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["pca.json", "pca.png", "pca.svg"]
    for variant in ("base", "aligned"):
        for entry in result["variants"][variant]["layers"].values():
            points = {lang: np.array(p) for lang, p in entry["points"].items()}
            assert all(p.shape == (6, 2) for p in points.values())
            assert entry["explained_variance_ratio"][0] >= entry["explained_variance_ratio"][1] > 0
            for lang in ("de", "sw"):
                r = pearsonr(points["en"][:, 0], points[lang][:, 0]).statistic
                assert entry["pc1_correlation"][f"en-{lang}"] == pytest.approx(r, abs=1e-5)
    base_pts = result["variants"]["base"]["layers"]["4"]["points"]["sw"]
    assert not np.allclose(base_pts, result["variants"]["aligned"]["layers"]["4"]["points"]["sw"])
    again = run_pca(spec, "de,sw", tmp_path / "b", seed=3, **kwargs)
    assert (tmp_path / "a" / "pca.json").read_bytes() == (tmp_path / "b" / "pca.json").read_bytes()
    assert again == result
    assert paper_items.sentences("snli", ["en"], limit=6, seed=4)[0] != result["items"]  # the seed picks the items


def test_paper_pca_points_are_native_label_prompts_pooled_over_all_tokens(lm, tiny_model_dir, tmp_path):
    from mlalign_tasks.tasks import paper_prompts

    result = run_pca(
        ModelSpec(str(tiny_model_dir), device="cpu"), "de", tmp_path / "pca", layers="2", limit=3, pairs="de-en"
    )
    _, items = paper_items.prompts("sentiment", ["en", "de"], 3, 0, words=paper_prompts.LabelWords.native)
    assert result["items"] == [it["idx"] for it in items["de"]] and 'Emotion: "positiv"' in items["de"][0]["prompt"]
    rows = []
    for lang in ("en", "de"):
        for item in items[lang]:  # the notebook: tokenizer(prompt), hidden_states[l][0].mean(0), one prompt at a time
            with torch.no_grad():
                enc = lm.tokenizer(item["prompt"], return_tensors="pt")
                rows.append(lm.model(**enc, output_hidden_states=True).hidden_states[2][0].mean(0).double().numpy())
    scores, _, _ = pca_2d(np.stack(rows))
    entry = result["variants"]["base"]["layers"]["2"]
    np.testing.assert_allclose(np.array(entry["points"]["en"] + entry["points"]["de"]), scores, atol=1e-3)
    expected = np.corrcoef(scores[3:, 0], scores[:3, 0])[0, 1]  # the notebook's np.corrcoef
    assert entry["pc1_correlation"] == {"de-en": pytest.approx(expected, abs=1e-4)}
    with pytest.raises(MlalignError, match="the paper's PCA input is the sentiment task's"):
        run_pca(ModelSpec(str(tiny_model_dir), device="cpu"), "de", tmp_path / "snli", task="snli", limit=3)


def test_sample_indices_seeded_and_parallel():
    assert paper_items.sample_indices(list(range(10)), None, 0) == list(range(10))
    a, b = paper_items.sample_indices(list(range(100)), 5, 7), paper_items.sample_indices(list(range(100)), 5, 7)
    assert a == b == sorted(a) and len(set(a)) == 5
    assert paper_items.sample_indices(list(range(100)), 5, 8) != a
    chosen, texts = paper_items.sentences("snli", ["en", "de"], limit=None, seed=0)
    assert len(chosen) == len(set(texts["en"])) == len(texts["de"])  # SNLI premises repeat: one point each


def test_parse_layers():
    assert parse_layers("0,2-3,-1", 4, default=[1]) == [0, 2, 3, 4]
    assert parse_layers(None, 4, default=[1, 4]) == [1, 4]
    for bad in ("5", "-6", "x", "1-9"):
        with pytest.raises(MlalignError, match="layer"):
            parse_layers(bad, 4, default=[1])


def test_final_norm_found_through_peft(lm, adapter_dir):
    from peft import PeftModel

    assert final_norm(lm.model) is lm.model.model.norm
    wrapped = PeftModel.from_pretrained(lm.model, str(adapter_dir))
    assert final_norm(wrapped) is lm.model.model.norm
    wrapped.unload()


@pytest.fixture(scope="module")
def no_norm_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OPT (post-LN variant) whose decoder has no final norm."""
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = OPTConfig(
        vocab_size=len(tok), hidden_size=16, word_embed_proj_dim=16, num_hidden_layers=2, ffn_dim=32,
        num_attention_heads=2, do_layer_norm_before=False, max_position_embeddings=4096,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("opt") / "model"
    OPTForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["logit-lens", "--task", "snli", "--langs", "de,xx"], "unknown language code 'xx'"),
        (["logit-lens", "--langs", "de", "--load-in-4bit", "--device", "cpu"], "needs a CUDA GPU"),
        (["logit-lens", "--task", "snli", "--langs", "de"], "runs on the sentiment task"),
        (["logit-lens", "--task", "snli", "--langs", "de", "--limit", "0"], "--limit must be a positive"),
        (["pca", "--langs", "de", "--layers", "1,9"], "layer 9 is out of range: the model has 4 layers"),
        (["pca", "--langs", "de", "--device", "cuda:3"], "device 'cuda:3'"),
        (["pca", "--langs", "en", "--limit", "1", "--device", "cpu"], "a PCA needs at least two points"),
        (["pca", "--langs", "de", "--pairs", "en-fr"], "bad pair 'en-fr' in --pairs"),
        (["pca", "--langs", "de", "--task", "snli", "--device", "cpu"], "use --task sentiment, or --input sentence"),
    ],
)
def test_bad_input_is_one_clear_error(args, message, tiny_model_dir, tmp_path, monkeypatch, capsys):
    if "cuda:3" in args and torch.cuda.device_count() > 3:
        pytest.skip("a GPU is present")
    out = tmp_path / "out"
    code, err = run_cli(["analyze", *args, "--model", str(tiny_model_dir), "--out", str(out)], monkeypatch, capsys)
    assert code == 2
    assert message in " ".join(err.split())
    assert err.strip().startswith("error:")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []  # nothing partial written


def test_model_without_final_norm_is_refused(no_norm_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "lens"
    args = ["analyze", "logit-lens", "--model", str(no_norm_model), "--langs", "de"]
    code, err = run_cli([*args, "--out", str(out), "--limit", "1", "--device", "cpu"], monkeypatch, capsys)
    assert code == 2
    assert "OPTForCausalLM exposes no final norm" in " ".join(err.split())
    assert [p.name for p in tmp_path.iterdir()] == []


def test_out_dir_with_other_content_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")  # not an earlier output: must not be replaced
    with pytest.raises(MlalignError, match="not an earlier pca.json output"):
        run_pca(ModelSpec(str(tiny_model_dir), device="cpu"), "de", tmp_path, limit=2)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="4-bit NF4 loading needs a CUDA GPU")
def test_four_bit_on_gpu_matches_its_own_head(tiny_model_dir, adapter_dir, prompts):
    lm4 = load_model(ModelSpec(str(tiny_model_dir), adapter_dir, device="cuda", load_in_4bit=True))
    assert "4bit" in type(lm4.base.model.layers[0].self_attn.q_proj.base_layer).__name__.lower()
    lens = LogitLens(lm4.model)
    for variant in lm4.variants():
        with lm4.variant(variant), lens.capturing():
            out = run_batches(
                lm4,
                prompts,
                lambda b: {"p": lens.logits(b)[-1].softmax(-1), "own": b.last_logits.float().softmax(-1)},
                batch_size=4,
            )
        assert torch.allclose(out["p"], out["own"], atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="4-bit NF4 loading needs a CUDA GPU")
def test_four_bit_paper_preset_is_the_papers_quantisation(tiny_model_dir, prompts):
    lm4 = load_model(ModelSpec(str(tiny_model_dir), device="cuda", load_in_4bit=True, nf4_preset=Nf4Preset.paper))
    config = lm4.base.config.quantization_config
    assert config.bnb_4bit_quant_type == "nf4" and not config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float16
    layer = lm4.base.model.layers[0].self_attn.q_proj
    assert "4bit" in type(layer).__name__.lower() and layer.compute_dtype == torch.float16
    assert layer.weight.quant_state.nested is False  # no double quantisation
    mlalign = load_model(ModelSpec(str(tiny_model_dir), device="cuda", load_in_4bit=True))
    assert mlalign.base.model.layers[0].self_attn.q_proj.weight.quant_state.nested is True


def test_four_bit_paper_preset_needs_four_bit_and_a_merged_model(tiny_model_dir, adapter_dir):
    with pytest.raises(MlalignError, match="--nf4-preset paper applies to 4-bit analyses; add --load-in-4bit"):
        ModelSpec(str(tiny_model_dir), nf4_preset=Nf4Preset.paper)
    with pytest.raises(MlalignError, match="run `mlalign merge` on the adapter and analyse the merged model"):
        ModelSpec(str(tiny_model_dir), adapter_dir, load_in_4bit=True, nf4_preset=Nf4Preset.paper)
    assert ModelSpec(str(tiny_model_dir), load_in_4bit=True, nf4_preset="paper").nf4_preset is Nf4Preset.paper


def test_logit_lens_notes_label_words_that_share_first_tokens(tiny_model_dir, tmp_path):
    result = run_logit_lens(
        ModelSpec(str(tiny_model_dir), device="cpu"), "paws", "de,en", tmp_path / "paws", limit=2, protocol=ENOUT
    )
    en = result["variants"]["base"]["en"]  # English native labels are the English labels: every token is shared
    assert sorted(en["shared_label_tokens"]) == sorted(en["english_label_tokens"]) and en["shared_label_tokens"]
    assert result["variants"]["base"]["de"]["shared_label_tokens"] == []  # PAWS has no German label words
    assert [note.split(":")[0] for note in result["notes"]] == ["en"]
    assert json.loads((tmp_path / "paws" / "logit_lens.json").read_text())["notes"] == result["notes"]


# ----------------------------------------------------------------------------- the paper's logit lens


def test_mean_and_95_percent_interval_by_hand():
    stats = mean_ci(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    # mean (1+3)/2, (2+6)/2; sd with n-1: sqrt(2), sqrt(8); half-width 1.96 * sd / sqrt(2)
    assert stats["mean"] == [2.0, 4.0]
    assert stats["ci95"] == pytest.approx([1.96, 3.92])
    assert mean_ci(torch.tensor([[0.5, 0.25]])) == {"mean": [0.5, 0.25], "ci95": None}


def test_items_with_overlapping_token_sets_are_dropped_outside_english():
    items = [{"idx": 0, "label": 0}, {"idx": 1, "label": 1}, {"idx": 2, "label": 0}]
    english, native = [[1, 2], [3]], [[2, 9], [8]]  # label 0 shares token 2; label 1 is disjoint
    assert [it["idx"] for it in kept_items(items, english, native, "de")] == [1]
    assert [it["idx"] for it in kept_items(items, english, native, "en")] == [0, 1, 2]
    assert kept_items(items, english, [[9], []], "de") == [items[0], items[2]]  # an empty gold set drops the item


def test_paper_lens_equals_manual_block_outputs_and_token_sets(lm, tiny_model_dir, tmp_path):
    from mlalign_tasks.tasks import paper_prompts
    from mlalign_tasks.tasks.label_tokens import paper_token_set

    result = run_logit_lens(
        ModelSpec(str(tiny_model_dir), device="cpu"), "sentiment", "zh,de,en", tmp_path / "lens", limit=4
    )
    assert result["protocol"] == "paper" and result["layers"] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "lens").iterdir()) == [
        "logit_lens.json", "logit_lens_curves.png", "logit_lens_curves.svg"
    ]  # fmt: skip
    zh, de = result["variants"]["base"]["zh"], result["variants"]["base"]["de"]
    # German shares p/n with English on this vocabulary: every item is dropped, and counted
    assert (de["items"], de["dropped"], de["latent_english"]) == (0, 4, None)
    assert result["notes"] == [
        "de: 4 of 4 items dropped (their English and native label token sets overlap or one is empty), as the paper does"
    ]
    assert zh["items"] == 4 and zh["dropped"] == 0
    _, items = paper_items.prompts("sentiment", ["zh"], 4, 0, words=paper_prompts.LabelWords.native)
    assert [it["idx"] for it in items["zh"]] == result["items"]
    assert '情感: "积极"' in items["zh"][0]["prompt"]  # the shots answer in Chinese
    words = {"en": ["positive", "negative"], "zh": ["积极", "消极"]}
    sets = {lang: [paper_token_set(lm.tokenizer, w) for w in ws] for lang, ws in words.items()}
    assert zh["token_sets"]["积极"] == lm.tokenizer.convert_ids_to_tokens(sets["zh"][0])
    norm, head = lm.model.model.norm, lm.model.lm_head
    curves = {name: [] for name in ("latent_english", "native", "english_both", "native_both", "entropy_bits")}
    for item in items["zh"]:
        with torch.no_grad():
            hidden = lm.model(**lm.tokenizer(item["prompt"], return_tensors="pt"), output_hidden_states=True)
        per_block = []
        for block in range(1, lm.num_layers + 1):  # the block's output; the last one is already normed
            h = hidden.hidden_states[block][0, -1]
            normed = h if block == lm.num_layers else norm(h)
            per_block.append((head.weight @ normed).double().softmax(-1))
        g = item["label"]
        curves["latent_english"].append([float(p[sets["en"][g]].sum()) for p in per_block])
        curves["native"].append([float(p[sets["zh"][g]].sum()) for p in per_block])
        curves["english_both"].append([float(p[sets["en"][0] + sets["en"][1]].sum()) for p in per_block])
        curves["native_both"].append([float(p[sets["zh"][0] + sets["zh"][1]].sum()) for p in per_block])
        curves["entropy_bits"].append([float(-(p * p.log2()).sum()) for p in per_block])
    for name, rows in curves.items():
        x = np.array(rows)
        assert zh[name]["mean"] == pytest.approx(x.mean(0).tolist(), rel=1e-4, abs=1e-7), name
        half = 1.96 * x.std(0, ddof=1) / np.sqrt(len(x))
        # (the lens runs in float32: the entropies' tiny spread on random weights is known to ~1e-6 bits)
        assert zh[name]["ci95"] == pytest.approx(half.tolist(), rel=1e-2, abs=1e-6), name


def test_paper_lens_needs_the_sentiment_task(tiny_model_dir, tmp_path):
    with pytest.raises(MlalignError, match="runs on the sentiment task.*--protocol english-output"):
        run_logit_lens(ModelSpec(str(tiny_model_dir), device="cpu"), "snli", "de", tmp_path / "lens", limit=2)


def test_identical_lens_curves_are_named_on_the_plot() -> None:
    """Curves that coincide hide each other: the plot says which (here base = aligned, e.g. a zero adapter)."""
    from matplotlib.figure import Figure

    from mlalign_tasks.analysis.plots import note_identical

    ax = Figure().subplots()
    curves = {"English (base)": [0.1, 0.2], "English (aligned)": [0.1, 0.2], "target (base)": [0.3, 0.1]}
    assert note_identical(ax, curves) == "identical: English (base) = English (aligned)"
    assert [t.get_text() for t in ax.texts] == ["identical: English (base) = English (aligned)"]
    assert note_identical(Figure().subplots(), {"a": [0.1], "b": [0.2]}) is None


def test_a_long_identical_note_does_not_squeeze_the_axes() -> None:
    """The note is wrapped and left out of the constrained layout: the axes keep the width they have without it."""
    import io
    import warnings

    from matplotlib.figure import Figure

    from mlalign_tasks.analysis.plots import note_identical

    def axes_width(with_note: bool) -> float:
        fig = Figure(figsize=(7.2, 2.8), layout="constrained")
        axes = fig.subplots(1, 2, squeeze=False)
        curves = {f"gold label, target language (variant {i})": [0.1, 0.2] for i in range(8)}
        if with_note:
            note_identical(axes[0, 0], curves)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # matplotlib warns when the layout collapses the axes
            fig.savefig(io.BytesIO(), format="png")
        return axes[0, 0].get_position().width

    assert axes_width(True) == pytest.approx(axes_width(False), rel=0.01)

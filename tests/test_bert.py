"""BERT parity against HF transformers (PyTorch) on a real checkpoint and on saved random models."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from flaxbert import Model, abstract_params, count_params, get_config, init_params
from flaxbert.configs import BertConfig, load_config
from flaxbert.params import flatten
from flaxbert.pretrained import from_pretrained, save_pretrained

TOL = 1e-4  # fp32 max abs diff, the stated tolerance


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return from_pretrained(minilm_dir, tokenizer=False)


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
    return transformers.BertModel.from_pretrained(minilm_dir).eval()


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir):
    return transformers.BertTokenizerFast(str(minilm_dir / "vocab.txt"))


def _hf_forward(model, batch):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in batch.items()})


def _masked_max_diff(ours, theirs, mask):
    return float(np.max(np.abs((np.asarray(ours) - theirs) * mask[..., None])))


def _batches(sentences, tokenizer, pairs: bool):
    """64+ real sentences of mixed lengths in padded batches of 16 (and as text pairs)."""
    picked = sentences[::97][:80]  # spread over the file: short and long snippets
    for i in range(0, len(picked), 16):
        chunk = picked[i:i + 16]
        if pairs:
            yield tokenizer(chunk[::2], chunk[1::2], padding=True, truncation=True, max_length=128,
                            return_tensors="np")
        else:
            yield tokenizer(chunk, padding=True, truncation=True, max_length=128,
                            return_tensors="np")


@pytest.mark.parametrize("pairs", [False, True])
def test_minilm_matches_transformers(minilm, hf_minilm, hf_tokenizer, movie_sentences, pairs):
    model, params, _ = minilm
    apply = jax.jit(lambda p, b: model.apply({"params": p}, b["input_ids"], b["attention_mask"],
                                             b["token_type_ids"]))
    seen = 0
    for batch in _batches(movie_sentences, hf_tokenizer, pairs):
        ours = apply(params, dict(batch))
        theirs = _hf_forward(hf_minilm, batch)
        mask = batch["attention_mask"]
        assert _masked_max_diff(ours["sequence_output"], theirs.last_hidden_state.numpy(), mask) <= TOL
        assert np.max(np.abs(np.asarray(ours["pooled_output"]) - theirs.pooler_output.numpy())) <= TOL
        seen += len(mask)
    assert seen >= (40 if pairs else 80)


def test_every_layer_and_attention_match(minilm, hf_minilm, hf_tokenizer, movie_sentences):
    model, params, _ = minilm
    batch = hf_tokenizer(movie_sentences[:8], padding=True, return_tensors="np")
    ours = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                       batch["token_type_ids"], output_attentions=True)
    with torch.no_grad():
        theirs = hf_minilm(**{k: torch.tensor(v) for k, v in batch.items()},
                           output_hidden_states=True, output_attentions=True)
    mask = batch["attention_mask"]
    assert len(ours["encoder_outputs"]) == 6
    assert _masked_max_diff(ours["embedding_output"], theirs.hidden_states[0].numpy(), mask) <= TOL
    for ours_h, theirs_h in zip(ours["encoder_outputs"], theirs.hidden_states[1:]):
        assert _masked_max_diff(ours_h, theirs_h.numpy(), mask) <= TOL
    for ours_a, theirs_a in zip(ours["attention_probs"], theirs.attentions):
        keep = mask[:, None, :, None] * mask[:, None, None, :]
        assert np.max(np.abs((np.asarray(ours_a) - theirs_a.numpy()) * keep)) <= TOL
    # The explicit attention path (maps requested; all of CPU) equals the accelerators' fused one.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("flaxbert.bert.fused_attention_pays", lambda: True)
        fused = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                            batch["token_type_ids"])
    assert _masked_max_diff(fused["sequence_output"], np.asarray(ours["sequence_output"]), mask) <= 1e-5


def test_bf16_compute_stays_close(minilm_dir, hf_tokenizer, movie_sentences, minilm):
    model32, params, _ = minilm
    model16 = Model(model32.config, pooler=True, dtype=jnp.bfloat16)  # fp32 params, bf16 compute
    batch = hf_tokenizer(movie_sentences[:32], padding=True, return_tensors="np")
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    out32 = model32.apply({"params": params}, *args)
    out16 = model16.apply({"params": params}, *args)
    assert out16["sequence_output"].dtype == jnp.bfloat16
    a = np.asarray(out32["pooled_output"], np.float64)
    b = np.asarray(out16["pooled_output"].astype(jnp.float32), np.float64)
    cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.min() >= 0.999, cos.min()
    # token level too, over real tokens
    s32 = np.asarray(out32["sequence_output"], np.float64)
    s16 = np.asarray(out16["sequence_output"].astype(jnp.float32), np.float64)
    cos_t = np.sum(s32 * s16, -1) / np.linalg.norm(s32, axis=-1) / np.linalg.norm(s16, axis=-1)
    assert cos_t[batch["attention_mask"] == 1].min() >= 0.99


SMALL_HF = dict(vocab_size=211, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=96, max_position_embeddings=64)


@pytest.fixture(scope="module")
def hf_pretraining_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(transformers.BertConfig(**SMALL_HF)).eval()
    # Random init leaves the biases at zero; perturb every tensor so each one is tested.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("hf_pretraining")
    model.save_pretrained(path)
    return path, model


def _random_batch(seed=0, batch=3, length=12, vocab=211):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    positions = np.array([[1, 2, 5], [0, 3, 6], [1, 2, 2]], np.int32)
    return ids * mask, mask, types * mask, positions


def test_pretraining_heads_match(hf_pretraining_dir):
    path, hf_model = hf_pretraining_dir
    model, params, _ = from_pretrained(path, tokenizer=False)
    assert set(model.heads) == {"mlm", "nsp"}
    ids, mask, types, positions = _random_batch()
    ours = model.apply({"params": params}, ids, mask, types, positions)
    with torch.no_grad():
        theirs = hf_model(input_ids=torch.tensor(ids, dtype=torch.long),
                          attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types, dtype=torch.long))
    mlm_theirs = np.take_along_axis(theirs.prediction_logits.numpy(), positions[..., None], axis=1)
    assert np.max(np.abs(np.asarray(ours["mlm_logits"]) - mlm_theirs)) <= TOL
    assert np.max(np.abs(np.asarray(ours["nsp_logits"]) - theirs.seq_relationship_logits.numpy())) <= TOL


@pytest.mark.parametrize("heads,hf_class", [
    ((), "BertModel"), (("mlm", "nsp"), "BertForPreTraining"), (("mlm",), "BertForMaskedLM"),
    (("classifier",), "BertForSequenceClassification"), (("span",), "BertForQuestionAnswering")])
def test_round_trip_through_transformers(tmp_path, heads, hf_class):
    config = BertConfig(**SMALL_HF)
    # HF has no pooler in its MaskedLM and QA classes
    model = Model(config, heads=heads, num_labels=3, pooler=heads not in (("mlm",), ("span",)))
    params = init_params(model, 1)
    save_pretrained(tmp_path, model, params)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [hf_class]
    hf_model, info = getattr(transformers, hf_class).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask, types, positions = _random_batch()
    ours = model.apply({"params": params}, ids, mask, types, positions)
    with torch.no_grad():
        theirs = hf_model.eval()(input_ids=torch.tensor(ids, dtype=torch.long),
                                 attention_mask=torch.tensor(mask),
                                 token_type_ids=torch.tensor(types, dtype=torch.long))
    if hf_class == "BertModel":
        assert np.max(np.abs(np.asarray(ours["pooled_output"]) - theirs.pooler_output.numpy())) <= TOL
    elif "mlm" in heads:
        logits = theirs.prediction_logits if hf_class == "BertForPreTraining" else theirs.logits
        expected = np.take_along_axis(logits.numpy(), positions[..., None], axis=1)
        assert np.max(np.abs(np.asarray(ours["mlm_logits"]) - expected)) <= TOL
    elif heads == ("classifier",):
        assert np.max(np.abs(np.asarray(ours["logits"]) - theirs.logits.numpy())) <= TOL
    else:
        assert np.max(np.abs(np.asarray(ours["start_logits"]) - theirs.start_logits.numpy())) <= TOL
    # and back: ours -> HF -> ours is exact
    _, again, _ = from_pretrained(tmp_path, tokenizer=False)
    for (name, a), (_, b) in zip(sorted(flatten(params).items()), sorted(flatten(again).items())):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def test_new_head_is_initialised_and_others_dropped(hf_pretraining_dir):
    path, _ = hf_pretraining_dir
    model, params, _ = from_pretrained(path, heads=("classifier",), num_labels=3, tokenizer=False)
    assert set(params) == {"backbone", "classifier"}
    assert params["classifier"]["kernel"].shape == (64, 3)
    full, full_params, _ = from_pretrained(path, tokenizer=False)
    np.testing.assert_array_equal(params["backbone"]["layer_1"]["output"]["kernel"],
                                  full_params["backbone"]["layer_1"]["output"]["kernel"])


# Parameter counts with pooler from shared/REFERENCES.md (Turc et al. 2019 release).
@pytest.mark.parametrize("name,millions", [("tiny", 4.39), ("mini", 11.17), ("small", 28.76),
                                           ("medium", 41.37), ("base", 109.48)])
def test_preset_parameter_counts(name, millions):
    assert round(count_params(abstract_params(Model(get_config(name)))) / 1e6, 2) == millions


def test_all_24_compact_presets_exist():
    for layers in (2, 4, 6, 8, 10, 12):
        for hidden in (128, 256, 512, 768):
            cfg = get_config(f"bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}")
            assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (
                layers, hidden, 4 * hidden)
    assert get_config("bert_base_chinese").vocab_size == 21128
    assert get_config("bert_large_cased").num_attention_heads == 16


def test_config_json_both_layouts(tmp_path, minilm_dir):
    cfg = load_config(minilm_dir / "config.json")
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (384, 12, 1536)
    for layout in ("hf", "google"):
        cfg.to_json_file(tmp_path / f"{layout}.json", layout=layout)
        again = load_config(tmp_path / f"{layout}.json")
        assert again.replace(extra=()) == cfg.replace(extra=())
    google = json.loads((tmp_path / "google.json").read_text())
    assert "model_type" not in google and "layer_norm_eps" not in google
    hf_again = transformers.BertConfig.from_json_file(tmp_path / "hf.json")
    assert hf_again.hidden_size == 384 and hf_again.num_attention_heads == 12


# --- bad input -----------------------------------------------------------------------------------
def test_unknown_preset_and_inconsistent_config():
    with pytest.raises(ValueError, match="unknown model preset 'bert_tinyy'.*did you mean"):
        get_config("bert_tinyy")
    with pytest.raises(ValueError, match="hidden_size=100 is not divisible by num_attention_heads=3"):
        BertConfig(hidden_size=100, num_attention_heads=3)
    with pytest.raises(ValueError, match="hidden_act='gelu_fast'"):
        BertConfig(hidden_act="gelu_fast")
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_dict({**SMALL_HF, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match=r"missing required field\(s\) \['hidden_size'\]"):
        BertConfig.from_dict({k: v for k, v in SMALL_HF.items() if k != "hidden_size"})


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps(SMALL_HF))
    with pytest.raises(FileNotFoundError, match="has neither model.safetensors nor pytorch_model.bin"):
        from_pretrained(tmp_path)


def test_truncated_safetensors(tmp_path, hf_pretraining_dir):
    path, _ = hf_pretraining_dir
    data = (path / "model.safetensors").read_bytes()
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        from_pretrained(tmp_path, tokenizer=False)


def test_config_weights_mismatch(tmp_path, hf_pretraining_dir):
    path, _ = hf_pretraining_dir
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    wrong = json.loads((path / "config.json").read_text())
    wrong["intermediate_size"] = 128
    (tmp_path / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=r"shape mismatches: bert\.encoder\.layer\.0\.intermediate"):
        from_pretrained(tmp_path, tokenizer=False)
    wrong["intermediate_size"] = SMALL_HF["intermediate_size"]
    wrong["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=r"missing tensors: \['bert\.encoder\.layer\.2\."):
        from_pretrained(tmp_path, tokenizer=False)
    wrong["num_hidden_layers"] = 1
    (tmp_path / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=r"unexpected tensors .*bert\.encoder\.layer\.1\."):
        from_pretrained(tmp_path, tokenizer=False)


def test_sequence_longer_than_positions():
    model = Model(BertConfig(**SMALL_HF))
    params = init_params(model)
    ids = jnp.ones((1, 65), jnp.int32)
    with pytest.raises(ValueError, match="sequence length 65 exceeds max_position_embeddings=64"):
        model.apply({"params": params}, ids)


@pytest.mark.parametrize("preset,policy", [("tiny", "full"), ("mobilebert_tiny", "dots")])
def test_remat_policies_change_memory_not_results(preset, policy):
    """Activation checkpointing recomputes the same values: loss and gradients equal the plain
    model's; the parameter tree is the same."""
    import flaxbert.mobilebert  # noqa: F401  (registers the MobileBERT presets)

    config = get_config(preset).replace(num_hidden_layers=2, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)
    plain = Model(config, heads=("mlm",))
    remat = Model(config, heads=("mlm",), remat_policy=policy)
    params = init_params(plain, 0)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(5, 1000, (2, 16)), jnp.int32)
    positions = jnp.asarray([[1, 5], [2, 9]], jnp.int32)

    def loss(p, model):
        out = model.apply({"params": p}, ids, jnp.ones_like(ids), jnp.zeros_like(ids), positions)
        return jnp.mean(out["mlm_logits"] ** 2)

    (a, ga), (b, gb) = (jax.value_and_grad(loss)(params, m) for m in (plain, remat))
    assert jax.tree_util.tree_structure(init_params(remat, 0)) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(b, a, rtol=1e-6)
    for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(y, x, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="remat_policy='some'"):
        init_params(Model(config, remat_policy="some"), 0)


@pytest.mark.parametrize("preset,policy", [("tiny", "none"), ("mobilebert_tiny", "full")])
def test_scanned_layers_equal_the_unrolled_stack(preset, policy, tmp_path):
    """nn.scan over the layers (stacked parameters, one compiled body) gives the unrolled model's
    outputs, per-layer states, attention maps and gradients; checkpoints keep per-layer names."""
    import flaxbert.mobilebert  # noqa: F401  (registers the MobileBERT presets)
    from flaxbert.params import stack_layers, unstack_layers
    from flaxbert.pretrained import from_pretrained, save_pretrained

    config = get_config(preset).replace(num_hidden_layers=3, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)
    plain = Model(config, heads=("mlm",))
    scanned = Model(config, heads=("mlm",), scan_layers=True, remat_policy=policy)
    params = init_params(plain, 0)
    stacked = stack_layers(params)
    assert jax.tree_util.tree_structure(init_params(scanned, 0)) == \
        jax.tree_util.tree_structure(jax.tree_util.tree_map(jnp.asarray, stacked))
    ids = jnp.asarray(np.random.default_rng(0).integers(5, 1000, (2, 12)), jnp.int32)
    mask = jnp.asarray([[1] * 12, [1] * 7 + [0] * 5], jnp.int32)
    args = (ids, mask, jnp.zeros_like(ids), jnp.asarray([[1, 4], [2, 6]], jnp.int32))
    a = plain.apply({"params": params}, *args, output_attentions=True)
    b = scanned.apply({"params": stacked}, *args, output_attentions=True)
    for key in ("sequence_output", "pooled_output", "mlm_logits"):
        np.testing.assert_allclose(b[key], a[key], atol=2e-5, err_msg=key)
    for key in ("encoder_outputs", "attention_probs"):
        assert len(b[key]) == 3
        for x, y in zip(a[key], b[key]):
            np.testing.assert_allclose(y, x, atol=2e-5, err_msg=key)

    def loss(p, model):
        return jnp.mean(model.apply({"params": p}, *args)["mlm_logits"] ** 2)

    grads = flatten(unstack_layers(jax.grad(loss)(stacked, scanned)))
    expected = flatten(jax.grad(loss)(params, plain))
    assert grads.keys() == expected.keys()
    for path, x in expected.items():
        np.testing.assert_allclose(grads[path], x, atol=1e-6, rtol=1e-4, err_msg=path)
    save_pretrained(tmp_path, scanned, stacked)
    _, loaded, _ = from_pretrained(tmp_path, tokenizer=False)
    for name, value in flatten(params).items():
        np.testing.assert_array_equal(flatten(loaded)[name], value, err_msg=name)

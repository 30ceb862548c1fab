"""MobileBERT (OPT, TINY) and its IB-BERT teacher against HF transformers' PyTorch modules.

Widths and the vocabulary (30522, the real bert-base-uncased vocab) are the presets' own; only the
number of layers is reduced (to 3) in the parity tests to keep them fast. HF models are randomly
initialised with a fixed seed and every tensor is perturbed, so NoNorm scales, biases and the
bottlenecks are all exercised. Batches are real sentences, padded.

Sources: google-research/google-research mobilebert/config/*.json and mobilebert/modeling.py (the
original), transformers' models/mobilebert/modeling_mobilebert.py (the reference run here).
"""

import dataclasses
import json

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import transformers

from flaxbert import Model, abstract_params, count_params, get_config, init_params
from flaxbert.configs import config_from_dict, load_config
from flaxbert.mobilebert import MobileBertConfig
from flaxbert.params import flatten
from flaxbert.pretrained import from_pretrained, save_pretrained

TOL = 1e-4
OPT = "mobilebert_uncased_L-24_H-128_B-512_A-4_F-4_OPT"
TINY = "mobilebert_tiny_uncased_L-24_H-128_B-512_A-4_F-2_OPT"
IB_BERT = "uncased_L-24_H-1024_B-512_A-4"

# google-research/google-research mobilebert/config/*.json, verbatim (key order aside).
_COMMON = {"attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
           "max_position_embeddings": 512, "num_attention_heads": 4, "num_hidden_layers": 24,
           "type_vocab_size": 2, "vocab_size": 30522, "hidden_size": 512, "embedding_size": 128,
           "trigram_input": True, "use_bottleneck": True}
GOOGLE_JSON = {
    OPT: {**_COMMON, "hidden_act": "relu", "hidden_dropout_prob": 0.0, "intermediate_size": 512,
          "intra_bottleneck_size": 128, "key_query_shared_bottleneck": True,
          "num_feedforward_networks": 4, "normalization_type": "no_norm",
          "classifier_activation": False},
    TINY: {**_COMMON, "hidden_act": "relu", "hidden_dropout_prob": 0.0, "intermediate_size": 512,
           "intra_bottleneck_size": 128, "use_bottleneck_attention": True,
           "num_feedforward_networks": 2, "normalization_type": "no_norm",
           "classifier_activation": False},
    IB_BERT: {**_COMMON, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "intermediate_size": 4096, "intra_bottleneck_size": 1024},
}


def hf_config(preset: str, layers: int = 3, **changes) -> transformers.MobileBertConfig:
    ours = dataclasses.asdict(get_config(preset))
    ours.pop("extra")
    ours.pop("attention_mask_value")
    ours.update(num_hidden_layers=layers, **changes)
    return transformers.MobileBertConfig(**ours)


def needs_qk_patch(config) -> bool:
    """IB-BERT feeds Q/K from the 512-wide block input (no shared bottleneck); HF sizes its
    query/key layers for the 1024-wide bottleneck then, so the reference gets layers of the
    original's shape (HF's forward already routes the block input to them)."""
    return (config.use_bottleneck and not config.use_bottleneck_attention
            and not config.key_query_shared_bottleneck
            and config.intra_bottleneck_size != config.hidden_size)


def hf_model(cls, config, seed: int = 0):
    torch.manual_seed(seed)
    model = cls(config)
    if needs_qk_patch(config):
        for layer in model.mobilebert.encoder.layer:
            for name in ("query", "key"):
                setattr(layer.attention.self, name,
                        torch.nn.Linear(config.hidden_size, config.true_hidden_size))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return transformers.BertTokenizerFast(str(minilm_dir / "vocab.txt"))


@pytest.fixture(scope="module")
def batch(tokenizer, movie_sentences):
    """8 real sentences as pairs (so type ids vary), padded to the longest: a padded batch."""
    enc = tokenizer(movie_sentences[3:11], movie_sentences[20:28], padding=True,
                    truncation=True, max_length=64, return_tensors="np")
    assert enc["attention_mask"].min() == 0  # really padded
    return dict(enc)


def torch_inputs(batch):
    return {k: torch.tensor(v) for k, v in batch.items()}


def positions_for(batch, n: int = 6):
    return np.tile(np.arange(1, n + 1), (len(batch["input_ids"]), 1)).astype(np.int32)


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("preset,changes", [
    (OPT, {}), (TINY, {}), (IB_BERT, {}),
    (IB_BERT, {"key_query_shared_bottleneck": True}),  # the IB-BERT shape HF runs natively
], ids=["opt", "tiny", "ib_bert", "ib_bert_shared_qk"])
def test_matches_transformers(tmp_path, preset, changes, batch):
    config = hf_config(preset, **changes)
    theirs_model = hf_model(transformers.MobileBertForPreTraining, config)
    theirs_model.save_pretrained(tmp_path)
    model, params, _ = from_pretrained(tmp_path, tokenizer=False)
    assert model.config.model_type == "mobilebert" and set(model.heads) == {"mlm", "nsp"}
    assert model.config == get_config(preset).replace(num_hidden_layers=3, **changes,
                                                      extra=model.config.extra)
    positions = positions_for(batch)
    ours = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                       batch["token_type_ids"], positions)
    with torch.no_grad():
        theirs = theirs_model(**torch_inputs(batch), output_hidden_states=True)
        pooled = theirs_model.mobilebert(**torch_inputs(batch)).pooler_output.numpy()
    hidden = theirs.hidden_states
    # every position, padded ones included (both mask keys only)
    assert max_diff(ours["embedding_output"], hidden[0]) <= TOL
    assert len(ours["encoder_outputs"]) == len(hidden) - 1 == 3
    for i, layer in enumerate(ours["encoder_outputs"]):
        assert max_diff(layer, hidden[i + 1]) <= TOL, f"layer {i}"
    assert max_diff(ours["sequence_output"], hidden[-1]) <= TOL
    # HF's pooler returns the [CLS] state when classifier_activation is false (OPT, TINY)
    assert max_diff(ours["pooled_output"], pooled) <= TOL
    if not model.config.classifier_activation:
        np.testing.assert_array_equal(ours["pooled_output"], ours["sequence_output"][:, 0])
    mlm = np.take_along_axis(theirs.prediction_logits.numpy(), positions[..., None], axis=1)
    assert max_diff(ours["mlm_logits"], mlm) <= TOL
    assert max_diff(ours["nsp_logits"], theirs.seq_relationship_logits) <= TOL


@pytest.mark.parametrize("cls,heads", [
    (transformers.MobileBertModel, ()),
    (transformers.MobileBertForSequenceClassification, ("classifier",)),
    (transformers.MobileBertForQuestionAnswering, ("span",)),
])
def test_other_architectures_load_and_save(tmp_path, batch, cls, heads):
    config = hf_config(OPT, layers=2, num_labels=3 if heads == ("classifier",) else 2)
    theirs_model = hf_model(cls, config)
    theirs_model.save_pretrained(tmp_path / "hf")
    model, params, _ = from_pretrained(tmp_path / "hf", tokenizer=False)
    assert tuple(model.heads) == heads
    ours = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                       batch["token_type_ids"])
    with torch.no_grad():
        theirs = theirs_model(**torch_inputs(batch))
    if cls is transformers.MobileBertModel:
        assert max_diff(ours["sequence_output"], theirs.last_hidden_state) <= TOL
    elif heads == ("classifier",):
        assert ours["logits"].shape == (len(batch["input_ids"]), 3)
        assert max_diff(ours["logits"], theirs.logits) <= TOL
    else:
        assert max_diff(ours["start_logits"], theirs.start_logits) <= TOL
        assert max_diff(ours["end_logits"], theirs.end_logits) <= TOL
    save_pretrained(tmp_path / "ours", model, params)
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["architectures"] == [
        cls.__name__]
    again, info = cls.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    theirs_sd, again_sd = theirs_model.state_dict(), again.state_dict()
    for name, value in theirs_sd.items():
        assert torch.equal(value, again_sd[name]), name


@pytest.mark.parametrize("preset", [OPT, IB_BERT])
def test_round_trip_is_exact(tmp_path, batch, preset):
    """HF → ours → HF → ours, bit for bit (OPT with a tanh pooler to carry its weights too)."""
    changes = {"classifier_activation": True} if preset == OPT else {}
    theirs_model = hf_model(transformers.MobileBertForPreTraining,
                            hf_config(preset, layers=2, **changes))
    theirs_model.save_pretrained(tmp_path / "hf")
    model, params, _ = from_pretrained(tmp_path / "hf", tokenizer=False)
    save_pretrained(tmp_path / "ours", model, params)
    if not needs_qk_patch(model.config):  # HF cannot build IB-BERT's Q/K shapes itself
        again_hf, info = transformers.MobileBertForPreTraining.from_pretrained(
            tmp_path / "ours", output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        again_sd = again_hf.state_dict()
        for name, value in theirs_model.state_dict().items():
            assert torch.equal(value, again_sd[name]), name
    model2, again, _ = from_pretrained(tmp_path / "ours", tokenizer=False)
    assert model2.config == model.config and model2.heads == model.heads
    a, b = flatten(params), flatten(again)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


def test_opt_parameter_count_equals_transformers():
    """24 layers, full vocab, no compute (abstract shapes). 36,597,564 with the MLM and NSP heads:
    24.58M backbone + 11.72M extra MLM output weights (30522 × 384) + transform and NSP."""
    ours = count_params(abstract_params(Model(get_config(OPT), heads=("mlm", "nsp"))))
    hf = transformers.MobileBertForPreTraining(hf_config(OPT, layers=24))
    theirs = sum(p.numel() for p in hf.parameters())
    assert ours == theirs == 36_597_564
    backbone = count_params(abstract_params(Model(get_config(OPT))))
    assert backbone == sum(p.numel() for p in hf.mobilebert.parameters()) == 24_581_888


def test_google_configs_read_as_the_presets(tmp_path):
    """Google's JSON leaves keys at *its* defaults (TINY has no key_query_shared_bottleneck, IB-BERT
    no normalization_type/FFN count/classifier_activation): they must read as the presets."""
    for name, data in GOOGLE_JSON.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        config = load_config(path)
        assert config == get_config(name), name
        # Google layout out and back in; HF layout out and back in
        assert MobileBertConfig.from_dict(config.to_google_dict()) == config
        hf_dict = config.to_hf_dict()
        assert hf_dict["model_type"] == "mobilebert" and "attention_mask_value" not in hf_dict
        assert config_from_dict(hf_dict) == config
        # HF reads our HF layout to the same network
        theirs = transformers.MobileBertConfig(**hf_dict)
        for key in ("key_query_shared_bottleneck", "use_bottleneck_attention",
                    "num_feedforward_networks", "normalization_type", "classifier_activation",
                    "intra_bottleneck_size", "hidden_act", "type_vocab_size"):
            assert getattr(theirs, key) == getattr(config, key), (name, key)
    assert get_config(IB_BERT).key_query_shared_bottleneck is False
    assert get_config(TINY).key_query_shared_bottleneck is False
    # the same JSON *with* model_type is HF's layout: HF's defaults fill what is missing
    hf_tiny = config_from_dict({**GOOGLE_JSON[TINY], "model_type": "mobilebert"})
    assert hf_tiny.key_query_shared_bottleneck is True
    # QAT config: the OPT network with relu6
    qat = MobileBertConfig.from_dict({**GOOGLE_JSON[OPT], "hidden_act": "relu6"})
    assert qat == get_config(OPT).replace(hidden_act="relu6")
    # the -6 option survives the HF layout (transformers ignores the key)
    six = get_config(OPT).replace(attention_mask_value=-6.0)
    assert config_from_dict(six.to_hf_dict()).attention_mask_value == -6.0


def _equations(jaxpr):
    """Every equation of a jaxpr, nested ones (jit, custom_jvp, ...) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _equations(sub)


def _input_dtypes(eqns, primitive, where=lambda eqn: True):
    return {str(v.aval.dtype) for e in eqns if e.primitive.name == primitive and where(e)
            for v in e.invars}


@pytest.mark.parametrize("preset", [OPT, IB_BERT])
def test_bf16_keeps_softmax_norm_statistics_and_logits_in_float32(batch, preset):
    """Under bf16 compute: every exp (softmax) and rsqrt (LayerNorm variance) runs on float32, and
    so do the vocabulary projections of the MLM head; attention probabilities are float32 rows
    summing to 1 — while the other matmuls do run in bf16."""
    config = get_config(preset).replace(num_hidden_layers=1)
    model = Model(config, heads=("mlm",), dtype=jnp.bfloat16)
    params = init_params(Model(config, heads=("mlm",)), 0)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
            positions_for(batch))
    fn = lambda p, attn: model.apply({"params": p}, *args, output_attentions=attn)  # noqa: E731
    for attn in (False, True):  # the fused path and the explicit one (with maps)
        eqns = list(_equations(jax.make_jaxpr(fn, static_argnums=1)(params, attn).jaxpr))
        assert _input_dtypes(eqns, "exp") == {"float32"}  # softmax (and nothing else here)
        assert _input_dtypes(eqns, "rsqrt") == {"float32"}  # LayerNorm variance (MLM head too)
        vocab = lambda e: e.outvars[0].aval.shape[-1] == config.vocab_size  # noqa: E731
        assert _input_dtypes(eqns, "dot_general", vocab) == {"float32"}  # the MLM logits
        assert "bfloat16" in _input_dtypes(eqns, "dot_general")  # the rest does run in bf16
    out = jax.jit(fn, static_argnums=1)(params, True)
    probs = out["attention_probs"][0]
    assert probs.dtype == jnp.float32 and out["mlm_logits"].dtype == jnp.float32
    assert out["sequence_output"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_bf16_forward_backward_is_finite_and_close(batch):
    """OPT widths, 6 of the 24 layers (24 only cost compile time on CPU)."""
    config = get_config(OPT).replace(num_hidden_layers=6)
    model32 = Model(config, heads=("mlm",))
    model16 = Model(config, heads=("mlm",), dtype=jnp.bfloat16)
    params = init_params(model32, 0)
    positions = positions_for(batch)
    targets = np.take_along_axis(batch["input_ids"], positions, axis=1)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], positions)

    @jax.jit
    def run(p):
        def loss(p, model):
            out = model.apply({"params": p}, *args)
            ce = optax.softmax_cross_entropy_with_integer_labels(out["mlm_logits"], targets)
            return ce.mean(), out["sequence_output"]

        (l16, seq16), g16 = jax.value_and_grad(loss, has_aux=True)(p, model16)
        (l32, seq32), g32 = jax.value_and_grad(loss, has_aux=True)(p, model32)
        return l16, seq16.astype(jnp.float32), g16, l32, seq32, g32

    l16, seq16, g16, l32, seq32, g32 = jax.device_get(run(params))
    assert np.isfinite(l16) and abs(l16 - l32) < 0.05 * abs(l32)
    leaves16, leaves32 = jax.tree_util.tree_leaves(g16), jax.tree_util.tree_leaves(g32)
    assert all(np.all(np.isfinite(g)) for g in leaves16)
    assert all(g.dtype == np.float32 for g in leaves16)  # grads in the params' dtype
    a, b = (np.concatenate([np.ravel(x) for x in leaves]).astype(np.float64)
            for leaves in (leaves16, leaves32))
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 0.95  # the gradient direction
    s16, s32 = seq16.astype(np.float64), seq32.astype(np.float64)
    cos = np.sum(s16 * s32, -1) / np.linalg.norm(s16, axis=-1) / np.linalg.norm(s32, axis=-1)
    assert cos[batch["attention_mask"] == 1].min() >= 0.99


def test_one_adam_step_lowers_the_mlm_loss(batch):
    model = Model(get_config(OPT).replace(num_hidden_layers=2), heads=("mlm",))
    params = init_params(model, 1)
    positions = positions_for(batch)
    targets = np.take_along_axis(batch["input_ids"], positions, axis=1)

    def loss(p):
        logits = model.apply({"params": p}, batch["input_ids"], batch["attention_mask"],
                             batch["token_type_ids"], positions)["mlm_logits"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    tx = optax.adam(1e-3)

    @jax.jit
    def step(p):
        value, grads = jax.value_and_grad(loss)(p)
        updates, _ = tx.update(grads, tx.init(p), p)
        return value, optax.apply_updates(p, updates)

    before, params = step(params)
    after = jax.jit(loss)(params)
    assert np.isfinite(float(before)) and float(after) < float(before) - 0.05


def test_tf_mask_value_changes_only_padded_batches(batch):
    """HF gives padded keys zero attention; the TF original replaces their logits by −6 (so they
    keep e^-6-ish weight). Without padding the two are identical."""
    config = get_config(OPT).replace(num_hidden_layers=2)
    params = init_params(Model(config), 0)
    hf_like, tf_like = Model(config), Model(config.replace(attention_mask_value=-6.0))
    run = jax.jit(lambda m, ids, mask: m.apply({"params": params}, ids, mask,
                                               output_attentions=True), static_argnums=0)
    n = int(batch["attention_mask"][0].sum())
    full = {k: v[:1, :n] for k, v in batch.items()}
    assert full["attention_mask"].min() == 1
    a, b = run(hf_like, full["input_ids"], full["attention_mask"]), run(
        tf_like, full["input_ids"], full["attention_mask"])
    np.testing.assert_array_equal(a["sequence_output"], b["sequence_output"])
    a, b = run(hf_like, batch["input_ids"], batch["attention_mask"]), run(
        tf_like, batch["input_ids"], batch["attention_mask"])
    pad = np.broadcast_to(batch["attention_mask"][:, None, None, :] == 0,
                          a["attention_probs"][0].shape)
    assert np.all(np.asarray(a["attention_probs"][0])[pad] == 0)
    assert np.all(np.asarray(b["attention_logits"][0])[pad] == -6.0)  # replaced, not added
    assert np.all(np.asarray(b["attention_probs"][0])[pad] > 0)
    # the padded keys take attention mass from the real ones: ≈ n_pad·e^-6 / n_real here, as the
    # random model's real logits are ≈ 0 (3.9e-5 for the sequence with 1 pad among 63 tokens)
    padded_rows = batch["attention_mask"].min(1) == 0
    real_mass = np.where(pad, 0, np.asarray(b["attention_probs"][0])).sum(-1)  # [B, A, T]
    n_real = batch["attention_mask"].sum(1)[:, None, None]
    expected = (len(batch["attention_mask"][0]) - n_real) * np.exp(-6.0) / n_real
    np.testing.assert_allclose(1 - real_mass, np.broadcast_to(expected, real_mass.shape),
                               rtol=0.1, atol=1e-6)
    assert np.all(1 - real_mass[padded_rows] > 1e-5)
    diff = np.abs(np.asarray(a["sequence_output"]) - np.asarray(b["sequence_output"])).max(-1)
    real = batch["attention_mask"] == 1
    assert np.all(diff[padded_rows][real[padded_rows]] > 0)  # padded sequences change
    assert diff[~padded_rows].max() == 0  # the longest sequence of the batch has no padding


@pytest.mark.parametrize("changes,message", [
    ({"normalization_type": "batch_norm"}, r"normalization_type='batch_norm'; expected one of"),
    ({"intra_bottleneck_size": 130}, r"attention width \(intra_bottleneck_size\)=130 is not "
                                     r"divisible by num_attention_heads=4"),
    ({"embedding_size": 600}, r"embedding_size=600 exceeds hidden_size=512"),
    ({"num_feedforward_networks": 0}, r"`num_feedforward_networks` must be a positive integer"),
    ({"trigram_input": "yes"}, r"`trigram_input` must be true or false, got 'yes'"),
    ({"attention_mask_value": 6.0}, r"attention_mask_value=6.0; expected None .* or a finite "
                                    r"negative number"),
    ({"hidden_act": "swiglu"}, r"hidden_act='swiglu'; expected one of"),
    ({"hidden_dropout_prob": 1.5}, r"`hidden_dropout_prob` must be a probability"),
])
def test_bad_configs_raise_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        MobileBertConfig(**changes)


def test_bad_config_files_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**GOOGLE_JSON[OPT], "normalization_type": "group_norm"}))
    with pytest.raises(ValueError, match=rf"{path}: normalization_type='group_norm'"):
        load_config(path)
    with pytest.raises(ValueError, match="model_type='bert', expected 'mobilebert'"):
        MobileBertConfig.from_dict({**GOOGLE_JSON[OPT], "model_type": "bert"})
    with pytest.raises(ValueError, match=r"missing required field\(s\) \['vocab_size'\]"):
        MobileBertConfig.from_dict({k: v for k, v in GOOGLE_JSON[OPT].items() if k != "vocab_size"})

"""MobileBERT (OPT, TINY) and its IB-BERT teacher against HF transformers' PyTorch modules.

Widths are the presets' own; only the number of layers is reduced (to 3) to keep the test fast.
HF models are randomly initialised with a fixed seed and every tensor is perturbed, so NoNorm
scales, biases and the bottlenecks are all exercised."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import transformers

from flaxbert import Model, abstract_params, count_params, get_config, init_params
from flaxbert.mobilebert import MobileBertConfig
from flaxbert.params import flatten
from flaxbert.pretrained import from_pretrained, save_pretrained

TOL = 1e-4
PRESETS = ["mobilebert", "mobilebert_tiny", "ib_bert"]


def hf_config(preset: str, layers: int = 3, **changes) -> transformers.MobileBertConfig:
    ours = dataclasses.asdict(get_config(preset))
    ours.pop("extra")
    ours.pop("attention_mask_value")
    ours.update(num_hidden_layers=layers, **changes)
    return transformers.MobileBertConfig(**ours)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return transformers.BertTokenizerFast(str(minilm_dir / "vocab.txt"))


@pytest.fixture(scope="module")
def batch(tokenizer, movie_sentences):
    return dict(tokenizer(movie_sentences[3:11], padding=True, return_tensors="np"))


def saved_hf_model(tmp_path, preset, **changes):
    torch.manual_seed(0)
    model = transformers.MobileBertForPreTraining(hf_config(preset, **changes)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    return model


@pytest.mark.parametrize("preset", PRESETS)
def test_matches_transformers(tmp_path, preset, batch):
    hf_model = saved_hf_model(tmp_path, preset)
    model, params, _ = from_pretrained(tmp_path, tokenizer=False)
    assert model.config.model_type == "mobilebert" and set(model.heads) == {"mlm", "nsp"}
    positions = np.tile(np.arange(1, 6), (len(batch["input_ids"]), 1)).astype(np.int32)
    ours = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                       batch["token_type_ids"], positions)
    with torch.no_grad():
        theirs = hf_model(**{k: torch.tensor(v) for k, v in batch.items()},
                          output_hidden_states=True)
    mask = batch["attention_mask"][..., None]
    hidden = theirs.hidden_states
    assert np.max(np.abs((np.asarray(ours["embedding_output"]) - hidden[0].numpy()) * mask)) <= TOL
    for i, layer in enumerate(ours["encoder_outputs"]):
        assert np.max(np.abs((np.asarray(layer) - hidden[i + 1].numpy()) * mask)) <= TOL, i
    mlm = np.take_along_axis(theirs.prediction_logits.numpy(), positions[..., None], axis=1)
    assert np.max(np.abs(np.asarray(ours["mlm_logits"]) - mlm)) <= TOL
    assert np.max(np.abs(np.asarray(ours["nsp_logits"]) - theirs.seq_relationship_logits.numpy())) <= TOL
    # pooled output: HF's pooler returns the [CLS] state when classifier_activation is false
    base = transformers.MobileBertModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        pooled = base(**{k: torch.tensor(v) for k, v in batch.items()}).pooler_output.numpy()
    assert np.max(np.abs(np.asarray(ours["pooled_output"]) - pooled)) <= TOL


def test_round_trip_is_exact(tmp_path, batch):
    saved_hf_model(tmp_path / "hf", "mobilebert", classifier_activation=True)
    model, params, _ = from_pretrained(tmp_path / "hf", tokenizer=False)
    save_pretrained(tmp_path / "ours", model, params)
    hf_model, info = transformers.MobileBertForPreTraining.from_pretrained(
        tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    _, again, _ = from_pretrained(tmp_path / "ours", tokenizer=False)
    a, b = flatten(params), flatten(again)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


def test_opt_parameter_count_equals_transformers():
    ours = count_params(abstract_params(Model(get_config("mobilebert"), heads=("mlm", "nsp"))))
    hf = transformers.MobileBertForPreTraining(hf_config("mobilebert", layers=24))
    theirs = sum(p.numel() for p in hf.parameters())
    assert ours == theirs == 36_597_564  # 24.6M backbone + 11.7M extra MLM output weights + NSP
    backbone = count_params(abstract_params(Model(get_config("mobilebert"))))
    assert round(backbone / 1e6, 1) == 24.6


def test_bf16_forward_backward_is_finite_and_close(batch):
    config = get_config("mobilebert").replace(num_hidden_layers=6)
    model32 = Model(config, heads=("mlm",))
    model16 = Model(config, heads=("mlm",), dtype=jnp.bfloat16)
    params = init_params(model32, 0)
    positions = np.tile(np.arange(1, 6), (len(batch["input_ids"]), 1)).astype(np.int32)
    targets = np.take_along_axis(batch["input_ids"], positions, axis=1)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], positions)

    def loss(p, model):
        logits = model.apply({"params": p}, *args)["mlm_logits"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    value, grads = jax.value_and_grad(loss)(params, model16)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(g, np.float32))) for g in jax.tree_util.tree_leaves(grads))
    out32 = np.asarray(model32.apply({"params": params}, *args)["sequence_output"], np.float64)
    out16 = np.asarray(model16.apply({"params": params}, *args)["sequence_output"].astype(jnp.float32), np.float64)
    cos = np.sum(out32 * out16, -1) / np.linalg.norm(out32, axis=-1) / np.linalg.norm(out16, axis=-1)
    assert cos[batch["attention_mask"] == 1].min() >= 0.99
    assert model16.apply({"params": params}, *args)["mlm_logits"].dtype == jnp.float32


def test_a_gradient_step_lowers_the_mlm_loss(batch):
    model = Model(get_config("mobilebert").replace(num_hidden_layers=2), heads=("mlm",))
    params = init_params(model, 1)
    positions = np.tile(np.arange(1, 6), (len(batch["input_ids"]), 1)).astype(np.int32)
    targets = np.take_along_axis(batch["input_ids"], positions, axis=1)

    def loss(p):
        logits = model.apply({"params": p}, batch["input_ids"], batch["attention_mask"],
                             batch["token_type_ids"], positions)["mlm_logits"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    tx = optax.adam(1e-3)
    state = tx.init(params)
    before = float(loss(params))
    for _ in range(3):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < before - 0.1


def test_tf_mask_value_changes_only_padded_batches(batch):
    """HF gives padded keys zero attention; the TF original's −6 leaves them e^-6-ish weight."""
    config = get_config("mobilebert").replace(num_hidden_layers=2)
    params = init_params(Model(config), 0)
    hf_like, tf_like = Model(config), Model(config.replace(attention_mask_value=-6.0))
    full = {k: v[:1, :int(batch["attention_mask"][0].sum())] for k, v in batch.items()}
    for inputs, padded in ((full, False), (batch, True)):
        a, b = (m.apply({"params": params}, inputs["input_ids"], inputs["attention_mask"],
                        output_attentions=True) for m in (hf_like, tf_like))
        pad_keys = inputs["attention_mask"][:, None, None, :] == 0
        probs_a, probs_b = np.asarray(a["attention_probs"][0]), np.asarray(b["attention_probs"][0])
        assert np.all(np.where(pad_keys, probs_a, 0) == 0)
        assert np.any(np.where(pad_keys, probs_b, 0) > 1e-4) == padded
        if not padded:
            np.testing.assert_array_equal(a["sequence_output"], b["sequence_output"])


def test_bad_configs():
    with pytest.raises(ValueError, match="normalization_type='batch_norm'"):
        MobileBertConfig(normalization_type="batch_norm")
    with pytest.raises(ValueError, match=r"attention width \(intra_bottleneck_size\)=130 is not "
                                         r"divisible by num_attention_heads=4"):
        MobileBertConfig(intra_bottleneck_size=130)
    with pytest.raises(ValueError, match="embedding_size=600 exceeds hidden_size=512"):
        MobileBertConfig(embedding_size=600)

"""distill/optim.py: schedules (BERT's warmup + decay, MobileBERT's per-stage restart), the weight
decay mask, clipping, and Google's LAMB (no trust ratio / decay for LayerNorm and biases)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from distill import defaults
from distill.optim import decay_mask, make_optimizer, schedule, stage_schedule
from flaxbert.params import stack_layers


def _params(scan=False, layers=1):
    """A real (tiny) BERT with an MLM head, unboxed: the names the optimizer sees in training."""
    from distill.models import ModelSpec
    cfg = defaults.model("tiny", scan_layers=scan, overrides={
        "vocab_size": 64, "max_position_embeddings": 16, "num_hidden_layers": layers,
        "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2})
    init = jax.jit(lambda rng: nn.unbox(ModelSpec(cfg, ("mlm",)).init_params(rng)))
    return init(jax.random.PRNGKey(0))


def _grads_like(params, seed):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return tree.unflatten([jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _flat(tree):
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _norm_or_bias(name):
    leaf = name.split("/")[-1]
    return leaf in ("bias", "scale", "output_bias")


def test_warmup_then_linear_decay_endpoints():
    lr = schedule(defaults.optimizer(lr=1e-3, warmup_steps=10), 110)
    np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110), lr(200)],
                               [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    # warmup_fraction of num_steps when warmup_steps is unset
    frac = schedule(defaults.optimizer(lr=1e-3, warmup_fraction=0.25), 40)
    np.testing.assert_allclose([frac(5), frac(10), frac(25), frac(40)],
                               [5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)


def test_polynomial_and_constant_schedules():
    poly = schedule(defaults.optimizer(lr=1e-3, warmup_steps=0, schedule="polynomial",
                                       power=2.0), 100)
    np.testing.assert_allclose([poly(0), poly(50), poly(100)], [1e-3, 1e-3 * 0.5 ** 2, 0.0],
                               atol=1e-9)
    const = schedule(defaults.optimizer(lr=1e-3, warmup_steps=4, schedule="constant"), 100)
    np.testing.assert_allclose([const(2), const(4), const(99)], [5e-4, 1e-3, 1e-3], atol=1e-9)


def test_bad_schedule_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"optimizer.warmup_steps=20 must be within \[0, 10\]"):
        schedule(defaults.optimizer(warmup_steps=20), 10)
    with pytest.raises(ValueError, match=r"optimizer.schedule='cosine'; expected linear"):
        make_optimizer(defaults.optimizer(schedule="cosine"), 10, stage_steps=5)
    with pytest.raises(ValueError, match=r"optimizer.name='adam'; expected adamw, lamb or sgd"):
        make_optimizer(defaults.optimizer(name="adam"), 10)


def test_decay_mask_excludes_layer_norm_and_biases_of_a_real_model():
    mask = _flat(decay_mask(_params()))
    assert any("LayerNorm" in k or "layer_norm" in k.lower() for k in mask), sorted(mask)
    for name, decays in mask.items():
        assert decays == (not _norm_or_bias(name)), name
    assert sum(mask.values()) >= 8 and sum(not v for v in mask.values()) >= 8  # both kinds seen


def test_adamw_decays_only_the_masked_leaves():
    """With a zero gradient Adam's direction is 0, so the update is −lr·λ·w exactly where BERT
    decays and 0 on LayerNorm and biases."""
    params = _params()
    params = jax.tree_util.tree_map(lambda x: x + 0.5, params)  # biases non-zero too
    opt = defaults.optimizer(lr=1e-2, weight_decay=0.1, schedule="constant", warmup_steps=0,
                             clip_norm=None)
    tx, _ = make_optimizer(opt, 10)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
    for name, u in _flat(updates).items():
        w = _flat(params)[name]
        expected = np.zeros_like(w) if _norm_or_bias(name) else -1e-2 * 0.1 * w
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-9, err_msg=name)


def test_global_norm_clipping():
    params = {"w": jnp.zeros(4), "v": jnp.zeros(3)}
    opt = defaults.optimizer(name="sgd", lr=0.1, schedule="constant", warmup_steps=0,
                             clip_norm=1.0)
    tx, _ = make_optimizer(opt, 10)
    big = {"w": jnp.array([3.0, 0.0, 0.0, 0.0]), "v": jnp.array([0.0, 4.0, 0.0])}  # norm 5
    updates, _ = tx.update(big, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.1 * 3 / 5, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(updates["v"], [0, -0.1 * 4 / 5, 0], rtol=1e-6)
    small = jax.tree_util.tree_map(lambda g: g / 10, big)  # norm 0.5: left as it is
    updates, _ = tx.update(small, tx.init(params), params)
    np.testing.assert_allclose(updates["v"], [0, -0.1 * 0.4, 0], rtol=1e-6)


def test_lamb_skips_trust_ratio_and_decay_for_layer_norm_and_biases():
    """Two LAMB steps on a real model. LayerNorm/bias leaves: exactly Adam's −lr·m̂/(√v̂+ε).
    Kernels/embeddings: −lr·r·(m̂/(√v̂+ε) + λw) with r = ‖w‖/‖m̂/(√v̂+ε) + λw‖."""
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-6, 0.01
    params = _params()
    opt = defaults.optimizer(name="lamb", lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=wd,
                             schedule="constant", warmup_steps=0, clip_norm=None)
    tx, _ = make_optimizer(opt, 10)
    g1, g2 = _grads_like(params, 1), _grads_like(params, 2)
    state = tx.init(params)
    _, state = jax.jit(tx.update)(g1, state, params)
    updates, _ = jax.jit(tx.update)(g2, state, params)
    w, g1, g2, updates = _flat(params), _flat(g1), _flat(g2), _flat(updates)
    ratios = []
    for name, u in updates.items():
        m = (1 - b1) * (b1 * g1[name] + g2[name]) / (1 - b1 ** 2)
        v = (1 - b2) * (b2 * g1[name] ** 2 + g2[name] ** 2) / (1 - b2 ** 2)
        adam = m / (np.sqrt(v) + eps)
        if _norm_or_bias(name):
            np.testing.assert_allclose(u, -lr * adam, rtol=1e-5, atol=1e-8, err_msg=name)
        else:
            direction = adam + wd * w[name]
            ratio = np.linalg.norm(w[name]) / np.linalg.norm(direction)
            np.testing.assert_allclose(u, -lr * ratio * direction, rtol=1e-4, atol=1e-9,
                                       err_msg=name)
            ratios.append(ratio)
    assert max(abs(r - 1) for r in ratios) > 0.5  # the ratio really is applied to the kernels


def test_lamb_takes_one_trust_ratio_per_layer_of_a_scanned_stack():
    """LAMB on the scanned stack ('layers' axis) equals LAMB on the unrolled layers, stacked."""
    params = _params(layers=3)
    grads = _grads_like(params, 3)
    opt = defaults.optimizer(name="lamb", lr=1e-2, schedule="constant", warmup_steps=0)
    tx, _ = make_optimizer(opt, 10)
    unrolled, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    stacked_params, stacked_grads = stack_layers(params), stack_layers(grads)
    scanned_model = jax.eval_shape(lambda: _params(scan=True, layers=3))
    assert _flat(stacked_params).keys() == _flat(scanned_model).keys()
    scanned, _ = jax.jit(tx.update)(stacked_grads, tx.init(stacked_params), stacked_params)
    expected = _flat(stack_layers(unrolled))
    for name, u in _flat(scanned).items():
        np.testing.assert_allclose(u, expected[name], rtol=1e-5, atol=1e-9, err_msg=name)


def _background(t, S):
    """MobileBERT's get_background_lr (distill_util.py), written out: tf.train.polynomial_decay
    (a, t, S, end=b, power=p) = (a − b)·(1 − t/S)^p + b, and background = the min of
    decay(1.0 → 0.9, p = 0.5) and decay(0.0 → 10.0, p = 1), at t = step mod S."""
    sqrt_decay = (1.0 - 0.9) * (1 - t / S) ** 0.5 + 0.9
    ramp = (0.0 - 10.0) * (1 - t / S) ** 1.0 + 10.0
    return min(sqrt_decay, ramp)


def test_stage_schedule_matches_mobilebert_by_hand():
    """S = 50 steps per stage, peak 2e-3. At chosen steps of chosen stages, by hand from the
    original's definition (`_background`, the literal arithmetic on the right):"""
    peak, S = 2e-3, 50
    lr = stage_schedule(defaults.optimizer(lr=peak), S)
    by_hand = {
        0: 0.0,                                              # stage 0, t = 0: ramp 0
        3: peak * 10 * 3 / 50,                               # stage 0, warming up: 0.6
        2 * S + 5: peak * (0.9 + 0.1 * math.sqrt(1 - 5 / 50)),   # stage 2, t = 5: ramp 1 > decay
        3 * S + 25: peak * (0.9 + 0.1 * math.sqrt(1 - 25 / 50)),  # stage 3, mid-stage
        1 * S + 49: peak * (0.9 + 0.1 * math.sqrt(1 - 49 / 50)),  # stage 1, its last step
        4 * S: 0.0,                                          # stage 4 restarts from 0
        23 * S + 4: peak * 10 * 4 / 50,                      # stage 23 warms up like stage 0
    }
    for step, expected in by_hand.items():
        np.testing.assert_allclose(lr(step), expected, rtol=1e-6, atol=1e-12, err_msg=step)
        np.testing.assert_allclose(lr(step), peak * _background(step % S, S), rtol=1e-6,
                                   atol=1e-12, err_msg=step)
    # a stage length with no exact tenth: the ramp is 10·t/S, not a rounded warmup
    odd = stage_schedule(defaults.optimizer(lr=1.0), 37)
    for step in (37 + 2, 5 * 37 + 3, 2 * 37 + 4, 3 * 37 + 30):
        np.testing.assert_allclose(odd(step), _background(step % 37, 37), rtol=1e-6, err_msg=step)


def test_make_optimizer_restarts_the_warmup_every_stage():
    """Through make_optimizer (as the trainer builds it): with stage_steps the first update of
    every stage is 0 and the top stage reaches the peak (under the global schedule stage 4 of 5
    would train at ≤ 0.25 × peak); `constant` opts out."""
    opt = defaults.optimizer(name="sgd", lr=0.1, clip_norm=None)
    tx, lr = make_optimizer(opt, 100, stage_steps=20)
    params, grads = {"w": jnp.zeros(2)}, {"w": jnp.ones(2)}
    state = tx.init(params)
    for step in range(100):
        updates, state = tx.update(grads, state, params)
        if step % 20 == 0:
            np.testing.assert_array_equal(updates["w"], 0.0, err_msg=step)
        if step == 80 + 1:
            np.testing.assert_allclose(updates["w"], -0.1 * 10 * 1 / 20, rtol=1e-6)  # ramp 0.5
    global_lr = schedule(opt, 100)
    assert max(global_lr(s) for s in range(80, 100)) <= 0.1 * 0.25
    assert float(lr(82)) == pytest.approx(0.1 * min(1.0, 0.9 + 0.1 * math.sqrt(1 - 2 / 20)))
    _, constant = make_optimizer(defaults.optimizer(schedule="constant", warmup_steps=0, lr=0.1),
                                 100, stage_steps=20)
    assert float(constant(40)) == pytest.approx(0.1)

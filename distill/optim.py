"""Optimizers and learning-rate schedules as in BERT: AdamW (or Google's LAMB) with linear warmup,
then linear or polynomial decay, no weight decay on LayerNorm parameters and biases, and
global-norm gradient clipping; and MobileBERT's progressive-transfer schedule, whose warmup
restarts in every stage."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def _names(path) -> tuple[str, ...]:
    """The dict keys of a pytree path (box attributes such as `.value` dropped)."""
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def _decays(names: tuple[str, ...]) -> bool:
    # TF BERT/MobileBERT exclude "LayerNorm", "layer_norm", "FakeLayerNorm" (NoNorm) and "bias";
    # here norms (LayerNorm and NoNorm) hold `scale`/`bias`, the MLM head `output_bias`.
    leaf = names[-1] if names else ""
    return leaf not in ("bias", "scale") and not leaf.endswith("_bias")


def decay_mask(params) -> Any:
    """True for kernels and embeddings; False for biases and norm scales/offsets (BERT's rule)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _decays(_names(path)), params)


def scale_by_layer_trust_ratio() -> optax.GradientTransformation:
    """LAMB's trust ratio as Google's LAMB applies it (mobilebert/lamb_optimizer.py).

    u ← u · ‖w‖ / ‖u‖ per weight matrix (1 where either norm is 0), skipped for biases and norm
    parameters (`exclude_from_layer_adaptation` = the weight-decay exclusions there). Leaves of a
    scanned layer stack (under a `layers` module, leading axis = layer) take one ratio per layer,
    as the unrolled stack would; `optax.scale_by_trust_ratio` would take one for the whole stack
    and apply it to biases and LayerNorm too."""

    def scale(path, update, param):
        names = _names(path)
        if not _decays(names):
            return update
        axes = tuple(range(1, param.ndim)) if "layers" in names[:-1] else None
        w_norm = jnp.sqrt(jnp.sum(jnp.square(param), axis=axes, keepdims=axes is not None))
        u_norm = jnp.sqrt(jnp.sum(jnp.square(update), axis=axes, keepdims=axes is not None))
        ratio = jnp.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
        return update * ratio.astype(update.dtype)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("LAMB's trust ratio needs the params: call tx.update(g, s, params)")
        return jax.tree_util.tree_map_with_path(scale, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def lamb(learning_rate, b1: float, b2: float, eps: float, weight_decay: float
         ) -> optax.GradientTransformation:
    """Google's LAMB: Adam direction m̂/(√v̂+ε) + λ·w (λ only where BERT decays), times the layer
    trust ratio (not for biases and norms), times the learning rate. Unlike the TF original the
    moments are bias-corrected (as in the LAMB paper and optax); with b2 = 0.999 that changes only
    the first ~1000 steps' scale, which the trust ratio mostly absorbs."""
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        scale_by_layer_trust_ratio(),
        optax.scale_by_learning_rate(learning_rate),
    )


def _warmup_steps(opt, steps: int) -> float:
    """`warmup_steps` if set, else `warmup_fraction` of `steps`; checked to lie in [0, steps]."""
    warmup = (opt.warmup_steps if opt.get("warmup_steps") is not None
              else opt.get("warmup_fraction", 0.0) * steps)
    if not 0 <= warmup <= steps:
        raise ValueError(f"optimizer.warmup_steps={warmup} must be within [0, {steps}] (the "
                         f"steps it warms up over)")
    return warmup


def schedule(opt, num_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then `linear` / `polynomial` (power) decay to 0, or `constant`."""
    warmup = int(round(_warmup_steps(opt, num_steps)))
    decay_steps = max(num_steps - warmup, 1)
    if opt.schedule == "constant":
        after = optax.constant_schedule(opt.lr)
    elif opt.schedule in ("linear", "polynomial"):
        power = 1.0 if opt.schedule == "linear" else opt.get("power", 1.0)
        after = optax.polynomial_schedule(opt.lr, 0.0, power, decay_steps)
    else:
        raise ValueError(f"optimizer.schedule={opt.schedule!r}; expected linear, polynomial or "
                         f"constant")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, opt.lr, warmup), after], [warmup])


def stage_schedule(opt, stage_steps: int) -> optax.Schedule:
    """MobileBERT's progressive-transfer learning rate: the same warmup and decay in every stage.

    With t = step mod stage_steps (S), W the warmup (`warmup_steps`, else `warmup_fraction`·S),
    d = `stage_decay_to`, p = `stage_decay_power`:

        lr(step) = lr · min(t / W,  d + (1 − d)·(1 − t/S)^p)

    google-research mobilebert/distill_util.py `get_background_lr` with S = num_train_steps //
    total_warmup_phases: min(10·t/S, 0.9 + 0.1·√(1 − t/S)), i.e. the defaults W = S/10, d = 0.9,
    p = 0.5. The original multiplies it by 3 × learning_rate for the layer of the current stage
    (`layer_wise_learning_rate`) and by 0.1 of that for the layers below; here `lr` is that stage
    peak and the lower layers' scale is the task's `update_mask`. Steps past the last stage start
    another warmup, as the original's `mod` does."""
    if stage_steps < 1:
        raise ValueError(f"stage_steps={stage_steps} must be >= 1")
    warmup = _warmup_steps(opt, stage_steps)
    decay_to, power = opt.get("stage_decay_to", 0.9), opt.get("stage_decay_power", 0.5)

    def lr(step):
        frac = jnp.mod(step, stage_steps).astype(jnp.float32) / stage_steps
        shape = decay_to + (1.0 - decay_to) * (1.0 - frac) ** power
        if warmup > 0:
            shape = jnp.minimum(frac * (stage_steps / warmup), shape)
        return opt.lr * shape

    return lr


def make_optimizer(opt, num_steps: int, trainable_mask=None, stage_steps: int = 0
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer a config's `optimizer` block describes, and its schedule.

    `trainable_mask` (a pytree of bools like the params) freezes the False leaves: they get zero
    updates and no optimizer state (progressive transfer, frozen embeddings). `stage_steps` > 0
    (progressive transfer) restarts the warmup and decay every `stage_steps` steps
    (`stage_schedule`) unless `schedule` is `constant`. `schedule_steps` (when set) is the length
    the schedule spans instead of `num_steps`: a run that stops part-way through a longer schedule
    (BERT's 128-token phase, which a 512-token run continues)."""
    lr = schedule(opt, int(opt.get("schedule_steps") or num_steps))
    if stage_steps and opt.schedule != "constant":
        lr = stage_schedule(opt, stage_steps)
    if opt.name == "adamw":
        core = optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                           mask=decay_mask)
    elif opt.name == "lamb":
        core = lamb(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
    elif opt.name == "sgd":
        core = optax.sgd(lr)
    else:
        raise ValueError(f"optimizer.name={opt.name!r}; expected adamw, lamb or sgd")
    chain = [optax.clip_by_global_norm(opt.clip_norm)] if opt.get("clip_norm") else []
    tx = optax.chain(*chain, core)
    if trainable_mask is not None:
        labels = jax.tree_util.tree_map(lambda t: "train" if t else "freeze", trainable_mask)
        tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
    return tx, lr

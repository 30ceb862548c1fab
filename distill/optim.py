"""Optimizers and learning-rate schedules as in BERT: AdamW (or LAMB) with linear warmup, then
linear or polynomial decay, no weight decay on LayerNorm parameters and biases, and global-norm
gradient clipping."""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import traverse_util


def decay_mask(params) -> Any:
    """True for kernels and embeddings; False for biases and norm scales/offsets (BERT's rule)."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {path: path[-1] not in ("bias", "scale") and not path[-1].endswith("_bias")
         for path in flat})


def schedule(opt, num_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then `linear` / `polynomial` (power) decay to 0, or `constant`."""
    warmup = int(opt.warmup_steps if opt.get("warmup_steps") is not None
                 else round(opt.get("warmup_fraction", 0.0) * num_steps))
    if not 0 <= warmup <= num_steps:
        raise ValueError(f"optimizer.warmup_steps={warmup} must be within [0, num_steps={num_steps}]")
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


def make_optimizer(opt, num_steps: int, trainable_mask=None) -> tuple[optax.GradientTransformation,
                                                                        optax.Schedule]:
    """The optimizer a config's `optimizer` block describes, and its schedule.

    `trainable_mask` (a pytree of bools like the params) freezes the False leaves: they get zero
    updates and no optimizer state (progressive transfer, frozen embeddings)."""
    lr = schedule(opt, num_steps)
    if opt.name == "adamw":
        core = optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                           mask=decay_mask)
    elif opt.name == "lamb":
        core = optax.lamb(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                          mask=decay_mask)
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

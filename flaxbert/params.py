"""Parameters as plain pytrees: initialisation, logical axes, counting and flat paths."""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


def dummy_inputs(model, batch: int = 1, seq_length: int = 8) -> dict[str, jax.Array]:
    ids = jnp.zeros((batch, seq_length), jnp.int32)
    inputs = {"input_word_ids": ids, "input_mask": jnp.ones_like(ids), "input_type_ids": ids}
    if "mlm" in model.heads:
        inputs["masked_lm_positions"] = jnp.zeros((batch, 2), jnp.int32)
    return inputs


def _boxed_init(model, rng):
    return model.init(rng, **dummy_inputs(model))["params"]


def init_params(model, rng: jax.Array | int = 0,
                keep: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Random parameters (the config's initializers) as a plain, unboxed pytree. With `keep`, a
    predicate on flattened names ("backbone/embeddings/..."), only those are returned, and only they
    are computed (XLA drops the rest): a fresh head for a loaded model costs the head alone."""
    if isinstance(rng, int):
        rng = jax.random.PRNGKey(rng)
    if keep is None:
        return nn.unbox(jax.jit(_boxed_init, static_argnums=0)(model, rng))

    def kept(rng):
        params = flatten(nn.unbox(_boxed_init(model, rng)))
        return unflatten({name: value for name, value in params.items() if keep(name)})
    return jax.jit(kept)(rng)


def abstract_params(model) -> dict[str, Any]:
    """ShapeDtypeStructs of the parameters, without computing anything."""
    return nn.unbox(jax.eval_shape(functools.partial(_boxed_init, model), jax.random.PRNGKey(0)))


def logical_axes(model) -> dict[str, Any]:
    """A pytree of `PartitionSpec`s in logical axis names, matching the parameters."""
    boxed = jax.eval_shape(functools.partial(_boxed_init, model), jax.random.PRNGKey(0))
    return nn.get_partition_spec(boxed)


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def flatten(params, sep: str = "/") -> dict[str, Any]:
    """{'backbone/layer_0/attention/query/kernel': array, ...}"""
    return traverse_util.flatten_dict(params, sep=sep)


def unflatten(flat: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    return traverse_util.unflatten_dict(flat, sep=sep)


def stack_layers(params: dict[str, Any]) -> dict[str, Any]:
    """`backbone/layer_{i}/...` → `backbone/layers/...` with a leading layer axis: the layout of
    a model built with `scan_layers=True`. Checkpoint formats keep per-layer names."""
    backbone = dict(params["backbone"])
    count = sum(1 for key in backbone if key.startswith("layer_"))
    layers = [backbone.pop(f"layer_{i}") for i in range(count)]
    backbone["layers"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *layers)
    return {**params, "backbone": backbone}


def unstack_layers(params: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `stack_layers`."""
    backbone = dict(params["backbone"])
    stacked = backbone.pop("layers")
    count = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    for i in range(count):
        backbone[f"layer_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
    return {**params, "backbone": backbone}

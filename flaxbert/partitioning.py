"""Activation sharding hints in logical axis names.

Model code calls `constrain(x, ("batch", "length", "heads", "kv"))` where Megatron / FSDP need a
layout; the caller decides what the names mean by tracing under `activation_rules(table)`
(`distill.sharding.LOGICAL_RULES`, the same table the parameters use) with a mesh set
(`jax.set_mesh`, or `jax.sharding.use_abstract_mesh` while tracing). Without rules or mesh,
`constrain` returns `x` unchanged, so the models run as they are on one device.

Why not flax's `nn.logical_axis_rules`: under it flax also constrains every parameter it unboxes,
including inside the shape check `Module.param` runs at apply time, where DenseGeneral's kernel is
still flat and the constraint fails on its rank. Parameters are placed by the trainer's
in_shardings anyway.
"""

from __future__ import annotations

import contextlib
import math
import threading

import flax.linen as nn
import jax
from jax.sharding import PartitionSpec as P


def devices_along(axes, mesh) -> int:
    """How many devices a PartitionSpec entry (None, a mesh axis or a tuple of them) spans."""
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return math.prod(mesh.shape[name] for name in names)


def fit_spec(spec: P, shape: tuple[int, ...], mesh) -> P:
    """`spec` with the dimensions whose size its mesh axes do not divide left unsplit (e.g. 12
    heads on tensor=8, a 30,522-word vocabulary on tensor=4): parameters must split evenly."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        size = devices_along(axes, mesh)
        fitted.append(axes if size == 1 or dim % size == 0 else None)
    return P(*fitted)


_active = threading.local()


@contextlib.contextmanager
def activation_rules(rules):
    """Within this block, `constrain` maps logical names to mesh axes by `rules` (a flax-style
    ((logical name, mesh axes), ...) table)."""
    previous = getattr(_active, "rules", None)
    _active.rules = tuple(rules)
    try:
        yield
    finally:
        _active.rules = previous


def _rules_and_mesh():
    """The active rules and the current mesh, or (None, None) where either is missing."""
    rules = getattr(_active, "rules", None)
    mesh = jax.sharding.get_abstract_mesh()
    return (rules, mesh) if rules and not mesh.empty else (None, None)


def splits(name: str) -> bool:
    """Whether the active rules split logical axis `name` over more than one device."""
    rules, mesh = _rules_and_mesh()
    if not rules:
        return False
    return devices_along(nn.logical_to_mesh_axes((name,), rules)[0], mesh) > 1


def constrain(x, axes: tuple[str | None, ...]):
    """`x` constrained to the layout the active rules give `axes` on the current mesh (one name
    per dimension of `x`); a no-op outside `activation_rules` or without a mesh."""
    rules, _ = _rules_and_mesh()
    if not rules:
        return x
    spec = nn.logical_to_mesh_axes(axes, rules)
    # Unlike parameters, activations may split unevenly (XLA pads): 12 heads on tensor=8 run as
    # 2 per device on 6 devices, far less than all 12 on every device.
    return jax.lax.with_sharding_constraint(x, spec)

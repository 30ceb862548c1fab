"""The mesh, and the one table that maps logical axis names to mesh axes.

Model code names every weight's axes (`vocab`, `embed`, `heads`, ...) and never a mesh axis; this
file alone decides the layout. Mesh axes: `data` (pure data parallel), `fsdp` (data parallel with
parameters and optimizer state sharded, ZeRO-3 style) and `tensor` (Megatron-style model parallel).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import jax
import numpy as np
import flax.linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    # activations
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("embed_out", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("positions", None),
    ("type_vocab", None),
    ("labels", None),
    ("layers", None),
)


def make_mesh(axes: dict[str, int], devices=None) -> Mesh:
    """A mesh with axes data × fsdp × tensor; one size may be -1 (all remaining devices)."""
    devices = list(jax.devices() if devices is None else devices)
    unknown = set(axes) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh axes {sorted(unknown)} unknown; expected some of {MESH_AXES}")
    sizes = {name: int(axes.get(name, 1)) for name in MESH_AXES}
    fill = [name for name, size in sizes.items() if size == -1]
    if len(fill) > 1:
        raise ValueError(f"mesh: only one axis may be -1, got {fill}")
    known = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if len(devices) % known:
            raise ValueError(f"mesh {axes}: {len(devices)} devices are not divisible by {known}")
        sizes[fill[0]] = len(devices) // known
    total = math.prod(sizes.values())
    if total != len(devices) or any(size < 1 for size in sizes.values()):
        raise ValueError(f"mesh {sizes} needs {total} devices; {len(devices)} are available")
    grid = np.asarray(devices).reshape([sizes[name] for name in MESH_AXES])
    return Mesh(grid, MESH_AXES)


def _fit_spec(spec: P, shape: tuple[int, ...], mesh: Mesh) -> P:
    """Replicates dimensions whose size the mesh axes do not divide (e.g. 2 heads on tensor=4)."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = math.prod(mesh.shape[name] for name in names)
        fitted.append(axes if size == 1 or dim % size == 0 else None)
    return P(*fitted)


def logical_to_sharding(logical_specs, shapes, mesh: Mesh, rules=LOGICAL_RULES):
    """NamedShardings for a pytree of logical PartitionSpecs (from `flaxbert.logical_axes`)."""
    mesh_specs = nn.logical_to_mesh(logical_specs, rules)
    return jax.tree_util.tree_map(
        lambda spec, x: NamedSharding(mesh, _fit_spec(spec, tuple(x.shape), mesh)),
        mesh_specs, shapes, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches are split over the data-parallel axes (data and fsdp) on their leading dim."""
    return NamedSharding(mesh, P(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]

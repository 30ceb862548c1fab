"""The mesh, and the one table that maps logical axis names to mesh axes.

Model code names every weight's axes (`vocab`, `embed`, `heads`, ...) and never a mesh axis; this
file alone decides the layout. Mesh axes: `data` (pure data parallel), `fsdp` (data parallel with
parameters and optimizer state sharded, ZeRO-3 style) and `tensor` (Megatron-style model parallel).

Activations follow the same table: the trainer traces its steps under `traced_in_rules`, where the
models' hints (`flaxbert.partitioning.constrain`) split the batch over data × fsdp, attention heads
and the MLP's hidden units over tensor, and split the sequence of each layer's output over tensor
(sequence parallelism: one all-gather / reduce-scatter pair per Megatron block).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flaxbert.partitioning import activation_rules, fit_spec

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    # activations only (the names below serve parameters and activations alike)
    ("batch", ("data", "fsdp")),
    ("length", None),
    # the residual stream between blocks: its sequence split over tensor (Megatron's sequence
    # parallelism), so layer norms, dropout and the saved activations are not repeated on every
    # tensor device; each block gathers it once and reduce-scatters its output
    ("act_length", "tensor"),
    ("act_embed", None),
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
    """A mesh with axes data × fsdp × tensor; one size may be -1 (all remaining devices).

    Multi-slice (TPU slices over DCN) or multi-node GPU: `dcn_data`, `dcn_fsdp`, `dcn_tensor` give
    how many granules (slices; processes where devices have no slice) each axis spans; `data`,
    `fsdp`, `tensor` then size the fast interconnect within one granule, and each mesh axis is
    dcn × ici long, with the granules outermost.
    """
    devices = list(jax.devices() if devices is None else devices)
    dcn_names = tuple(f"dcn_{name}" for name in MESH_AXES)
    unknown = set(axes) - set(MESH_AXES) - set(dcn_names)
    if unknown:
        raise ValueError(f"mesh axes {sorted(unknown)} unknown; expected some of "
                         f"{MESH_AXES + dcn_names}")
    dcn = [int(axes.get(name, 1)) for name in dcn_names]
    granules = math.prod(dcn)
    if any(size < 1 for size in dcn) or len(devices) % granules:
        raise ValueError(f"mesh {dict(axes)}: dcn sizes {dcn} must be >= 1 and divide the "
                         f"{len(devices)} devices")
    ici = _resolve({name: int(axes.get(name, 1)) for name in MESH_AXES},
                   len(devices) // granules, axes)
    if granules == 1:
        grid = np.asarray(devices).reshape(ici)
    else:
        from jax.experimental import mesh_utils
        by_process = len({getattr(d, "slice_index", 0) for d in devices}) == 1  # one slice
        grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices,
                                                    process_is_granule=by_process)
    return Mesh(grid, MESH_AXES)


def _resolve(sizes: dict[str, int], num_devices: int, axes) -> list[int]:
    """Axis sizes with the one -1 filled in, checked against the device count."""
    fill = [name for name, size in sizes.items() if size == -1]
    if len(fill) > 1:
        raise ValueError(f"mesh: only one axis may be -1, got {fill}")
    known = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if num_devices % known:
            raise ValueError(f"mesh {dict(axes)}: {num_devices} devices are not divisible by {known}")
        sizes[fill[0]] = num_devices // known
    total = math.prod(sizes.values())
    if total != num_devices or any(size < 1 for size in sizes.values()):
        raise ValueError(f"mesh {sizes} needs {total} devices; {num_devices} are available")
    return [sizes[name] for name in MESH_AXES]


def logical_to_sharding(logical_specs, shapes, mesh: Mesh, rules=LOGICAL_RULES):
    """NamedShardings for a pytree of logical PartitionSpecs (from `flaxbert.logical_axes`)."""
    mesh_specs = nn.logical_to_mesh(logical_specs, rules)
    return jax.tree_util.tree_map(
        lambda spec, x: NamedSharding(mesh, fit_spec(spec, tuple(x.shape), mesh)),
        mesh_specs, shapes, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches are split over the data-parallel axes (data and fsdp) on their leading dim."""
    return NamedSharding(mesh, P(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


def traced_in_rules(fn, mesh: Mesh):
    """`fn` that, whenever it is traced (jit, lower, eval_shape), runs under LOGICAL_RULES and
    `mesh`, so the models' activation hints take effect however the caller jits it."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with activation_rules(LOGICAL_RULES), jax.sharding.use_abstract_mesh(
                mesh.abstract_mesh):
            return fn(*args, **kwargs)
    return wrapped

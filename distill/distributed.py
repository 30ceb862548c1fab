"""Multi-host start-up: one JAX process per host (TPU VM worker, GPU node), joined by
`jax.distributed.initialize` before anything touches a device.

The `distill` programs take three flags for it (per process, so not part of the saved config):

    --coordinator_address  "host:port" of process 0; empty = detect the cluster (TPU pod, SLURM,
                           Open MPI: JAX reads their environment) or run single-process
    --num_processes        the number of processes (with --coordinator_address)
    --process_id           this process's rank (with --coordinator_address)

Each process then feeds its own rows of every global batch (`trainer.place_batch`), writes its own
checkpoint shards, and only process 0 writes logs, plots and exports. docs/multihost.md shows the
launch commands for a TPU VM pod and for GPU nodes.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np

log = logging.getLogger(__name__)


def _cluster_detected() -> bool:
    """A TPU VM pod slice, or a SLURM / Open MPI launch of more than one task: environments
    `jax.distributed.initialize()` configures itself from."""
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        return True
    return any(int(os.environ.get(name, "1")) > 1
               for name in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"))


def initialize(coordinator_address: str = "", num_processes: int = 1, process_id: int = 0) -> None:
    """Joins the processes of a multi-host job (no-op for a single process). Call it once, first."""
    if jax.distributed.is_initialized() or not (coordinator_address or _cluster_detected()):
        return
    if coordinator_address and (num_processes < 1 or not 0 <= process_id < num_processes):
        raise ValueError(f"--process_id={process_id} with --num_processes={num_processes}; "
                         f"expected num_processes >= 1 and 0 <= process_id < num_processes")
    # CPU processes exchange collectives over gloo (TPU/GPU use their own interconnects).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator_address:
        jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    else:
        jax.distributed.initialize()
    log.info("process %d of %d; %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())


def all_processes_agree(ok: bool) -> bool:
    """True when `ok` holds on every process (collective when there are several)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils
    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def host_copy(tree):
    """A full numpy copy of a (possibly multi-host sharded) pytree on every process. Collective:
    all processes must call it."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)

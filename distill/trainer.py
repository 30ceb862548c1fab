"""The trainer shared by pre-training, fine-tuning and distillation.

A *task* says what is trained and how it is scored; the trainer does everything else: the mesh,
parameter / optimizer-state / batch shardings from the logical-axis rules, one jitted train step
(gradient accumulation inside), periodic evaluation, metrics (metrics.jsonl, TensorBoard, a
progress bar), orbax checkpoints of the full state (params, optimizer, step, RNG, data iterator)
and automatic resume when the same command runs again in the same work directory:

- a checkpoint that cannot be read (damaged or incomplete files), or whose arrays no longer match
  the checksums saved beside them (bytes overwritten in place read back as wrong numbers, not as
  errors), is moved aside to `checkpoints/<step>.damaged-<n>` (never deleted) and training
  resumes from the newest readable one;
- SIGTERM (a preemption notice) or Ctrl-C saves a checkpoint at the next step boundary, on which
  all processes agree, and stops with `Preempted` (the programs exit with `EXIT_PREEMPTED`);
  running the same command again resumes exactly;
- the partial folders of checkpoint writes that never finished (`<step>.orbax-checkpoint-tmp*`,
  left by a kill or a crash) are removed when the trainer starts, before anything is saved;
- a checkpoint write that runs out of space raises `CheckpointWriteFailed` naming the step, the
  free space and the last good checkpoint's size, the step a rerun resumes from, after removing
  its partial folder.

One process writes a work directory at a time: the programs hold its `distill.run_lock`.

Every log line carries the throughput since the previous one (`Throughput`): `tokens_per_sec`
(token slots, padding included), `flops_per_step` from XLA's cost analysis of the compiled step
(all devices) and `mfu` against the peak `trainer.peak_flops` states (0: the known accelerator's
dense bf16 peak from distill/accelerators.py, on a CPU a measured matmul rate); in distillation
also `teacher_flops_per_step` (its forward compiled alone on the same batch shapes),
`student_flops_per_step` (the rest) and `teacher_mfu` / `student_mfu`; a step with gradient
accumulation is counted without its micro-batch loop, which XLA counts once. Evaluations and
checkpoint saves do not count as training time. The end of `fit` logs the run's figures in one
line (without the first log interval: compilation) and keeps them in `throughput`.

The work directory may be a URL (gs://, s3://): paths are `etils.epath` paths throughout.

A task provides:

    init_params(rng) -> boxed params       trainable parameters, with logical axis names
    frozen / frozen_axes                   arrays that are used but never trained (a teacher),
                                           and their logical PartitionSpecs (may be None / {})
    denominators(batch) -> dict            data-only normalisers over the *global* batch (the
                                           trainer adds the current `step`): examples, masked
                                           tokens, or each distillation term's element count
    loss(params, frozen, batch, rng, den)  -> (loss, metrics); both already divided by `den`, so
                                           sums over micro-batches equal the full-batch values
    eval_metrics(params, frozen, batch)    -> {name: (sum, count)}
    trainable_mask(params) (optional)      pytree of bools; False leaves are frozen
    update_mask(step, params) (optional)   pytree of 0/1 multiplying this step's updates
    stage_steps (optional)                 steps per progressive-transfer stage: the learning
                                           rate's warmup and decay restart every stage
                                           (optim.stage_schedule)

The step is pure: `state, metrics = step(state, frozen, batch)`, jitted once with in/out shardings.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from typing import Any, Callable, Iterable, Iterator

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import struct

from distill import sharding
from distill.distributed import all_processes_agree
from distill.files import as_path, is_remote, write_text
from distill.optim import make_optimizer

log = logging.getLogger(__name__)


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is kept."""


#: The exit status of a run stopped by SIGTERM / Ctrl-C after saving its checkpoint
#: (EX_TEMPFAIL: "try again"); schedulers can requeue on it.
EXIT_PREEMPTED = 75


class Preempted(RuntimeError):
    """Training stopped on SIGTERM / SIGINT after saving a checkpoint at `step`."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class CheckpointUnreadable(RuntimeError):
    """No checkpoint of the work directory can be read."""


class CheckpointWriteFailed(RuntimeError):
    """A checkpoint could not be written for lack of space; the message names the step, the
    sizes and the step a rerun resumes from."""


#: What orbax names a checkpoint while it is written (renamed to `<step>` when complete).
PARTIAL_CHECKPOINTS = "*.orbax-checkpoint-tmp*"


def _tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def split_microbatches(batch, k: int):
    """[B, ...] → [k, B/k, ...] taking rows i::k into micro-batch i, so that every micro-batch
    stays spread over all data-parallel devices."""
    return jax.tree_util.tree_map(
        lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)


def make_train_step(task, tx: optax.GradientTransformation, schedule, grad_accum: int):
    """The pure train step for `task` (jit it with shardings)."""

    def step(state: TrainState, frozen, batch):
        rng, step_rng = jax.random.split(state.rng)
        den = {**task.denominators(batch), "step": state.step}
        grad_fn = jax.value_and_grad(task.loss, has_aux=True)
        if grad_accum == 1:
            (loss, metrics), grads = grad_fn(state.params, frozen, batch, step_rng, den)
            metrics = {**metrics, "loss": loss}
        else:
            def micro(carry, inputs):
                index, micro_batch = inputs
                (loss, metrics), grads = grad_fn(state.params, frozen, micro_batch,
                                                 jax.random.fold_in(step_rng, index), den)
                return _tree_add(carry, (grads, {**metrics, "loss": loss})), None

            micro_batches = split_microbatches(batch, grad_accum)
            first = jax.tree_util.tree_map(lambda x: x[0], micro_batches)
            (loss_shape, metric_shapes), grad_shapes = jax.eval_shape(
                grad_fn, state.params, frozen, first, step_rng, den)
            zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                           (grad_shapes, {**metric_shapes, "loss": loss_shape}))
            (grads, metrics), _ = jax.lax.scan(micro, zeros,
                                               (jnp.arange(grad_accum), micro_batches))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        if hasattr(task, "update_mask"):  # e.g. progressive transfer: one layer per stage
            updates = jax.tree_util.tree_map(jnp.multiply, updates,
                                             task.update_mask(state.step, state.params))
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "grad_norm": optax.tree.norm(grads),
                   "learning_rate": schedule(state.step)}
        return TrainState(state.step + 1, params, opt_state, rng), metrics

    return step


def make_eval_step(task):
    def step(params, frozen, batch):
        return task.eval_metrics(params, frozen, batch)
    return step


class MetricWriter:
    """metrics.jsonl + TensorBoard, written by process 0 only. On resume, rows past the restored
    step (written after the last checkpoint) are dropped so the file reads as one straight run.

    A remote work directory (object stores cannot append) gets the whole file rewritten at every
    `flush` (each checkpoint and the end), and no TensorBoard events: tensorboardX writes only
    local folders without extra cloud clients, and metrics.jsonl holds every value."""

    def __init__(self, workdir, resume_step: int):
        self.enabled = jax.process_index() == 0
        self.path = workdir / "metrics.jsonl"
        self.remote = is_remote(workdir)
        self.tb = None
        self.rows: list[str] = []  # remote: the whole file, rewritten by `flush`
        if not self.enabled:
            return
        if self.path.exists():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.rows = [json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= resume_step]
            write_text(self.path, "".join(self.rows))  # atomic: a kill here loses no rows
        if self.remote:
            log.info("TensorBoard events are written for local work directories only; %s holds "
                     "every metric", self.path)
        else:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(os.fspath(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        line = json.dumps({"step": step, **metrics}) + "\n"
        if self.remote:
            self.rows.append(line)
        else:
            with self.path.open("a") as f:
                f.write(line)
        if self.tb is not None:
            for name, value in metrics.items():
                self.tb.add_scalar(name, value, step)

    def flush(self) -> None:
        if self.enabled and self.remote:
            write_text(self.path, "".join(self.rows))  # atomic: a kill here loses no rows

    def close(self):
        self.flush()
        if self.tb is not None:
            self.tb.close()


def read_metrics(workdir) -> list[dict[str, Any]]:
    path = as_path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def place_batch(batch: dict[str, np.ndarray], batch_sharding) -> dict[str, jax.Array]:
    """Host-local numpy batch → global arrays (each process contributes its rows)."""
    return {k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
            for k, v in batch.items()}


class Trainer:
    """Runs a task under a config with blocks `trainer`, `optimizer` and `mesh`."""

    def __init__(self, task, config, workdir):
        self.task, self.config = task, config
        self.workdir = as_path(workdir)
        tcfg = config.trainer
        self.mesh = sharding.make_mesh(dict(config.mesh))
        dp = sharding.data_parallel_size(self.mesh)
        per_step = dp * tcfg.grad_accum_steps
        if tcfg.batch_size % per_step:
            raise ValueError(f"trainer.batch_size={tcfg.batch_size} must be divisible by the "
                             f"data-parallel size × grad_accum_steps = {dp} × "
                             f"{tcfg.grad_accum_steps} = {per_step}")
        if tcfg.batch_size % jax.process_count():
            raise ValueError(f"trainer.batch_size={tcfg.batch_size} must be divisible by the "
                             f"number of processes {jax.process_count()}")
        self.batch_sharding = sharding.batch_sharding(self.mesh)

        rng = jax.random.PRNGKey(tcfg.seed)
        init_rng, self.state_rng = jax.random.split(rng)
        boxed = jax.eval_shape(task.init_params, init_rng)
        mask = task.trainable_mask(nn.unbox(boxed)) if hasattr(task, "trainable_mask") else None
        self.tx, self.schedule = make_optimizer(config.optimizer, tcfg.num_steps, mask,
                                                stage_steps=getattr(task, "stage_steps", 0))

        def init_state(rng_init, rng_state):
            params = task.init_params(rng_init)
            return TrainState(jnp.zeros((), jnp.int32), params, self.tx.init(params), rng_state)

        abstract_boxed = jax.eval_shape(init_state, init_rng, self.state_rng)
        specs = nn.get_partition_spec(abstract_boxed)
        self.abstract_state = nn.unbox(abstract_boxed)
        self.state_sharding = sharding.logical_to_sharding(specs, self.abstract_state, self.mesh)
        self._init_state = jax.jit(lambda a, b: nn.unbox(init_state(a, b)),
                                   out_shardings=self.state_sharding)
        self.init_rng = init_rng

        frozen = getattr(task, "frozen", None) or {}
        frozen_axes = getattr(task, "frozen_axes", None) or {}
        self.frozen_sharding = (sharding.logical_to_sharding(frozen_axes, frozen, self.mesh)
                                if frozen else {})
        # Abstract frozen arrays (ShapeDtypeStructs) are enough for `memory_report`.
        abstract = any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(frozen))
        self.frozen = (jax.device_put(frozen, self.frozen_sharding) if frozen and not abstract
                       else frozen)

        replicated = sharding.replicated(self.mesh)
        self.train_step = jax.jit(
            self.traced_step(tcfg.grad_accum_steps),
            in_shardings=(self.state_sharding, self.frozen_sharding, self.batch_sharding),
            out_shardings=(self.state_sharding, replicated), donate_argnums=(0,))
        self.eval_step = jax.jit(
            sharding.traced_in_rules(make_eval_step(task), self.mesh),
            in_shardings=(self.state_sharding.params, self.frozen_sharding, self.batch_sharding),
            out_shardings=replicated)

        self._predict_steps: dict[int, Any] = {}
        self.last_eval: dict[str, float] = {}
        self.throughput: dict[str, float] = {}  # the last fit's rates (Throughput.summary)
        self._writing: int | None = None  # the step whose checkpoint is written in the background
        self._remove_partial_checkpoints()
        self.checkpoints = ocp.CheckpointManager(
            checkpoint_dir(self.workdir),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=tcfg.keep_checkpoints, enable_async_checkpointing=True,
                create=True),
            item_names=("state", "data", "checksums"))
        self._checksums = jax.jit(state_checksums, out_shardings=replicated)

    # --- state ------------------------------------------------------------------------------
    def initial_state(self) -> TrainState:
        """Random init, or the task's `initial_params` (loaded weights) placed on the mesh."""
        initial = getattr(self.task, "initial_params", None)
        with jax.set_mesh(self.mesh):
            if initial is None:
                return self._init_state(self.init_rng, self.state_rng)
            shardings = self.state_sharding
            params = jax.device_put(initial, shardings.params)
            opt_state = jax.jit(self.tx.init, out_shardings=shardings.opt_state)(params)
            return TrainState(jax.device_put(jnp.zeros((), jnp.int32), shardings.step), params,
                              opt_state, jax.device_put(self.state_rng, shardings.rng))

    def restore(self, data_iter=None) -> TrainState | None:
        """The newest readable checkpoint's state (and data-iterator position), or None. The state
        is restored onto this trainer's mesh and shardings, whatever mesh or process count wrote it.

        A checkpoint that fails to read (overwritten or missing files) while an older one reads is
        damaged: it is moved aside to `<step>.damaged-<n>` with a warning naming the step and the
        error. When none reads, nothing is moved and `CheckpointUnreadable` names the folder."""
        failures: list[tuple[int, str]] = []
        for step in sorted(self.checkpoints.all_steps(), reverse=True):
            try:
                state, error = self._restore_step(step, data_iter), None
            except Exception as e:  # noqa: BLE001 - orbax/tensorstore/json raise many types
                state, error = None, f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
            if not all_processes_agree(error is None):
                failures.append((step, error or "unreadable on another process"))
                continue
            for bad_step, reason in failures:
                self._move_aside(bad_step, reason)
            return state
        if failures:
            listing = "; ".join(f"step {step}: {reason}" for step, reason in failures)
            raise CheckpointUnreadable(
                f"no checkpoint in {self.checkpoints.directory} can be read ({listing}). Nothing "
                f"was moved or deleted; move the folder aside (or use a new --workdir) to start "
                f"from scratch")
        return None

    def state_restore_args(self) -> ocp.args.StandardRestore:
        """Restores a saved TrainState as this trainer lays it out (orbax reshards onto this
        mesh, whatever mesh wrote it)."""
        return ocp.args.StandardRestore(jax.tree_util.tree_map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
            self.abstract_state, self.state_sharding))

    def restore_state(self, step: int, checkpoints=None) -> TrainState:
        """The TrainState of `step` (without the data iterator) from this run's checkpoints, or
        from another run's `checkpoints` manager."""
        checkpoints = checkpoints or self.checkpoints
        return checkpoints.restore(step, args=ocp.args.Composite(
            state=self.state_restore_args())).state

    def _restore_step(self, step: int, data_iter) -> TrainState:
        state_args = self.state_restore_args()
        is_grain = isinstance(data_iter, grain.DatasetIterator)
        own_shard = (as_path(self.checkpoints.directory) / str(step) / "data" /
                     f"process_{jax.process_index()}-of-{jax.process_count()}.json")
        if is_grain and not own_shard.exists():
            # Saved by another number of processes: grain positions are per process, so this
            # host's stream is advanced by the steps already taken instead.
            restored = self.checkpoints.restore(step, args=ocp.args.Composite(state=state_args))
            log.warning("checkpoint %d was written by another number of processes; advancing "
                        "the data stream by %d batches", step, step)
            for _ in range(step):
                next(data_iter)
            return restored.state
        items = dict(state=state_args, data=_data_restore_args(data_iter))
        has_checksums = (as_path(self.checkpoints.directory) / str(step) / "checksums").exists()
        if has_checksums:  # checkpoints written before checksums were saved have none
            items["checksums"] = ocp.args.JsonRestore()
        restored = self.checkpoints.restore(step, args=ocp.args.Composite(**items))
        if has_checksums:
            self._verify(restored.state, restored.checksums)
        if not is_grain and hasattr(data_iter, "set_state"):
            data_iter.set_state(restored.data)
        return restored.state

    def _verify(self, state: TrainState, saved: dict[str, int]) -> None:
        actual = self._checksum_dict(state)
        wrong = [name for name in actual if saved.get(name) != actual[name]]
        if wrong or set(saved) != set(actual):
            raise ValueError(f"{len(wrong)} of {len(actual)} arrays differ from the checksums "
                             f"saved with them ({', '.join(wrong[:4]) or 'the array names differ'})")

    def _checksum_dict(self, state: TrainState) -> dict[str, int]:
        sums = self._checksums(state)
        return {jax.tree_util.keystr(path): int(value)
                for path, value in jax.tree_util.tree_leaves_with_path(sums)}

    def _move_aside(self, step: int, reason: str) -> None:
        """checkpoints/<step> → checkpoints/<step>.damaged-<n> (process 0; the others wait)."""
        folder = as_path(self.checkpoints.directory) / str(step)
        n = 1
        while (aside := folder.parent / f"{step}.damaged-{n}").exists():
            n += 1
        if jax.process_index() == 0:
            folder.rename(aside)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
        self.checkpoints.reload()
        log.warning("checkpoint step %d cannot be read (%s); moved it to %s and resumed from an "
                    "older one", step, reason, aside)

    def save(self, state: TrainState, data_iter, force: bool = False) -> None:
        """Starts writing a checkpoint of `state` (orbax finishes it in the background)."""
        step = int(state.step)
        self.wait_for_checkpoint()  # a failure of the previous write names that step
        with self._explain_full_disk(step):
            self.checkpoints.save(step, force=force, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=_data_save_args(data_iter),
                checksums=ocp.args.JsonSave(self._checksum_dict(state))))
        self._writing = step

    def wait_for_checkpoint(self) -> None:
        """Waits until the checkpoint being written is complete; a write that ran out of space
        raises `CheckpointWriteFailed`."""
        step, self._writing = self._writing, None
        with self._explain_full_disk(step):
            self.checkpoints.wait_until_finished()

    @contextlib.contextmanager
    def _explain_full_disk(self, step: int | None):
        """A full disk while writing checkpoint `step` (orbax reports it from tensorstore as a
        ValueError "RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']", or as
        an OSError) → `CheckpointWriteFailed` saying what the rerun needs; its partial folder is
        removed, so that the rerun does not find the disk full of it."""
        try:
            yield
        except Exception as e:
            if step is None or not _is_disk_full(e):
                raise
            directory = as_path(self.checkpoints.directory)
            free_then = _free_bytes(directory)
            self._remove_partial_checkpoints(sync=False)  # other processes may not have failed
            self.checkpoints.reload()
            good = max((s for s in self.checkpoints.all_steps() if s < step), default=None)
            keep = self.config.trainer.keep_checkpoints
            if good is None:
                last = "no checkpoint was saved before it"
                rerun = "it starts from step 0"
            else:
                size = _folder_bytes(directory / str(good))
                last = (f"the last good checkpoint, step {good}, takes {_human(size)}, and "
                        f"checkpoints need about {keep + 1} × that: {keep} kept "
                        f"(trainer.keep_checkpoints) + the one being written")
                rerun = f"it resumes from step {good}"
            raise CheckpointWriteFailed(
                f"checkpoint step {step} could not be written to {directory}: no space left on "
                f"the device ({_human(free_then)} free; {_human(_free_bytes(directory))} after "
                f"removing its partial folder); {last}. Free some space and rerun the same "
                f"command: {rerun}") from e

    def _remove_partial_checkpoints(self, sync: bool = True) -> None:
        """Removes the `<step>.orbax-checkpoint-tmp*` folders of writes that never finished (a
        kill, a crash, a full disk): never read, they only take space. Process 0 removes, the
        others wait (`sync`)."""
        directory = as_path(checkpoint_dir(self.workdir))
        if jax.process_index() == 0 and directory.is_dir():
            partial = sorted(directory.glob(PARTIAL_CHECKPOINTS))
            for folder in partial:
                folder.rmtree(missing_ok=True) if folder.is_dir() else folder.unlink(missing_ok=True)
            if partial:
                log.warning("removed %s in %s: the partial checkpoint of a write that did not "
                            "finish", ", ".join(p.name for p in partial), directory)
        if sync and jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("partial checkpoints removed")

    def traced_step(self, grad_accum: int):
        """The pure train step over `grad_accum` micro-batches, traced under the rules table
        (activations are laid out like the parameters); jit it with the state's shardings."""
        return sharding.traced_in_rules(
            make_train_step(self.task, self.tx, self.schedule, grad_accum), self.mesh)

    def memory_report(self, batch: dict[str, jax.ShapeDtypeStruct]) -> dict[str, float]:
        """Compiles the train step ahead of time for abstract inputs (nothing is allocated or run)
        and returns XLA's per-device memory figures in bytes, plus the step's FLOPs."""
        def placed(tree, shardings):
            return jax.tree_util.tree_map(
                lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)

        state = placed(self.abstract_state, self.state_sharding)
        frozen = placed(self.frozen, self.frozen_sharding) if self.frozen else {}
        batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_sharding)
                 for k, v in batch.items()}
        with jax.set_mesh(self.mesh):
            compiled = self.train_step.lower(state, frozen, batch).compile()
        memory = compiled.memory_analysis()
        report = {name: float(getattr(memory, f"{name}_size_in_bytes"))
                  for name in ("argument", "output", "temp", "alias", "generated_code")}
        # donated state buffers are reused for the outputs, so they count once
        report["peak"] = report["argument"] + report["output"] + report["temp"] - report["alias"]
        report["flops"] = xla_flops(compiled)
        return report

    # --- loops ------------------------------------------------------------------------------
    def evaluate(self, params, batches: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
        # (sum, count) pairs accumulate on the device and come back once at the end, so the
        # host prepares the next batch while the device runs this one
        totals = None
        with jax.set_mesh(self.mesh):
            for batch in batches:
                sums = self.eval_step(params, self.frozen, place_batch(batch, self.batch_sharding))
                totals = sums if totals is None else jax.tree_util.tree_map(jnp.add, totals, sums)
        totals = jax.device_get(totals) or {}
        return {name: float(total) / max(float(count), 1.0)
                for name, (total, count) in totals.items()}

    def predict(self, params, batches: Iterable[dict[str, np.ndarray]], fn) -> list[dict[str, np.ndarray]]:
        """Host copies of `fn(params, frozen, batch)` (a dict of arrays) for every batch."""
        key = id(fn)
        if key not in self._predict_steps:
            self._predict_steps[key] = jax.jit(
                sharding.traced_in_rules(fn, self.mesh),
                in_shardings=(self.state_sharding.params, self.frozen_sharding,
                              self.batch_sharding),
                out_shardings=sharding.replicated(self.mesh))
        step = self._predict_steps[key]
        with jax.set_mesh(self.mesh):
            return [jax.device_get(step(params, self.frozen, place_batch(b, self.batch_sharding)))
                    for b in batches]

    def fit(self, train_iter: Iterator[dict[str, np.ndarray]],
            evaluate: Callable[[TrainState], dict[str, float]] | None = None) -> TrainState:
        """Trains to `trainer.num_steps`, resuming from the work directory if it has checkpoints.

        `evaluate(state)` runs every `trainer.eval_every` steps and at the end; its results are
        logged with an `eval_` prefix."""
        tcfg = self.config.trainer
        state = self.restore(train_iter)
        resumed = state is not None
        if state is None:
            state = self.initial_state()
        start = int(state.step)
        writer = MetricWriter(self.workdir, start)
        if resumed:
            log.info("resumed from %s at step %d", self.checkpoints.directory, start)
        throughput = Throughput(self)
        progress = progress_bar(tcfg.num_steps, self.workdir.name, start)
        stop = StopRequest()
        try:
            stop.__enter__()
            with jax.set_mesh(self.mesh):
                for step in range(start, tcfg.num_steps):
                    batch = place_batch(next(train_iter), self.batch_sharding)
                    throughput.add(state, batch)  # before the step: it donates `state`
                    state, metrics = self.train_step(state, self.frozen, batch)
                    done = step + 1
                    save_now = done % tcfg.checkpoint_every == 0 or done == tcfg.num_steps
                    if done % tcfg.log_every == 0 or save_now or done == start + 1:
                        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                        if not math.isfinite(metrics["loss"]):
                            raise TrainingDiverged(
                                f"loss became {metrics['loss']} at step {done}; the last good "
                                f"checkpoint (step {self.checkpoints.latest_step()}) is kept in "
                                f"{self.workdir / 'checkpoints'}")
                        metrics.update(throughput.interval())
                        writer.write(done, metrics)
                        progress.set_postfix(loss=f"{metrics['loss']:.4f}")
                    evaluating = evaluate is not None and (done % tcfg.eval_every == 0
                                                           or done == tcfg.num_steps)
                    if evaluating or save_now:  # their time is no training time
                        jax.block_until_ready(state.step)  # the steps so far are
                        paused = time.perf_counter()
                    if evaluating:
                        self.last_eval = evaluate(state)
                        writer.write(done, {f"eval_{k}": v for k, v in self.last_eval.items()})
                        log.info("step %d: %s", done, "  ".join(
                            f"eval_{k}={v:.4f}" for k, v in self.last_eval.items()))
                    if save_now:
                        self.save(state, train_iter, force=done == tcfg.num_steps)
                        writer.flush()
                    if evaluating or save_now:
                        throughput.exclude(time.perf_counter() - paused)
                    progress.update(1)
                    if stop.requested(done) and done < tcfg.num_steps:
                        if not save_now:
                            self.save(state, train_iter, force=True)
                        self.wait_for_checkpoint()
                        raise Preempted(
                            f"stopped by {stop.name} after step {done}; its checkpoint is in "
                            f"{self.checkpoints.directory}. Run the same command again to resume "
                            f"(exit status {EXIT_PREEMPTED})", done)
        finally:
            stop.__exit__()
            try:
                self.wait_for_checkpoint()
            finally:
                progress.close()
                writer.close()
        self.throughput = throughput.summary()
        return state


#: The throughput metrics of a log line (the teacher_/student_ ones in distillation only): they
#: depend on the machine's speed and on how the step compiles, not on what it computes.
THROUGHPUT_METRICS = ("tokens_per_sec", "flops_per_step", "teacher_flops_per_step",
                      "student_flops_per_step", "mfu", "teacher_mfu", "student_mfu")


def step_loops(config) -> dict[str, Any]:
    """The loops a train step of `config` compiles to, as the field changes that write them out:
    gradient accumulation's micro-batch loop (`trainer.grad_accum_steps` > 1 → 1) and scanned
    layers (`model` / `teacher.scan_layers` → False). XLA's cost analysis counts a loop's body once."""
    changes: dict[str, Any] = {}
    if config.trainer.grad_accum_steps > 1:
        changes["trainer.grad_accum_steps"] = 1
    for block in ("model", "teacher"):
        if block in config and config[block].get("scan_layers", False):
            changes[f"{block}.scan_layers"] = False
    return changes


class Throughput:
    """Tokens/s and model FLOPs utilisation of the train steps, from XLA's cost analysis of the
    compiled step (per batch shape: buckets vary them). A distillation step's teacher forward is
    counted apart: the task's `teacher_outputs` compiled alone on the same (micro-)batch shapes
    gives the teacher's FLOPs, the student's are the rest (its forward, backward and update).

    FLOPs count all devices; MFU = FLOPs / (seconds × peak × devices), the peak from
    `accelerators.peak_flops` (trainer.peak_flops, else the known accelerator's, on a CPU a
    measured matmul rate). XLA counts a loop's body once, so with grad_accum_steps > 1 the step
    is counted written out: one pass over the whole batch (the same arithmetic bar the
    micro-batches' gradient sums), lowered and not compiled (a whole batch need not fit the
    device; on the tests' distillation step the lowered module counts 0.25 % under the compiled
    one). With scan_layers the figures count one layer of the scanned stack."""

    def __init__(self, trainer: Trainer):
        from distill import accelerators

        self.trainer = trainer
        self.devices = jax.device_count()
        self.peak, self.peak_source = accelerators.peak_flops(
            jax.devices()[0], float(trainer.config.trainer.get("peak_flops", 0.0)))
        task = trainer.task
        self.teacher = None
        if trainer.frozen and hasattr(task, "teacher_outputs"):
            self.teacher = jax.jit(
                sharding.traced_in_rules(task.teacher_outputs, trainer.mesh),
                in_shardings=(trainer.frozen_sharding, trainer.batch_sharding))
        self.written_out = None  # the step without its micro-batch loop, to count (not to run)
        if trainer.config.trainer.grad_accum_steps > 1:
            self.written_out = jax.jit(trainer.traced_step(1), in_shardings=(
                trainer.state_sharding, trainer.frozen_sharding, trainer.batch_sharding))
        self.costs: dict[tuple, tuple[float, float]] = {}  # batch shapes -> (FLOPs, teacher's)
        # [steps, token slots, FLOPs, teacher FLOPs] since the last log line, and over the log
        # intervals after the first (the run's figures, without the first step's compilation)
        self.since_log, self.log_time = np.zeros(4), time.perf_counter()
        self.run, self.run_seconds, self.first = np.zeros(4), 0.0, True
        if scans := [name for name in step_loops(trainer.config) if "scan_layers" in name]:
            log.warning("%s: XLA's cost analysis counts a loop's body once, so FLOPs per step "
                        "and MFU count one layer of the scanned stack (`distill compile` "
                        "counts the layers written out)", " and ".join(scans))
        if self.peak is None:
            log.warning("no MFU: %s", self.peak_source)

    def step_flops(self, state, batch) -> tuple[float, float]:
        """(FLOPs, teacher FLOPs) of one train step on this batch's shapes, all devices."""
        key = tuple((name, x.shape, str(x.dtype)) for name, x in sorted(batch.items()))
        if key not in self.costs:
            t = self.trainer
            written_out = self.written_out is not None

            def count(jitted, *args) -> float:  # compiled: the call's own lowering, cached
                lowered = jitted.lower(*args)
                return xla_flops(lowered if written_out else lowered.compile())

            with jax.set_mesh(t.mesh):
                total = count(self.written_out if written_out else t.train_step,
                              state, t.frozen, batch)
                teacher = count(self.teacher, t.frozen, batch) if self.teacher is not None else 0.0
            self.costs[key] = (total * self.devices, teacher * self.devices)
        return self.costs[key]

    def add(self, state, batch) -> None:
        """Counts one step on `batch`: its token slots (padding included) and FLOPs."""
        self.since_log += (1, batch["input_word_ids"].size, *self.step_flops(state, batch))

    def exclude(self, seconds: float) -> None:
        """Leaves out of the rates time that trained nothing (an evaluation, a checkpoint)."""
        self.log_time += seconds

    def rates(self, seconds: float, counts) -> dict[str, float]:
        steps, tokens, flops, teacher = counts
        rates = {"tokens_per_sec": tokens / seconds, "flops_per_step": flops / steps}
        if self.teacher is not None:
            rates.update(teacher_flops_per_step=teacher / steps,
                         student_flops_per_step=(flops - teacher) / steps)
        if self.peak is not None:
            capacity = seconds * self.peak * self.devices
            rates["mfu"] = flops / capacity
            if self.teacher is not None:
                rates.update(teacher_mfu=teacher / capacity,
                             student_mfu=(flops - teacher) / capacity)
        return rates

    def interval(self) -> dict[str, float]:
        """The rates since the last log line (called at one: the device has run the steps)."""
        now = time.perf_counter()
        seconds = now - self.log_time
        rates = self.rates(seconds, self.since_log)
        if not self.first:
            self.run += self.since_log
            self.run_seconds += seconds
        self.since_log, self.log_time, self.first = np.zeros(4), now, False
        return rates

    def summary(self) -> dict[str, float]:
        """The rates over the log intervals after the first (no compiling), logged as one line."""
        if not self.run[0]:
            return {}
        rates = self.rates(self.run_seconds, self.run)
        parts = [f"{rates['tokens_per_sec']:,.0f} tokens/s",
                 f"{rates['flops_per_step']:.4g} FLOPs per step"]
        if self.teacher is not None:
            parts[-1] += (f" (student {rates['student_flops_per_step']:.4g}, teacher "
                          f"{rates['teacher_flops_per_step']:.4g})")
        if "mfu" in rates:
            mfu = f"MFU {rates['mfu']:.2%}"
            if self.teacher is not None:
                mfu += f" (student {rates['student_mfu']:.2%}, teacher {rates['teacher_mfu']:.2%})"
            parts.append(f"{mfu} of {self.devices} × {self.peak:.4g} FLOP/s ({self.peak_source})")
        log.info("%s throughput over %d steps: %s", self.trainer.workdir.name,
                 int(self.run[0]), "; ".join(parts))
        return rates


def xla_flops(computation) -> float:
    """XLA's FLOPs count of a compiled or lowered computation (per device)."""
    cost = computation.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def state_checksums(state):
    """One uint32 per array: the sum of its bits, each word weighted by an odd multiplier that
    depends on its position (mod 2^32), so changed bytes and moved words both change it. Computed
    on the sharded arrays, where they live."""
    def checksum(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        x = x.reshape(-1)
        if x.dtype == jnp.bool_:
            x = x.astype(jnp.uint8)
        unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
        words = jax.lax.bitcast_convert_type(x, unsigned).reshape(-1).astype(jnp.uint32)
        weights = jnp.arange(words.size, dtype=jnp.uint32) * jnp.uint32(2654435761) | 1
        return jnp.sum(words * weights, dtype=jnp.uint32)
    return jax.tree_util.tree_map(checksum, state)


def _is_disk_full(error: BaseException | None) -> bool:
    """ENOSPC (or EDQUOT) anywhere in the exception's chain, as an OSError or in the text
    tensorstore gives it."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        if ("No space left on device" in text or "Disk quota exceeded" in text
                or f"os_error_code='{errno.ENOSPC}'" in text):
            return True
        error = error.__cause__ or error.__context__
    return False


def _free_bytes(directory) -> int | None:
    """Free space where `directory` (or its nearest existing parent) lives; None if remote."""
    if is_remote(directory):
        return None
    path = os.fspath(directory)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def _folder_bytes(folder) -> int:
    return sum(_folder_bytes(p) if p.is_dir() else p.stat().length
               for p in as_path(folder).iterdir())


def _human(size: int | None) -> str:
    if size is None:
        return "unknown (remote storage)"
    if size < 1024:
        return f"{size} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"


def checkpoint_dir(workdir):
    """WORKDIR/checkpoints as orbax wants it: absolute when local, the URL itself when remote
    (orbax writes gs:// through tensorstore's GCS driver and google-cloud-storage)."""
    workdir = as_path(workdir)
    return workdir / "checkpoints" if is_remote(workdir) else as_path(
        os.path.abspath(workdir / "checkpoints"))


class StopRequest:
    """SIGTERM (a preemption notice) and SIGINT (Ctrl-C) while training: the loop asks
    `requested(step)` at every step boundary and saves and stops when it says so. A second
    Ctrl-C stops at once (KeyboardInterrupt).

    With several processes the step must be the same everywhere: JAX's preemption sync manager
    (started by `jax.distributed.initialize`) owns SIGTERM, spreads a notice received by any
    process to all, and `multihost_utils.reached_preemption_sync_point(step)` answers True at the
    same step on every process. Ctrl-C on a process is turned into that notice."""

    def __init__(self):
        from jax._src import distributed
        self.synced = (jax.process_count() > 1
                       and distributed.global_state.preemption_sync_manager is not None)
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "a preemption notice"

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        signums = [signal.SIGINT] if self.synced else [signal.SIGINT, signal.SIGTERM]
        for signum in signums:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        self.signum = signum
        if self.synced:
            os.kill(os.getpid(), signal.SIGTERM)  # → JAX's notifier → every process

    def requested(self, step: int) -> bool:
        if self.synced:
            from jax.experimental import multihost_utils
            return multihost_utils.reached_preemption_sync_point(step)
        return self.signum is not None


def progress_bar(total: int | None, name: str, start: int = 0, unit: str = "step"):
    """The console's progress bar for one stage (process 0 only); `total=None` counts up."""
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=start, desc=name, unit=unit,
                disable=jax.process_index() != 0, dynamic_ncols=True)


def _data_save_args(data_iter):
    """A grain iterator saves its own position, one file per process; other iterators save
    `get_state()` as JSON if they have it (nothing otherwise)."""
    if isinstance(data_iter, grain.DatasetIterator):
        return grain.checkpoint.CheckpointSave(data_iter)
    state = data_iter.get_state() if hasattr(data_iter, "get_state") else {}
    return ocp.args.JsonSave(state)


def _data_restore_args(data_iter):
    if isinstance(data_iter, grain.DatasetIterator):
        return grain.checkpoint.CheckpointRestore(data_iter)  # restores in place
    return ocp.args.JsonRestore()

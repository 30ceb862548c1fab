"""Throughput in the training log: tokens/s, FLOPs per step from XLA's cost analysis of the
compiled step, the teacher's forward counted apart in distillation, and MFU against the stated
peak — in metrics.jsonl, TensorBoard and the end-of-run summary line."""

import logging
import struct
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "workers"))
from train_worker import VOCAB, config, corpus, distill_task  # noqa: E402

from distill import accelerators  # noqa: E402
from distill.data.pretraining import make_pretraining_dataset  # noqa: E402
from distill.trainer import Trainer, read_metrics  # noqa: E402

STEPS, BATCH, LENGTH = 3, 8, 32
PAUSE = 6.0


class Args:  # the worker's flags
    steps, checkpoint_every, batch_size, grad_accum, mesh, dropout = STEPS, 1000, BATCH, 1, \
        "data=1", 0.0


def data():
    def weighted(batch):
        return {**batch, "example_weight": np.ones(len(batch["input_word_ids"]), np.float32)}
    return make_pretraining_dataset(corpus(), VOCAB, batch_size=BATCH, max_seq_length=LENGTH,
                                    max_predictions_per_seq=5, nsp=True, seed=7).map(weighted)


def tensorboard_scalars(folder: Path) -> dict[str, list[float]]:
    """Scalars of the event files (TFRecord framing: length, its crc, the Event, its crc)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for file in folder.glob("events.out.tfevents.*"):
        raw = file.read_bytes()
        at = 0
        while at < len(raw):
            (length,) = struct.unpack("<Q", raw[at:at + 8])
            event = event_pb2.Event.FromString(raw[at + 12:at + 12 + length])
            at += 16 + length
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_distillation_log_counts_the_teacher_apart(tmp_path, caplog):
    cfg = config(Args)
    cfg.trainer.eval_every = 2
    task = distill_task(cfg)
    trainer = Trainer(task, cfg, tmp_path)

    def evaluate(state):  # step 2's evaluation takes PAUSE seconds: no training time
        time.sleep(PAUSE if int(state.step) == 2 else 0)
        return {}

    with caplog.at_level(logging.INFO, logger="distill.trainer"):
        trainer.fit(iter(data()), evaluate)
    rows = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert BATCH * LENGTH / rows[2]["tokens_per_sec"] < PAUSE  # step 3's seconds

    # The compiled step's and the teacher forward's cost analysis, computed here on abstract
    # inputs (the trainer lowered real arrays)
    def abstract(tree, shardings):
        return jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)

    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=trainer.batch_sharding)
             for k, v in next(iter(data())).items()}
    frozen = abstract(trainer.frozen, trainer.frozen_sharding)
    with jax.set_mesh(trainer.mesh):
        step = trainer.train_step.lower(abstract(trainer.abstract_state, trainer.state_sharding),
                                        frozen, batch).compile().cost_analysis()["flops"]
    teacher = jax.jit(task.teacher_outputs).lower(frozen, batch).compile().cost_analysis()["flops"]
    # the forward costs at least 2 FLOPs per encoder-layer weight per token
    layer_weights = sum(x.size for p, x in jax.tree_util.tree_flatten_with_path(
        trainer.frozen)[0] if any(str(getattr(k, "key", "")).startswith("layer_") for k in p))
    assert layer_weights > 2e6 and teacher > 2 * layer_weights * BATCH * LENGTH

    peak = accelerators.CPU_PEAK_FLOPS  # trainer.peak_flops=0 on a CPU: the measured rate
    for row in rows:
        assert row["flops_per_step"] == pytest.approx(step, rel=1e-9)
        assert row["teacher_flops_per_step"] == pytest.approx(teacher, rel=1e-9)
        assert row["student_flops_per_step"] == pytest.approx(step - teacher, rel=1e-9)
        assert row["tokens_per_sec"] > 0
        # mfu = FLOPs / (seconds × peak), seconds = tokens / tokens_per_sec
        seconds = BATCH * LENGTH / row["tokens_per_sec"]
        assert row["mfu"] == pytest.approx(step / (seconds * peak), rel=1e-6)
        assert row["teacher_mfu"] == pytest.approx(teacher / (seconds * peak), rel=1e-6)
        assert row["student_mfu"] + row["teacher_mfu"] == pytest.approx(row["mfu"], rel=1e-9)

    tensorboard = tensorboard_scalars(tmp_path / "tensorboard")
    for key in ("tokens_per_sec", "mfu", "flops_per_step", "teacher_flops_per_step",
                "student_flops_per_step", "teacher_mfu", "student_mfu"):
        assert tensorboard[key] == pytest.approx([r[key] for r in rows], rel=1e-6), key

    (summary,) = [r.getMessage() for r in caplog.records if "throughput over" in r.getMessage()]
    assert "throughput over 2 steps" in summary  # the first step (compiling) left out
    assert f"{step:.4g} FLOPs per step (student {step - teacher:.4g}, teacher {teacher:.4g})" \
        in summary
    assert f"of 1 × {peak:.4g} FLOP/s (a measured CPU f32 matmul rate" in summary
    assert trainer.throughput["mfu"] > 0


def test_gradient_accumulation_counts_every_micro_batch(tmp_path):
    """XLA counts a loop's body once: the step with two micro-batches compiled as is reports about
    half a step. The log counts it written out, within 1 % of the same step without accumulation,
    the teacher's forward on the whole batch."""
    from distill.trainer import Throughput, xla_flops

    def costs(accum):
        cfg = config(type("Accumulating", (Args,), {"grad_accum": accum}))
        trainer = Trainer(distill_task(cfg), cfg, tmp_path / str(accum))
        state = jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            trainer.abstract_state, trainer.state_sharding)
        batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=trainer.batch_sharding)
                 for k, v in next(iter(data())).items()}
        with jax.set_mesh(trainer.mesh):
            as_compiled = xla_flops(
                trainer.train_step.lower(state, trainer.frozen, batch).compile())
        return as_compiled, Throughput(trainer).step_flops(state, batch)

    plain, (step, teacher) = costs(1)
    looped, (accumulated, accumulated_teacher) = costs(2)
    assert looped < 0.6 * plain  # the loop's body once: one micro-batch
    assert accumulated == pytest.approx(step, rel=0.01)
    assert accumulated_teacher == pytest.approx(teacher, rel=0.01)
    assert 0 < teacher < step


class Device:  # what accelerators.peak_flops reads of a jax.Device
    def __init__(self, platform, device_kind):
        self.platform, self.device_kind = platform, device_kind


def test_the_peak_is_stated():
    assert accelerators.peak_flops(Device("gpu", "NVIDIA H100 80GB HBM3"))[0] == 989e12
    assert accelerators.peak_flops(Device("tpu", "TPU v5 lite"))[0] == 197e12
    assert accelerators.peak_flops(Device("tpu", "TPU v5"))[0] == 459e12
    assert accelerators.peak_flops(Device("cpu", "cpu"))[0] == accelerators.CPU_PEAK_FLOPS
    assert accelerators.peak_flops(Device("gpu", "NVIDIA H100"), 5e14) == (
        5e14, "trainer.peak_flops")
    peak, why = accelerators.peak_flops(Device("gpu", "NVIDIA L4"))
    assert peak is None and "'NVIDIA L4' is not in distill/accelerators.py" in why

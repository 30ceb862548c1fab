"""Ahead-of-time compile check: per-device memory of a config's train step before the job starts.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 distill compile \\
        --config distill.py:tinybert --workdir runs/aot \\
        --config.teacher.name=large --config.model.name=small --config.mesh.fsdp=4

The step is lowered and compiled for abstract parameters, optimizer state, teacher and batch on
the config's mesh (as MaxText's train_compile does): no weights are read or allocated, nothing
runs. Teacher and student may be presets or config.json files. The mesh is the devices this
process sees: on a CPU host, `--xla_force_host_platform_device_count` describes any device count.
Writes `compile_report.json` to the work directory and prints the figures.

On a CPU host the estimate uses XLA:CPU's memory-minimising schedule
(`--xla_cpu_enable_concurrency_optimized_scheduler=false`, added to XLA_FLAGS when this module is
imported, before the backend starts): the default concurrency-optimised schedule gathers every
FSDP-sharded weight up front and keeps them all alive, which accelerator schedulers do not.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from distill.distillation import DistillTask, heads_needed
from distill.models import ModelSpec, dtype
from distill.tasks.common import prepare_workdir, write_json
from distill.tasks.pretrain import MaskedLMTask
from distill.trainer import Trainer
from flaxbert import hub
from flaxbert.configs import get_config, load_config
from flaxbert.heads import Model
from flaxbert.params import abstract_params

log = logging.getLogger(__name__)

MEMORY_MINIMISING_SCHEDULE = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {MEMORY_MINIMISING_SCHEDULE}".strip()


def _model_config(name: str):
    """A preset, a config.json, or a model folder's (or cached hub id's) config.json (its weights
    are not read)."""
    path = hub.resolve(name)
    if path.is_dir():
        return load_config(path / "config.json")
    return load_config(path) if name.endswith(".json") else get_config(name)


def _uses_mlm(config) -> bool:
    return "max_predictions_per_seq" in config.data


def build_task(config):
    """The task the config trains, with an abstract teacher when it distils."""
    nsp = bool(config.data.get("nsp", False))
    if "distill" not in config:
        return MaskedLMTask(ModelSpec(config.model, ("mlm", "nsp") if nsp else ("mlm",)), nsp)
    student_heads, teacher_heads = heads_needed(config.distill.terms,
                                                float(config.distill.get("alpha", 1.0)))
    compute = dtype(config.teacher.get("dtype", "float32"))
    teacher = Model(_model_config(config.teacher.name), heads=teacher_heads, dtype=compute,
                    param_dtype=compute)
    return DistillTask(config, ModelSpec(config.model, student_heads), teacher,
                       abstract_params(teacher))


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch a train step of this config receives."""
    b, length = config.trainer.batch_size, config.data.max_seq_length
    ints = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)  # noqa: E731
    floats = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    spec = {"input_word_ids": ints(b, length), "input_mask": ints(b, length),
            "input_type_ids": ints(b, length), "example_weight": floats(b),
            "has_label": floats(b), "label": ints(b)}
    if _uses_mlm(config):
        d = config.data
        p = d.max_predictions_per_seq
        spec.update(masked_lm_positions=ints(b, p), masked_lm_ids=ints(b, p),
                    masked_lm_weights=floats(b, p), next_sentence_labels=ints(b))
        if d.get("pack", False):
            spec["input_positions"] = ints(b, length)
    return spec


def run(config, workdir: str | Path) -> dict:
    workdir = prepare_workdir(workdir, config)
    if config.trainer.num_steps <= 0:  # derived from the data by the real job; any length compiles alike
        config.trainer.num_steps = 1
    trainer = Trainer(build_task(config), config, workdir)
    report = trainer.memory_report(batch_spec(config))
    report.update(devices=jax.device_count(), mesh=dict(trainer.mesh.shape),
                  device_kind=jax.devices()[0].device_kind)
    if jax.process_index() == 0:
        write_json(workdir / "compile_report.json", report)
    gib = 2.0 ** 30
    print(f"mesh {report['mesh']} on {report['devices']} × {report['device_kind']}; per device: "
          f"arguments {report['argument'] / gib:.3f} GiB, outputs {report['output'] / gib:.3f} "
          f"GiB, temporaries {report['temp'] / gib:.3f} GiB, peak {report['peak'] / gib:.3f} GiB; "
          f"{report['flops'] / 1e12:.2f} TFLOP per step")
    return report

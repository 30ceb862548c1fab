"""Ahead-of-time compile check: per-device memory of a config's train step before the job starts.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 distill compile \\
        --config distill.py:tinybert --workdir runs/aot \\
        --config.teacher.name=large --config.model.name=small --config.mesh.fsdp=4

The step is lowered and compiled for abstract parameters, optimizer state, teacher and batch on
the config's mesh (as MaxText's train_compile does): no weights are read or allocated, nothing
runs. The config may be a pre-training, fine-tuning or distillation one; its models may be presets,
config.json files or model folders (only their config is read), or a Google release folder that is
not downloaded yet, by its name (`…/uncased_L-24_H-1024_A-16` is BERT-Large uncased). The mesh is
the devices this process sees: on a CPU host, `--xla_force_host_platform_device_count` describes
any device count. Writes `compile_report.json` to the work directory and prints the figures
(`distill plan` compiles every stage of a recipe the same way).

On a CPU host the estimate uses XLA:CPU's memory-minimising schedule
(`--xla_cpu_enable_concurrency_optimized_scheduler=false`, added to XLA_FLAGS when this module is
imported, before the backend starts): the default concurrency-optimised schedule gathers every
FSDP-sharded weight up front and keeps them all alive, which accelerator schedulers do not.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections

from distill import student_init
from distill.data import tasks as task_data
from distill.distillation import DistillTask, heads_needed
from distill.models import ModelSpec, dtype
from distill.tasks import pretrain
from distill.tasks.common import derived, prepare_workdir, write_json
from distill.tasks.finetune import ClassificationTask
from distill.trainer import Trainer, step_loops
from flaxbert import hub
from flaxbert.configs import get_config, load_config
from flaxbert.heads import Model
from flaxbert.params import abstract_params

log = logging.getLogger(__name__)

MEMORY_MINIMISING_SCHEDULE = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {MEMORY_MINIMISING_SCHEDULE}".strip()


#: Google's BERT-Base/Large release folders (google-research/bert README) and their presets; the
#: compact models' folders (uncased_L-4_H-256_A-4) are presets by their own name.
GOOGLE_RELEASES = {"uncased_L-24_H-1024_A-16": "bert_large_uncased",
                   "cased_L-24_H-1024_A-16": "bert_large_cased",
                   "uncased_L-12_H-768_A-12": "bert_base_uncased",
                   "cased_L-12_H-768_A-12": "bert_base_cased"}


def model_config(name: str):
    """A preset, a config.json, or a model folder's (or cached hub id's) config.json / Google's
    bert_config.json (its weights are not read); a folder that is not there by the Google release
    name it ends with."""
    path = Path(name).expanduser()
    release = path.name
    if not path.exists() and release not in GOOGLE_RELEASES and not release.startswith("uncased_L-"):
        path = hub.resolve(name)  # a cached hub id's snapshot (an uncached id: its error)
    if path.is_dir():
        for file in ("config.json", "bert_config.json"):
            if (path / file).is_file():
                return load_config(path / file)
        raise FileNotFoundError(f"{path} holds no config.json or bert_config.json")
    if name.endswith(".json"):
        return load_config(path)
    if release in GOOGLE_RELEASES:
        return get_config(GOOGLE_RELEASES[release])
    if release.startswith("uncased_L-"):  # a compact model's release folder
        return get_config("bert_" + release)
    return get_config(name)


def abstract_model(model_cfg, workdir: Path) -> ml_collections.ConfigDict:
    """The model block with its architecture only — a config.json written to `workdir` — so that
    no weights are read (ModelSpec would load a folder's)."""
    block = ml_collections.ConfigDict(model_cfg.to_dict())
    overrides = dict(block.get("overrides", {}) or {})
    config = model_config(block.name)
    config = config.replace(**overrides) if overrides else config
    path = Path(workdir) / "model_config.json"
    config.to_json_file(path)
    block.name, block.overrides = str(path), {}
    return block


def _uses_mlm(config) -> bool:
    return "max_predictions_per_seq" in config.data


def is_finetuning(config) -> bool:
    return "task" in config and "distill" not in config


def cached_teacher(config) -> bool:
    """Task distillation from the teacher-logit cache: the step holds no teacher."""
    return ("distill" in config and bool(config.distill.get("cache")) and not _uses_mlm(config)
            and all(t["feature"] == "logits" for t in config.distill.terms))


def build_task(config, workdir: Path):
    """The task the config trains, with abstract parameters (an abstract teacher when it distils
    live; none when its logits come from the cache)."""
    model = abstract_model(config.model, workdir)
    if is_finetuning(config):
        labels = task_data.num_labels(load_splits_spec(config.task))
        return ClassificationTask(ModelSpec(model, ("classifier",), num_labels=labels), labels == 1)
    if "distill" not in config:  # pre-training, by its objective
        return pretrain.objective_task(config, ModelSpec(model, pretrain.heads(config)))
    needed, teacher_heads = heads_needed(config.distill.terms,
                                         float(config.distill.get("alpha", 1.0)))
    # the heads the run builds the student with: PKT also carries a pre-trained teacher's MLM
    # and NSP heads (assumed there: the weights are not read here)
    student_heads = student_init.student_heads(config.distill.get("student_init", "model"),
                                               needed, ("mlm", "nsp"))
    compute = dtype(config.teacher.get("dtype", "float32"))
    teacher = Model(model_config(config.teacher.name), heads=teacher_heads, dtype=compute,
                    param_dtype=compute)
    labels = task_data.num_labels(load_splits_spec(config.task)) if config.task.get("name") else 2
    return DistillTask(config, ModelSpec(model, student_heads, num_labels=labels), teacher,
                       None if cached_teacher(config) else abstract_params(teacher))


def load_splits_spec(task_cfg) -> task_data.TaskSpec:
    """The task's spec (labels) without reading its data."""
    if task_cfg.name == "columns":
        return task_data.TaskSpec(name="columns", labels=tuple(task_cfg.labels) or None,
                                  text_columns=(task_cfg.text_a, task_cfg.text_b or None), splits={})
    return task_data.get_task(task_cfg.name)


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch a train step of this config receives."""
    b, length = config.trainer.batch_size, config.data.max_seq_length
    ints = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)  # noqa: E731
    floats = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    regression = is_finetuning(config) and task_data.num_labels(load_splits_spec(config.task)) == 1
    spec = {"input_word_ids": ints(b, length), "input_mask": ints(b, length),
            "input_type_ids": ints(b, length), "example_weight": floats(b),
            "has_label": floats(b), "label": floats(b) if regression else ints(b)}
    if cached_teacher(config):
        labels = task_data.num_labels(load_splits_spec(config.task)) if config.task.get("name") else 2
        spec["teacher_logits"] = floats(b, labels)
    if _uses_mlm(config):
        d = config.data
        p = d.max_predictions_per_seq
        spec.update(masked_lm_positions=ints(b, p), masked_lm_ids=ints(b, p),
                    masked_lm_weights=floats(b, p), next_sentence_labels=ints(b))
        if d.get("pack", False):
            spec["input_positions"] = ints(b, length)
    return spec


def without_loops(config) -> ml_collections.ConfigDict | None:
    """The config's step with its loops written out — one pass over the whole batch instead of
    `grad_accum_steps` micro-batches, the layers one by one instead of `scan_layers` — or None when
    it has no loop. The same arithmetic (bar the micro-batches' gradient sums); XLA's cost analysis
    counts a loop's body once, so only this form's FLOPs are the step's."""
    changes = step_loops(config)
    return derived(config, **changes) if changes else None


def compile_report(config, workdir: Path) -> dict:
    """The compiled train step's per-device memory (bytes) and FLOPs on the config's mesh, with
    the compile time: nothing is allocated or run. A step with loops (`without_loops`) is compiled
    twice: as configured for the memory, written out for the FLOPs."""
    start = time.perf_counter()
    trainer = Trainer(build_task(config, workdir), config, workdir)
    report = trainer.memory_report(batch_spec(config))
    if (flat := without_loops(config)) is not None:
        report["flops"] = Trainer(build_task(flat, workdir), flat, workdir).memory_report(
            batch_spec(flat))["flops"]
    report.update(devices=jax.device_count(), mesh=dict(trainer.mesh.shape),
                  device_kind=jax.devices()[0].device_kind,
                  compile_seconds=time.perf_counter() - start)
    return report


def run(config, workdir: str | Path) -> dict:
    workdir = prepare_workdir(workdir, config)
    if config.trainer.num_steps <= 0:  # derived from the data by the real job; any length compiles alike
        config.trainer.num_steps = 1
    report = compile_report(config, workdir)
    if jax.process_index() == 0:
        write_json(workdir / "compile_report.json", report)
    gib = 2.0 ** 30
    print(f"mesh {report['mesh']} on {report['devices']} × {report['device_kind']}; per device: "
          f"arguments {report['argument'] / gib:.3f} GiB, outputs {report['output'] / gib:.3f} "
          f"GiB, temporaries {report['temp'] / gib:.3f} GiB, peak {report['peak'] / gib:.3f} GiB; "
          f"{report['flops'] / 1e12:.2f} TFLOP per step (per device); compiled in "
          f"{report['compile_seconds']:.0f} s")
    return report

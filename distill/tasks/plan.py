"""`distill plan`: what a recipe will cost, before a pod is spent.

    XLA_FLAGS=--xla_force_host_platform_device_count=32 distill plan \\
        --config recipe.py:paper --workdir runs/plan --config.plan.device=tpu_v4

One row per stage of the recipe — pre-training × student size (each phase), teacher fine-tuning ×
task, the teacher's transfer-set logits × task, distillation × size × task (KD and PD), and the
fine-tuning cells × size × task × batch size — with its steps, tokens, FLOPs per step and
per-device memory from the compiled step (`distill compile`'s AOT path: lowered and compiled on
the config's mesh, nothing allocated or run) and the device-hours it takes on the named
accelerator at `plan.mfu` of its bf16 peak (`distill/accelerators.py`). Totals per stage kind and
overall; a stage whose per-device memory exceeds `plan.memory_fraction` of the device's memory
is flagged, and so is a batch the mesh's data-parallel size does not divide. The mesh is the
devices this process sees (`--xla_force_host_platform_device_count` on a CPU host).

How the figures are made (also written into plan.md):
- each distinct step (model × teacher × batch × length × mesh) is compiled once — tasks that
  differ only in their number of labels share it — and the figures are kept in
  `W/plan_cache.json` for later plans on the same device count;
- fine-tuning compiles each student at the grid's largest batch; the other batch sizes scale its
  FLOPs by the batch ratio (a step's FLOPs are linear in its rows at a fixed length) and carry
  its memory as an upper bound;
- steps: pre-training and any stage with `trainer.num_steps` > 0 as configured; fine-tuning and
  distillation `num_epochs` × examples / batch, with the GLUE training-set sizes below and the
  transfer-set sizes of `plan.transfer_examples`; sequences at the configured maximum length
  (length-grouped batches are shorter: an upper bound);
- the teacher's logits over the transfer set (`distill.cache`, once per task) are a forward
  pass of the teacher, compiled on one device.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from distill import accelerators
from distill.data import tasks as task_data
from distill.tasks import aot, recipe
from distill.tasks.common import derived, prepare_workdir, write_json, write_text
from flaxbert.heads import Model
from flaxbert.params import abstract_params

#: GLUE training-set sizes (examples; the TFDS `glue/*` train splits, as the official download).
GLUE_TRAIN = {"cola": 8_551, "sst2": 67_349, "mrpc": 3_668, "stsb": 5_749, "qqp": 363_846,
              "mnli": 392_702, "qnli": 104_743, "rte": 2_490, "wnli": 635}
KINDS = ("pre-training", "teacher fine-tuning", "teacher logits", "distillation", "fine-tuning")
GiB = 2.0 ** 30


def train_examples(config, task: str) -> int:
    if task in GLUE_TRAIN:
        return GLUE_TRAIN[task]
    sizes = dict(config.plan.get("train_examples", {}) or {})
    if task not in sizes:
        raise ValueError(f"plan: task {task!r} is no GLUE task; give its training-set size as "
                         f"--config.plan.train_examples.{task}=N")
    return int(sizes[task])


def epoch_steps(stage_config, examples: int, batch_size: int | None = None) -> int:
    """The stage's steps: `trainer.num_steps` when set, else its epochs over `examples`."""
    t = stage_config.trainer
    if t.num_steps > 0:
        return int(t.num_steps)
    return math.ceil(t.num_epochs * examples / (batch_size or t.batch_size))


def stages(config) -> list[dict]:
    """Every stage `distill recipe` runs for this config, with the config that compiles its step
    (presets for models that are outputs of earlier stages: the same architecture)."""
    r = config.recipe
    out = []
    pretrains = "pt_ft" in r.methods or "pd" in r.methods
    for student in r.students if pretrains else ():
        for name, phase, steps in recipe.pretrain_phases(config, Path("."), student):
            out.append(dict(kind="pre-training", stage=name, config=phase, runs=1, steps=steps))
    tasks = tuple(r.get("tasks", ())) or (config.teacher_finetune.task.name,)
    transfer_sizes = dict(config.plan.transfer_examples)
    for task in tasks:
        task_config = recipe.for_task(config, task) if r.get("tasks") else config
        n_train = train_examples(config, task)
        teacher = task_config.teacher_finetune
        out.append(dict(kind="teacher fine-tuning", stage=f"{task}/teacher", config=teacher,
                        runs=1, steps=epoch_steps(teacher, n_train)))
        distils = [m for m in ("kd", "pd") if m in r.methods]
        if distils:
            if task not in transfer_sizes:
                raise ValueError(f"plan.transfer_examples has no size for {task!r}'s transfer "
                                 f"set; add --config.plan.transfer_examples.{task}=N")
            n_transfer = int(transfer_sizes[task])
            kd = derived(task_config.distill, **{"teacher.name": teacher.model.name,
                                                 "distill.cache": "teacher_logits.npz"})
            out.append(dict(kind="teacher logits", stage=f"{task}/teacher_logits", config=kd,
                            runs=1, steps=math.ceil(n_transfer / kd.trainer.batch_size)))
        batches = list(r.batch_sizes) or [config.student_finetune.trainer.batch_size]
        fine_tuned = [m for m in ("scratch", "pt_ft", "pd") if m in r.methods]
        cells = len(fine_tuned) * len(r.seeds) * max(len(r.learning_rates), 1)
        for student in r.students:
            for method in distils:
                stage_config = derived(kd, **{"model.name": student})
                out.append(dict(kind="distillation", stage=f"{task}/{method}_{student}",
                                config=stage_config, runs=len(r.seeds),
                                steps=epoch_steps(stage_config, n_transfer)))
            if not cells:
                continue
            largest = derived(task_config.student_finetune, **{
                "model.name": student, "trainer.batch_size": max(batches)})
            for batch in batches:
                out.append(dict(kind="fine-tuning", stage=f"{task}/finetune_{student}_bs{batch}",
                                config=largest, runs=cells, batch=batch,
                                steps=epoch_steps(largest, n_train, batch)))
    return out


def compile_key(kind: str, config) -> str:
    """What fixes a step's shape and cost: the program, models, batch, lengths, mesh, devices."""
    parts = dict(kind=kind, model=config.model.to_dict(), batch=config.trainer.batch_size,
                 accum=config.trainer.grad_accum_steps, length=config.data.max_seq_length,
                 mesh=config.mesh.to_dict(), devices=jax.device_count())
    if "max_predictions_per_seq" in config.data:
        parts.update(predictions=config.data.max_predictions_per_seq, nsp=bool(config.data.nsp))
    if "distill" in config:
        parts.update(teacher=config.teacher.name, terms=config.distill.terms.__repr__(),
                     cached=aot.cached_teacher(config))
    # tasks share a compile when only their label counts differ (2 or 3 classifier outputs: a
    # negligible share of any step); a regression head changes the loss, so it counts
    if "task" in config and config.task.get("name"):
        parts["regression"] = task_data.num_labels(aot.load_splits_spec(config.task)) == 1
    return json.dumps(parts, sort_keys=True, default=str)


def teacher_forward_report(config) -> dict:
    """The teacher's logits pass over one batch, compiled on one device (as the cache runs it)."""
    labels = task_data.num_labels(aot.load_splits_spec(config.task))
    model = Model(aot.model_config(config.teacher.name), heads=("classifier",), num_labels=labels)
    ids = jax.ShapeDtypeStruct((config.trainer.batch_size, config.data.max_seq_length), jnp.int32)
    compiled = jax.jit(lambda p, a, b, c: model.apply({"params": p}, a, b, c)["logits"]).lower(
        abstract_params(model), ids, ids, ids).compile()
    memory, cost = compiled.memory_analysis(), compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes
            + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
    return {"flops": float(cost.get("flops", 0.0)), "peak": float(peak), "devices": 1}


def compiled_figures(row: dict, workdir: Path, cache: dict) -> tuple[dict, bool]:
    """(figures, compiled now) for the row's step: FLOPs per step over all its devices, peak
    per-device memory."""
    config = derived(row["config"], **{"trainer.num_steps": max(int(row["steps"]), 1)})
    key = compile_key(row["kind"], config)
    if key in cache:
        return cache[key], False
    if row["kind"] == "teacher logits":
        report = teacher_forward_report(config)
    else:
        folder = workdir / "compile" / str(len(cache))
        folder.mkdir(parents=True, exist_ok=True)
        report = aot.compile_report(config, folder)
    cache[key] = {"flops": report["flops"] * report["devices"], "peak": report["peak"],
                  "devices": report["devices"], "mesh": report.get("mesh")}
    return cache[key], True


def run(config, workdir: str | Path) -> dict:
    start = time.perf_counter()
    workdir = prepare_workdir(workdir, config)
    p = config.plan
    device = accelerators.get(p.device)
    usable = device.memory_bytes * float(p.memory_fraction)
    cache_file = workdir / "plan_cache.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    rows, compiled = [], 0
    for stage in stages(config):
        figures, new = compiled_figures(stage, workdir, cache)
        compiled += new
        if new:
            write_json(cache_file, cache)
        config_ = stage["config"]
        batch = stage.get("batch", config_.trainer.batch_size)
        flops = figures["flops"] * batch / config_.trainer.batch_size
        steps, runs = stage["steps"], stage["runs"]
        hours = runs * steps * flops / (device.peak_bf16_flops * float(p.mfu)) / 3600
        flags = []
        if figures["peak"] > usable:
            flags.append(f"memory {figures['peak'] / GiB:.1f} GiB > {usable / GiB:.1f} GiB")
        data_parallel = (figures["mesh"] or {}).get("data", 1) * (figures["mesh"] or {}).get("fsdp", 1)
        if stage["kind"] != "teacher logits" and batch % data_parallel:
            flags.append(f"batch {batch} not divisible by data × fsdp = {data_parallel}")
        rows.append(dict(kind=stage["kind"], stage=stage["stage"], runs=runs, steps=steps,
                         batch=batch, length=config_.data.max_seq_length,
                         tokens=runs * steps * batch * config_.data.max_seq_length,
                         flops_per_step=flops, peak_bytes_per_device=figures["peak"],
                         devices=figures["devices"], device_hours=hours, flags=flags))
    totals = {kind: summed([r for r in rows if r["kind"] == kind]) for kind in KINDS
              if any(r["kind"] == kind for r in rows)}
    totals["all"] = summed(rows)
    plan = dict(device=device._asdict(), mfu=float(p.mfu), memory_fraction=float(p.memory_fraction),
                devices=jax.device_count(), rows=rows, totals=totals, compiled_steps=compiled,
                cached_steps=len(cache) - compiled, plan_seconds=time.perf_counter() - start)
    if jax.process_index() == 0:
        write_json(workdir / "plan.json", plan)
        write_text(workdir / "plan.md", markdown(plan))
        print(markdown(plan))
    return plan


def summed(rows) -> dict:
    return {"runs": sum(r["runs"] for r in rows), "tokens": sum(r["tokens"] for r in rows),
            "flops": sum(r["runs"] * r["steps"] * r["flops_per_step"] for r in rows),
            "device_hours": sum(r["device_hours"] for r in rows),
            "flagged": sum(bool(r["flags"]) for r in rows)}


def markdown(plan) -> str:
    d, n = plan["device"], plan["devices"]
    lines = [f"# Plan: {n} × {d['name']} ({d['peak_bf16_flops'] / 1e12:.0f} TFLOP/s bf16, "
             f"{d['memory_bytes'] / GiB:.0f} GiB each) at {100 * plan['mfu']:.0f} % MFU", "",
             "| stage kind | stage | runs | steps / run | batch × length | tokens | TFLOP / step "
             "| peak GiB / device | device-hours | flag |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in plan["rows"]:
        lines.append(f"| {r['kind']} | {r['stage']} | {r['runs']} | {r['steps']:,} | "
                     f"{r['batch']} × {r['length']} | {r['tokens']:.3g} | "
                     f"{r['flops_per_step'] / 1e12:.3g} | {r['peak_bytes_per_device'] / GiB:.2f} | "
                     f"{r['device_hours']:,.1f} | {'; '.join(r['flags'])} |")
    lines += ["", "| stage kind | runs | tokens | PFLOP | device-hours | days on "
              f"{n} devices | flagged rows |", "|---|---|---|---|---|---|---|"]
    for kind, t in plan["totals"].items():
        lines.append(f"| **{kind}** | {t['runs']:,} | {t['tokens']:.3g} | {t['flops'] / 1e15:,.0f} "
                     f"| {t['device_hours']:,.0f} | {t['device_hours'] / n / 24:,.1f} | "
                     f"{t['flagged']} |")
    lines += ["", f"Device-hours = runs × steps × FLOPs per step / ({d['peak_bf16_flops'] / 1e12:.0f}"
              f" TFLOP/s × {plan['mfu']:.2f} MFU, an assumption: `plan.mfu`); FLOPs and memory "
              f"from XLA's cost and memory analysis of each compiled step on {n} devices "
              "(distill/tasks/plan.py says how rows share compiles). Memory flagged above "
              f"{100 * plan['memory_fraction']:.0f} % of the device's. This plan compiled "
              f"{plan['compiled_steps']} steps ({plan['cached_steps']} from plan_cache.json) in "
              f"{plan['plan_seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"

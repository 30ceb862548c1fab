"""What the task programs share: the run folder (checks, resume), plots."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import ml_collections
from etils import epath

from distill import run_lock
from distill.files import (  # noqa: F401 (re-exported)
    as_path,
    atomic_output,
    remove_partial_outputs,
    write_json,
    write_text,
)

log = logging.getLogger(__name__)

#: Config fields a resumed run may change: how long it trains, how often it evaluates, logs and
#: saves, the device layout (checkpoints reshard onto any mesh) and rematerialisation. Matched
#: by the last component of a dotted path, or by any component for whole blocks.
RESUMABLE_FIELDS = ("num_steps", "num_epochs", "eval_every", "log_every", "checkpoint_every",
                    "keep_checkpoints", "peak_flops", "remat_policy")
RESUMABLE_BLOCKS = ("mesh", "plan")  # plan: `distill plan`'s assumptions, not training
#: Recipe / sweep grids may grow: every run of the grid checks its own folder.
RESUMABLE_PATHS = ("recipe.students", "recipe.seeds", "recipe.methods", "recipe.tasks",
                   "recipe.pretrain_checkpoints", "sweep.learning_rates", "sweep.batch_sizes",
                   "sweep.seeds")


#: Fields added since runs were started, with the value a config without them ran as (matched
#: by the last component): an older run folder resumes under today's defaults, and a value other
#: than that still counts as a change.
ADDED_FIELDS = {"objective": "mlm", "embedding_gradient": "dense", "task_texts": "",
                "generator_width": 0.25, "rtd_weight": 50.0, "batch_sizes": [],
                "tfds_data_dir": ""}


def _flatten(tree, prefix="") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def resumable(field: str) -> bool:
    parts = field.split(".")
    return (parts[-1] in RESUMABLE_FIELDS or any(p in RESUMABLE_BLOCKS for p in parts)
            or any(field == p or field.startswith(p + ".") for p in RESUMABLE_PATHS))


def config_changes(saved: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{dotted field: (saved value, new value)} for every field that differs."""
    a, b = _flatten(saved), _flatten(new)
    missing = "(absent)"
    for key in b.keys() - a.keys():
        last = key.rsplit(".", 1)[-1]
        if last in ADDED_FIELDS and b[key] == ADDED_FIELDS[last]:
            a[key] = b[key]  # ran as today's default before the field existed
    return {k: (a.get(k, missing), b.get(k, missing)) for k in sorted(a.keys() | b.keys())
            if a.get(k, missing) != b.get(k, missing)}


def check_workdir(workdir, config: ml_collections.ConfigDict | None) -> dict[str, tuple[Any, Any]]:
    """Refuses, before anything is built or written, a work directory that is a file or that holds
    a run of another config (fields other than the resumable ones differ; `config=None` skips
    that, for programs that only read the folder). Returns the resumable changes (empty for a
    new folder or the same config)."""
    workdir = as_path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--workdir {workdir} is an existing file; expected a folder (created "
                         f"if missing)")
    saved_file = workdir / "config.json"
    if config is None or not saved_file.exists():
        return {}
    try:
        saved = json.loads(saved_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{saved_file} is not readable JSON ({e}); it records what was trained "
                         f"in {workdir}: use a new --workdir") from None
    changes = config_changes(saved, json.loads(config.to_json_best_effort()))
    refused = {k: v for k, v in changes.items() if not resumable(k)}
    if refused:
        lines = "\n".join(f"  {k}: {old!r} there, {new!r} in this run"
                          for k, (old, new) in refused.items())
        raise ValueError(
            f"{workdir} was trained with another config ({saved_file}); the fields that "
            f"differ:\n{lines}\nuse a new --workdir for this run (or the saved values to resume "
            f"it). Fields that may change on resume: {', '.join(RESUMABLE_FIELDS)}, "
            f"{', '.join(b + '.*' for b in RESUMABLE_BLOCKS)}.")
    return changes


def prepare_workdir(workdir, config: ml_collections.ConfigDict) -> epath.Path:
    """Checks the run folder (`check_workdir`), creates it and keeps a copy of the config. Run as
    its one writer (`run_lock.hold`), it first clears outputs a killed run left half-written."""
    workdir = as_path(workdir)
    changes = check_workdir(workdir, config)
    if changes:
        log.warning("resuming %s with changed %s", workdir, "; ".join(
            f"{k}: {old!r} → {new!r}" for k, (old, new) in changes.items()))
    workdir.mkdir(parents=True, exist_ok=True)
    if run_lock.holds(workdir) and (cleared := remove_partial_outputs(workdir)):
        log.warning("in %s, outputs a killed run left half-written: %s", workdir,
                    "; ".join(cleared))
    write_text(workdir / "config.json", config.to_json_best_effort(indent=2, sort_keys=True))
    return workdir


def plot_curves(workdir: str | Path, keys: Sequence[str], filename: str = "curves.png") -> Path | None:
    """A PNG with one panel per metric in `keys`, read from metrics.jsonl (process 0 only)."""
    from distill.trainer import read_metrics

    if jax.process_index() != 0:
        return None
    rows = read_metrics(workdir)
    series = {k: [(r["step"], r[k]) for r in rows if k in r] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (name, points) in zip(axes[0], series.items()):
        steps, values = zip(*points)
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = as_path(workdir) / filename
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def stage(workdir: Path, name: str, program, config) -> dict:
    """Runs one stage unless its result exists; returns its result with the wall time. The stage
    folder is locked while it runs (`run_lock`): a `distill` run started on it meanwhile is
    refused, and so is this stage while such a run holds it."""
    folder = as_path(workdir) / name
    done = folder / "result.json"
    if done.exists():
        log.info("stage %s: done earlier (%s)", name, done)
        return json.loads(done.read_text())
    log.info("stage %s: running in %s", name, folder)
    start = time.perf_counter()
    with run_lock.hold(folder):
        result = program.run(config, folder)
        result["wall_seconds"] = time.perf_counter() - start
        if jax.process_index() == 0:
            write_json(done, result)
    return result


def derived(base: ml_collections.ConfigDict, **changes) -> ml_collections.ConfigDict:
    """A copy of a stage config with dotted-path changes ({"trainer.seed": 1, ...})."""
    config = ml_collections.ConfigDict(base.to_dict())
    for path, value in changes.items():
        node = config
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config

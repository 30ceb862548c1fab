"""The Well-Read Students recipe (Turc et al. 2019) as chained runs, and its comparison table.

For each student size and seed, four ways to a sentiment classifier are compared:

    scratch     fine-tune the randomly initialised student on the labels
    pt_ft       MLM pre-train on unlabelled text, then fine-tune
    kd          distil a fine-tuned teacher into the random student on the transfer set
    pd          Pre-trained Distillation: pre-train, distil, then fine-tune

Every stage is a run folder under the recipe's work directory; a stage whose `result.json`
exists is skipped, and an interrupted stage resumes from its checkpoints, so re-running the same
command continues where it stopped. The table (markdown + JSON) and plots go to the work
directory.

    distill recipe --config experiments/recipe.py:demo --workdir runs/demo
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from distill.tasks import common, distill as distill_task, finetune, pretrain

log = logging.getLogger(__name__)

METHODS = ("scratch", "pt_ft", "kd", "pd")


def stage(workdir: Path, name: str, program, config) -> dict:
    """Runs one stage unless its result exists; returns its result with the wall time."""
    folder = common.as_path(workdir) / name
    done = folder / "result.json"
    if done.exists():
        log.info("stage %s: done earlier (%s)", name, done)
        return json.loads(done.read_text())
    log.info("stage %s: running in %s", name, folder)
    start = time.perf_counter()
    result = program.run(config, folder)
    result["wall_seconds"] = time.perf_counter() - start
    if jax.process_index() == 0:
        common.write_json(done, result)
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


def run(config, workdir: str | Path) -> dict:
    workdir = common.prepare_workdir(workdir, config)
    r = config.recipe
    rows = []
    teacher = stage(workdir, "teacher", finetune, config.teacher_finetune)
    teacher_dir = str(workdir / "teacher" / "best")
    rows.append(row("teacher", r.teacher_name, 0, "fine-tuned teacher", teacher))
    for student in r.students:
        for seed in r.seeds:
            tag = f"{student}_seed{seed}"
            pt_dir = str(workdir / f"pretrain_{student}" / "export")
            results = {}
            if "pt_ft" in r.methods or "pd" in r.methods:
                # pre-training does not depend on the fine-tuning seed: one run per size
                stage(workdir, f"pretrain_{student}", pretrain,
                      derived(config.pretrain, **{"model.name": student}))
            if "scratch" in r.methods:
                results["scratch"] = stage(workdir, f"scratch_{tag}", finetune, derived(
                    config.student_finetune, **{"model.name": student, "trainer.seed": seed}))
            if "pt_ft" in r.methods:
                results["pt_ft"] = stage(workdir, f"pt_ft_{tag}", finetune, derived(
                    config.student_finetune, **{"model.name": pt_dir, "trainer.seed": seed}))
            distill_common = {"teacher.name": teacher_dir, "trainer.seed": seed,
                              "distill.cache": str(workdir / "teacher_logits.npz")}
            if "kd" in r.methods:
                results["kd"] = stage(workdir, f"kd_{tag}", distill_task, derived(
                    config.distill, **distill_common, **{"model.name": student}))
            if "pd" in r.methods:
                stage(workdir, f"pd_distill_{tag}", distill_task, derived(
                    config.distill, **distill_common, **{"model.name": pt_dir}))
                results["pd"] = stage(workdir, f"pd_{tag}", finetune, derived(
                    config.student_finetune, **{"model.name": str(workdir / f"pd_distill_{tag}" / "export"),
                                                "trainer.seed": seed}))
            for method, result in results.items():
                rows.append(row(method, student, seed, DESCRIPTIONS[method], result))
    table = summarise(rows)
    write_report(workdir, rows, table)
    return {"rows": rows, "table": table}


DESCRIPTIONS = {
    "scratch": "fine-tune from scratch",
    "pt_ft": "MLM pre-train + fine-tune",
    "kd": "distil from scratch (transfer set)",
    "pd": "pre-train + distil + fine-tune (PD)",
}


def row(method, student, seed, description, result) -> dict:
    """One run's line: dev/test accuracy (fine-tuned runs) or dev accuracy as it distilled."""
    dev = result.get("dev") or {k[4:]: v for k, v in result.get("final", {}).items()
                                if k.startswith("dev_")}
    return {"method": method, "student": student, "seed": seed, "description": description,
            "dev_acc": dev.get("acc"), "test_acc": result.get("test", {}).get("acc"),
            "parameters": result.get("parameters") or result.get("student_parameters"),
            "wall_seconds": result.get("wall_seconds")}


def summarise(rows) -> list[dict]:
    """Mean ± std over seeds for each (method, student)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["student"]), []).append(r)
    table = []
    for (method, student), runs in groups.items():
        entry = {"method": method, "student": student, "seeds": len(runs),
                 "description": runs[0]["description"], "parameters": runs[0].get("parameters"),
                 "wall_seconds": float(sum(r["wall_seconds"] or 0 for r in runs))}
        for key in ("dev_acc", "test_acc"):
            values = [r[key] for r in runs if r[key] is not None]
            entry[key] = float(np.mean(values)) if values else None
            entry[key + "_std"] = float(np.std(values)) if len(values) > 1 else 0.0
        table.append(entry)
    return table


def markdown(table) -> str:
    lines = ["| method | student | parameters | seeds | dev acc | test acc | wall time |",
             "|---|---|---|---|---|---|---|"]
    for e in table:
        def fmt(key):
            if e[key] is None:
                return "–"
            return f"{100 * e[key]:.1f}" + (f" ± {100 * e[key + '_std']:.1f}" if e["seeds"] > 1 else "")
        params = f"{e['parameters'] / 1e6:.1f}M" if e.get("parameters") else "–"
        lines.append(f"| {e['description']} | {e['student']} | {params} | {e['seeds']} | "
                     f"{fmt('dev_acc')} | {fmt('test_acc')} | {e['wall_seconds'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def write_report(workdir: Path, rows, table) -> None:
    if jax.process_index() != 0:
        return
    common.write_json(workdir / "results.json", {"rows": rows, "table": table})
    text = markdown(table)
    common.write_text(workdir / "results.md", text)
    print("\n" + text)
    plot_methods(workdir / "results.png", table)


def report(workdirs, out: str | Path) -> list[dict]:
    """`distill report WORKDIRS... --out DIR`: the rows of several recipe runs (sizes, seeds)
    in one table, and test accuracy against student parameters for each method."""
    rows = []
    for workdir in workdirs:
        path = common.as_path(workdir) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (is {workdir} a finished recipe run?)")
        rows += json.loads(path.read_text())["rows"]
    out = common.as_path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = summarise(rows)
    write_report(out, rows, table)
    plot_sizes(out / "accuracy_vs_size.png", table)
    return table


def plot_sizes(path: Path, table) -> None:
    """Test accuracy against parameters, one line per method (the paper's figures)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        points = sorted((e["parameters"], e["test_acc"]) for e in table
                        if e["method"] == method and e["parameters"] and e["test_acc"] is not None)
        if points:
            ax.plot([p / 1e6 for p, _ in points], [100 * a for _, a in points], marker="o",
                    label=DESCRIPTIONS[method])
    ax.set_xscale("log")
    ax.set_xlabel("student parameters (M)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with common.atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_methods(path: Path, table) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in table if e["test_acc"] is not None]
    if not entries:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{e['description']}\n({e['student']})" for e in entries]
    ax.barh(labels, [100 * e["test_acc"] for e in entries],
            xerr=[100 * e["test_acc_std"] for e in entries])
    ax.set_xlabel("test accuracy (%)")
    ax.set_xlim(45, 100)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with common.atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

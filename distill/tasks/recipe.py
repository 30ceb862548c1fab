"""The Well-Read Students recipe (Turc et al. 2019) as chained runs, and its comparison table.

For each student size and seed, five ways to a sentiment classifier are compared:

    scratch     fine-tune the randomly initialised student on the labels
    pt_ft       pre-train on unlabelled text (MLM, or the config's objective), then fine-tune
    kd          distil a fine-tuned teacher into the random student on the transfer set
    kd_ft       the control: distil into the random student (kd's run), then fine-tune as PD's
                last step does — what PD gains from its pre-training, not its last fine-tuning
    pd          Pre-trained Distillation: pre-train, distil, then fine-tune

Every stage is a run folder under the recipe's work directory; a stage whose `result.json`
exists is skipped, and an interrupted stage resumes from its checkpoints, so re-running the same
command continues where it stopped. The table (markdown + JSON) and plots go to the work
directory. Student fine-tuning runs the grid `recipe.learning_rates` × `recipe.batch_sizes` and
dev picks the cell. With `recipe.tasks` (recipe.py:paper) every task gets its own folder and
table, pre-training runs once per size for all tasks (BERT's two length phases with
`recipe.pretrain_long_fraction`), and GLUE tasks' test predictions are written as submission
files under `submissions/`.

    distill recipe --config recipe.py:demo --workdir runs/demo
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import ml_collections
import numpy as np

from distill.data import tasks as task_data
from distill.tasks import common, finetune, pretrain, sweep
from distill.tasks import distill as distill_task
from distill.tasks.common import derived, stage

log = logging.getLogger(__name__)

METHODS = ("scratch", "pt_ft", "kd", "kd_ft", "pd")


def tuned_finetune(workdir: Path, name: str, config, grid) -> dict:
    """Fine-tunes once per cell of the grid — (learning rates, batch sizes), the sweep program,
    one seed; no batch sizes: the config's own — and keeps the run dev picks: its result (test
    included) with its `lr`, `batch_size` and every cell's dev score. An empty lr grid fine-tunes
    once at the config's own lr and batch size."""
    learning_rates, batch_sizes = grid
    if not learning_rates:
        result = stage(workdir, name, finetune, config)
        return {**result, "lr": float(config.optimizer.lr),
                "batch_size": int(config.trainer.batch_size), "run": name}
    summary = sweep.run(ml_collections.ConfigDict({"finetune": config, "sweep": dict(
        learning_rates=list(learning_rates),
        batch_sizes=list(batch_sizes) or [config.trainer.batch_size],
        seeds=[config.trainer.seed])}), workdir / name)
    best = summary["best"]
    result = json.loads((workdir / name / best["runs"][0] / "result.json").read_text())
    result.update(lr=best["lr"], batch_size=best["batch_size"], run=f"{name}/{best['runs'][0]}")
    result["dev_by_cell"] = {f"lr={c['lr']:g} batch={c['batch_size']}": c["dev_mean"]
                             for c in summary["cells"]}
    result["wall_seconds"] = sum(c["wall_seconds"] for c in summary["cells"])
    return result


def write_submission(run: Path, config, out: Path) -> None:
    """The test predictions of the fine-tuning run folder `run` (its best checkpoint) as GLUE
    server submission files (`distill predict`'s) in `out`: one folder per (method, student,
    seed) collects every task's file, zipped as it is for gluebenchmark.com. Predicted once."""
    if not (run / "predictions").is_dir():
        finetune.predict_main(config, run)
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        for file in sorted((run / "predictions").iterdir()):
            if not (out / file.name).exists():
                common.write_text(out / file.name, file.read_text())


def export_pretraining_checkpoint(config, pt_workdir: Path, step: int) -> Path:
    """`pt_workdir/export_step{step}`: the pre-training checkpoint of that step in the HF layout
    (what fine-tuning loads), for the pre-training curve. Needs the checkpoint to be kept
    (`trainer.keep_checkpoints`)."""

    from distill.trainer import Trainer
    from flaxbert.pretrained import save_pretrained
    from flaxbert.tokenization import load_tokenizer

    out = pt_workdir / f"export_step{step}"
    if (out / "config.json").exists():
        return out
    tokenizer = load_tokenizer(config.data.vocab)
    task = pretrain.make_task(config, tokenizer)
    trainer = Trainer(task, config, pt_workdir)
    if step not in trainer.checkpoints.all_steps():
        raise FileNotFoundError(f"{pt_workdir / 'checkpoints'} has no step {step} (has "
                                f"{sorted(trainer.checkpoints.all_steps())}); raise "
                                "pretrain.trainer.keep_checkpoints or pick a saved step")
    state = trainer.restore_state(step)
    if jax.process_index() == 0:
        save_pretrained(out, *task.export(jax.device_get(state.params)), tokenizer)
    return out


def pretraining_mlm_accuracy(pt_workdir: Path, step: int) -> float | None:
    """Held-out MLM accuracy logged at `step` of a pre-training run (None if not evaluated)."""
    from distill.trainer import read_metrics

    for entry in read_metrics(pt_workdir):
        if entry.get("step") == step and "eval_mlm_accuracy" in entry:
            return entry["eval_mlm_accuracy"]
    return None


def run(config, workdir: str | Path) -> dict:
    """The recipe on its task, or on each of `recipe.tasks` (a folder per task; pre-training,
    which no task changes, runs once per student size for all of them)."""
    workdir = common.prepare_workdir(workdir, config)
    tasks = tuple(config.recipe.get("tasks", ()))
    if not tasks:
        return run_task(config, workdir, workdir, config.student_finetune.task.name)
    results = {task: run_task(for_task(config, task), workdir / task, workdir, task)
               for task in tasks}
    if jax.process_index() == 0:
        common.write_json(workdir / "results.json", results)
        common.write_text(workdir / "results.md", "".join(
            f"## {task}\n\n{markdown(result['table'])}\n" for task, result in results.items()))
    return results


#: The stage configs whose `task` block `for_task` points at each task.
TASK_STAGES = ("teacher_finetune", "student_finetune", "distill")


def for_task(config, task: str) -> ml_collections.ConfigDict:
    """The recipe config for one of `recipe.tasks`: its stages' task blocks name the task
    (`recipe.task_name`, `{task}` filled in: `tfds:glue/{task}` or the plain GLUE name) and its
    data folder (`recipe.task_data`), distillation its transfer set (`recipe.transfer[task]`)."""
    r = config.recipe
    if task not in r.transfer:
        raise ValueError(f"recipe.tasks has {task!r} but recipe.transfer has no transfer set for "
                         f"it (has {sorted(r.transfer)}); add --config.recipe.transfer.{task}=SPEC")
    changes = {f"{name}.task.{field}": value for name in TASK_STAGES for field, value in
               (("name", r.task_name.format(task=task)), ("data_dir", r.task_data))}
    return derived(config, **changes, **{"distill.data.transfer": r.transfer[task]})


def pretrain_phases(config, workdir: Path, student: str) -> list[tuple[str, object, int]]:
    """The pre-training runs of one student size as (folder, config, steps it trains): one run,
    or — with `recipe.pretrain_long_fraction` > 0 — BERT's two phases: short rows
    (`pretrain.data`) for the first steps in `pretrain_{student}_len{L}`, whose schedule spans all
    `trainer.num_steps`, then `recipe.pretrain_long_seq_length`-token rows
    (`recipe.pretrain_long_max_predictions` masked) in `pretrain_{student}`, continuing its
    weights, optimizer state and step to the end."""
    r = config.recipe
    pt_config = derived(config.pretrain, **{"model.name": student})
    total = int(pt_config.trainer.num_steps)
    long_fraction = float(r.get("pretrain_long_fraction", 0.0))
    if not long_fraction:
        return [(f"pretrain_{student}", pt_config, total)]
    short = round(total * (1.0 - long_fraction))
    first = f"pretrain_{student}_len{pt_config.data.max_seq_length}"
    return [(first, derived(pt_config, **{"trainer.num_steps": short,
                                          "optimizer.schedule_steps": total}), short),
            (f"pretrain_{student}", derived(pt_config, **{
                "data.max_seq_length": int(r.pretrain_long_seq_length),
                "data.max_predictions_per_seq": int(r.pretrain_long_max_predictions),
                "init_from": str(workdir / first)}), total - short)]


def pretrain_stages(config, workdir: Path, student: str) -> dict:
    """Runs `pretrain_phases` in `workdir`; the last phase's result."""
    for name, phase_config, _ in pretrain_phases(config, workdir, student):
        result = stage(workdir, name, pretrain, phase_config)
    return result


def run_task(config, workdir: Path, shared: Path, task: str) -> dict:
    """Every stage of one task in `workdir`; pre-training in `shared`. GLUE tasks (`task`, the
    plain name) also get their test predictions as submission files in
    `shared/submissions/METHOD_STUDENT_seedS/`."""
    r = config.recipe
    grid = (list(r.learning_rates), list(r.batch_sizes))
    described = descriptions(config.pretrain)
    pretraining = pretraining_name(config.pretrain)
    rows = []
    teacher = stage(workdir, "teacher", finetune, config.teacher_finetune)
    teacher_dir = str(workdir / "teacher" / "best")
    rows.append(row("teacher", r.teacher_name, 0, "fine-tuned teacher", teacher))
    glue_task = task in task_data.GLUE_TASKS
    submissions = shared / "submissions"
    if glue_task:
        write_submission(workdir / "teacher", config.teacher_finetune, submissions / "teacher")
    for student in r.students:
        pt_config = derived(config.pretrain, **{"model.name": student})
        pt_workdir = shared / f"pretrain_{student}"
        pt_dir = str(pt_workdir / "export")
        if "pt_ft" in r.methods or "pd" in r.methods:
            # pre-training does not depend on the fine-tuning seed or the task: one run per size
            pretrained = pretrain_stages(config, shared, student)
        for seed in r.seeds:
            tag = f"{student}_seed{seed}"
            student_ft = derived(config.student_finetune, **{"trainer.seed": seed})
            results = {}
            if "scratch" in r.methods:
                results["scratch"] = tuned_finetune(workdir, f"scratch_{tag}", derived(
                    student_ft, **{"model.name": student}), grid)
            if "pt_ft" in r.methods:
                results["pt_ft"] = tuned_finetune(workdir, f"pt_ft_{tag}", derived(
                    student_ft, **{"model.name": pt_dir}), grid)
                results["pt_ft"]["pretrain_steps"] = pretrained["steps"]
                results["pt_ft"]["mlm_accuracy"] = pretrained["eval_mlm_accuracy"]
                results["pt_ft"]["pretraining"] = pretraining
            distill_common = {"teacher.name": teacher_dir, "trainer.seed": seed,
                              "distill.cache": str(workdir / "teacher_logits.npz")}
            if "kd" in r.methods or "kd_ft" in r.methods:  # kd_ft fine-tunes kd's export
                distilled = stage(workdir, f"kd_{tag}", distill_task, derived(
                    config.distill, **distill_common, **{"model.name": student}))
                if "kd" in r.methods:
                    results["kd"] = distilled
            if "kd_ft" in r.methods:
                results["kd_ft"] = tuned_finetune(workdir, f"kd_ft_{tag}", derived(
                    student_ft, **{"model.name": str(workdir / f"kd_{tag}" / "export")}), grid)
            if "pd" in r.methods:
                stage(workdir, f"pd_distill_{tag}", distill_task, derived(
                    config.distill, **distill_common, **{"model.name": pt_dir}))
                results["pd"] = tuned_finetune(workdir, f"pd_{tag}", derived(
                    student_ft, **{"model.name": str(workdir / f"pd_distill_{tag}" / "export")}),
                    grid)
                results["pd"]["pretrain_steps"] = pretrained["steps"]
                results["pd"]["mlm_accuracy"] = pretrained["eval_mlm_accuracy"]
                results["pd"]["pretraining"] = pretraining
            for method, result in results.items():
                rows.append(row(method, student, seed, described[method], result))
                if glue_task and "run" in result:
                    write_submission(workdir / result["run"], student_ft,
                                     submissions / f"{method}_{tag}")
        # the pre-training curve: plain fine-tuning from earlier checkpoints of the same run,
        # after every seed's headline methods (the curve points may be added to a finished run)
        for step in r.pretrain_checkpoints:
            if "pt_ft" not in r.methods or step >= pretrained["steps"]:
                continue
            export = export_pretraining_checkpoint(pt_config, pt_workdir, step)
            for seed in r.seeds:
                result = tuned_finetune(workdir, f"pt_ft_step{step}_{student}_seed{seed}", derived(
                    config.student_finetune, **{"trainer.seed": seed, "model.name": str(export)}),
                    grid)
                result["pretrain_steps"] = step
                result["mlm_accuracy"] = pretraining_mlm_accuracy(pt_workdir, step)
                result["pretraining"] = pretraining
                rows.append(row("pt_ft", student, seed, described["pt_ft"], result))
    table = summarise(rows)
    write_report(workdir, rows, table)
    return {"rows": rows, "table": table}


DESCRIPTIONS = {
    "scratch": "fine-tune from scratch",
    "pt_ft": "MLM pre-train + fine-tune",
    "kd": "distil from scratch (transfer set)",
    "kd_ft": "distil from scratch + fine-tune (control, no pre-training)",
    "pd": "pre-train + distil + fine-tune (PD)",
}


def pretraining_name(pretrain_config) -> str:
    """The pre-training PT+FT and PD rows start from: its objective, and its text when the
    task's own train texts joined it ("MLM", "ELECTRA on in-domain text")."""
    objective = {"mlm": "MLM", "electra": "ELECTRA"}[pretrain_config.get("objective", "mlm")]
    in_domain = bool(pretrain_config.data.get("task_texts", ""))
    return objective + " on in-domain text" * in_domain


def descriptions(pretrain_config) -> dict[str, str]:
    """DESCRIPTIONS with a non-default pre-training (`pretraining_name`) named in the PT+FT and
    PD rows."""
    name = pretraining_name(pretrain_config)
    if name == "MLM":
        return DESCRIPTIONS
    objective, on, text = name.partition(" on ")
    what = f"{objective} pre-train{on}{text}"
    return {**DESCRIPTIONS, "pt_ft": f"{what} + fine-tune", "pd": f"{what} + distil + fine-tune (PD)"}


def row(method, student, seed, description, result) -> dict:
    """One run's line: dev/test accuracy (fine-tuned runs) or dev accuracy as it distilled; the
    lr dev picked, and for pre-trained students the pre-training steps and MLM accuracy."""
    dev = result.get("dev") or {k[4:]: v for k, v in result.get("final", {}).items()
                                if k.startswith("dev_")}
    return {"method": method, "student": student, "seed": seed, "description": description,
            "dev_acc": dev.get("acc"), "test_acc": result.get("test", {}).get("acc"),
            "lr": result.get("lr"), "batch_size": result.get("batch_size"),
            "pretrain_steps": result.get("pretrain_steps"),
            "mlm_accuracy": result.get("mlm_accuracy"), "pretraining": result.get("pretraining"),
            "parameters": result.get("parameters") or result.get("student_parameters"),
            "wall_seconds": result.get("wall_seconds")}


def summarise(rows) -> list[dict]:
    """Mean ± std (population, over seeds) for each (method, student, pre-training steps,
    description — which names the pre-training objective and text)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["method"], r["student"], r.get("pretrain_steps"), r["description"])
        groups.setdefault(key, []).append(r)
    table = []
    for (method, student, steps, _), runs in groups.items():
        entry = {"method": method, "student": student, "pretrain_steps": steps,
                 "seeds": len(runs), "description": runs[0]["description"],
                 "pretraining": runs[0].get("pretraining"),
                 "parameters": runs[0].get("parameters"),
                 "lrs": sorted({r["lr"] for r in runs if r.get("lr") is not None}),
                 "wall_seconds": float(sum(r["wall_seconds"] or 0 for r in runs))}
        for key in ("dev_acc", "test_acc", "mlm_accuracy"):
            values = [r[key] for r in runs if r.get(key) is not None]
            entry[key] = float(np.mean(values)) if values else None
            entry[key + "_std"] = float(np.std(values)) if len(values) > 1 else 0.0
        table.append(entry)
    for entry in table:
        entry["within_spread_of"] = within_spread(entry, table)
    return table


def label(entry) -> str:
    steps = entry.get("pretrain_steps")
    return entry["description"] + (f" [{steps:,} PT steps]" if steps else "")


def within_spread(entry, table) -> list[str]:
    """The other methods of the same student whose mean test accuracy differs from this one's by
    less than the larger of the two standard deviations over seeds: an ordering between them is
    not shown by these runs. Needs several seeds (with one seed there is no spread to compare)."""
    if entry["test_acc"] is None or entry["seeds"] < 2:
        return []
    out = []
    for other in table:
        if other is entry or other["student"] != entry["student"] or other["test_acc"] is None \
                or other["seeds"] < 2:
            continue
        spread = max(entry["test_acc_std"], other["test_acc_std"])
        if abs(entry["test_acc"] - other["test_acc"]) < spread:
            out.append(label(other))
    return out


def markdown(table) -> str:
    """The results table; test accuracy is the headline (dev picked each fine-tuning lr)."""
    lines = ["| method | student | parameters | seeds | fine-tuning lr (dev-picked) | "
             "held-out MLM acc | dev acc | **test acc** | within the spread of | wall time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        def fmt(key):
            if e[key] is None:
                return "–"
            return f"{100 * e[key]:.1f}" + (f" ± {100 * e[key + '_std']:.1f}" if e["seeds"] > 1 else "")
        params = f"{e['parameters'] / 1e6:.1f}M" if e.get("parameters") else "–"
        lrs = ", ".join(f"{lr:g}" for lr in e.get("lrs", [])) or "–"
        if e["seeds"] < 2:
            spread = "one seed: no spread" if e["method"] != "teacher" else "–"
        else:
            spread = "; ".join(e["within_spread_of"]) or "none"
        lines.append(f"| {label(e)} | {e['student']} | {params} | {e['seeds']} | {lrs} | "
                     f"{fmt('mlm_accuracy')} | {fmt('dev_acc')} | **{fmt('test_acc')}** | "
                     f"{spread} | {e['wall_seconds'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def write_report(workdir: Path, rows, table) -> None:
    if jax.process_index() != 0:
        return
    common.write_json(workdir / "results.json", {"rows": rows, "table": table})
    text = markdown(table)
    common.write_text(workdir / "results.md", text)
    print("\n" + text)
    plot_methods(workdir / "results.png", table)
    plot_pretraining_curve(workdir / "pretraining_curve.png", table)


def report(workdirs, out: str | Path) -> list[dict]:
    """`distill report WORKDIRS... --out DIR`: the rows of several recipe runs (sizes, seeds)
    in one table, and test accuracy against student parameters for each method. A run found in
    several work directories (a teacher copied in to be reused, a seed re-run) counts once, as
    the first directory has it: a copy is not another seed."""
    rows, found_in = [], {}
    for workdir in workdirs:
        path = common.as_path(workdir) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (is {workdir} a finished recipe run?)")
        for r in json.loads(path.read_text())["rows"]:
            key = (r["method"], r["student"], r["seed"], r.get("pretrain_steps"), r["description"])
            if key in found_in:
                log.warning("%s: %s, %s, seed %s is also in %s; counted once, from there", workdir,
                            label(r), r["student"], r["seed"], found_in[key])
                continue
            found_in[key] = workdir
            rows.append(r)
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

    def longest_pretraining(e):  # curve points (earlier checkpoints) stay off this plot
        steps = [o.get("pretrain_steps") or 0 for o in table
                 if (o["method"], o["student"]) == (e["method"], e["student"])]
        return (e.get("pretrain_steps") or 0) == max(steps)

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        points = sorted((e["parameters"], e["test_acc"]) for e in table
                        if e["method"] == method and e["parameters"] and e["test_acc"] is not None
                        and longest_pretraining(e))
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


def accuracy_axis(acc, std) -> tuple[float, float]:
    """An accuracy axis (%) from 3 points under the lowest bar's error bar to 3 over the highest
    (its labels fit), at most 100: two-point gaps take a visible share of it."""
    low, high = float(np.min(acc - std)), float(np.max(acc + std))
    return float(np.floor(low) - 3), min(100.0, float(np.ceil(high) + 3))


def plot_methods(path: Path, table) -> None:
    """Test accuracy per method, each bar labelled with its accuracy, on an axis that starts a
    few points under the lowest bar (a 45–100 axis hides the two-point gaps between students);
    mean ± std error bars when a method has several seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in table if e["test_acc"] is not None]
    if not entries:
        return
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * len(entries)))
    labels = [f"{label(e)}\n({e['student']}, {e['seeds']} seed{'s' * (e['seeds'] > 1)})"
              for e in entries]
    acc = np.array([100 * e["test_acc"] for e in entries])
    std = np.array([100 * e["test_acc_std"] for e in entries])
    several = any(e["seeds"] > 1 for e in entries)
    bars = ax.barh(labels, acc, xerr=std if several else None, capsize=3)
    ax.bar_label(bars, [f"{a:.1f}" + (f" ± {s:.1f}" if e["seeds"] > 1 else "")
                        for a, s, e in zip(acc, std, entries)], padding=4, fontsize=8)
    ax.set_xlim(*accuracy_axis(acc, std))
    ax.invert_yaxis()  # the table's order, top to bottom
    ax.set_xlabel("test accuracy (%)" + (", mean ± std over seeds" if several else ", one seed"))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with common.atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def pretraining_curves(table) -> dict[tuple[str, str], list[dict]]:
    """The PT+FT and PD entries of each (student, pre-training); rows written before the
    pre-training was named are MLM's."""
    curves = {}
    for e in table:
        if e["method"] in ("pt_ft", "pd") and e.get("pretrain_steps"):
            curves.setdefault((e["student"], e.get("pretraining") or "MLM"), []).append(e)
    return curves


def plot_pretraining_curve(path: Path, table) -> None:
    """Held-out MLM accuracy and PT+FT / PD test accuracy against pre-training steps (step 0 =
    fine-tuning from scratch), one panel each, a line per student and pre-training (objective
    and text: `pretraining_name`; an ELECTRA run's MLM accuracy is its generator's); written
    when some line has two or more pre-training budgets."""
    curves = pretraining_curves(table)
    if not any(len([e for e in c if e["method"] == "pt_ft"]) > 1 for c in curves.values()):
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mlm, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.5))
    scratch_drawn = set()
    for (student, pretraining), entries in curves.items():
        name = f"{student}, {pretraining}"
        pt = sorted((e for e in entries if e["method"] == "pt_ft"), key=lambda e: e["pretrain_steps"])
        mlm = [(e["pretrain_steps"], e["mlm_accuracy"]) for e in pt if e["mlm_accuracy"] is not None]
        if mlm:
            ax_mlm.plot(*zip(*[(s, 100 * a) for s, a in mlm]), marker="o", label=name)
        scratch = [e for e in table if (e["method"], e["student"]) == ("scratch", student)
                   and e["test_acc"] is not None]
        for method in ("pt_ft", "pd"):
            points = sorted((e["pretrain_steps"], e["test_acc"], e["test_acc_std"]) for e in entries
                            if e["method"] == method and e["test_acc"] is not None)
            if method == "pt_ft" and scratch:
                points = [(0, scratch[0]["test_acc"], scratch[0]["test_acc_std"])] + points
            if points:
                steps, acc, std = zip(*points)
                ax_acc.errorbar(steps, [100 * a for a in acc], yerr=[100 * s for s in std],
                                marker="o" if method == "pt_ft" else "s", capsize=3,
                                ls="-" if method == "pt_ft" else "--",
                                label=f"{'PT+FT' if method == 'pt_ft' else 'PD'} ({name})")
        if scratch and student not in scratch_drawn:
            scratch_drawn.add(student)
            ax_acc.axhline(100 * scratch[0]["test_acc"], ls=":", c="grey",
                           label=f"fine-tune from scratch ({student})")
    ax_mlm.set(xlabel="pre-training steps", ylabel="held-out MLM accuracy (%)")
    ax_acc.set(xlabel="pre-training steps (0 = from scratch)", ylabel="test accuracy (%)")
    for ax in (ax_mlm, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with common.atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

"""The replica's pre-training curve across schedules, from the runs themselves: held-out MLM
accuracy against pre-training tokens (one line per schedule), fine-tuned test accuracy against
the same tokens with fine-tuning from scratch as the reference band, and below them the
fine-tuning learning curves (dev accuracy, training loss) of scratch and of each schedule's PT+FT.

    # the committed figure: the replica's work directory alone
    python tools/plot_pretraining_curve.py --out experiments/figures/pretraining_curve.png \
        --recipe runs/replica
    # pre-training objectives side by side: one recipe work directory each (objective and text
    # are read from each run's config and name its line; ELECTRA's MLM accuracy is its generator's)
    python tools/plot_pretraining_curve.py --recipe runs/mlm --recipe runs/electra
    # with other schedules beside it (`distill pretrain` runs and their fine-tunings)
    python tools/plot_pretraining_curve.py --recipe runs/replica \
        --schedule "10k-step=runs/pt10k,runs/pt10k_ft,runs/pd10k/ft"

Each `--recipe` is a `distill recipe` work directory: its pre-training run (`pretrain_<student>`)
is a schedule of its own; its finished fine-tunings give the points, mean ± std over the seeds
found: fine-tuning from scratch the band (from the first --recipe that has it; a work directory
of scratch runs alone may give it to the others), PT+FT and PD at the schedule's end, PT+FT from
the curve's earlier checkpoints. Each `--schedule LABEL=PRETRAIN_DIR[,FINETUNE_DIR[,PD_DIR]]` adds a
`distill pretrain` run; FINETUNE_DIR holds its fine-tuning from the run's export, PD_DIR the
fine-tuning of the student distilled from it (`distill distill` from that export, as the
recipe's PD stage): each a `distill sweep` (the best cell on dev) or folders of single
`distill finetune` runs (the one best on dev) — dev picks, test reports.
"""

import json
from pathlib import Path

import ml_collections
import numpy as np
from absl import app, flags

from distill.tasks.recipe import pretraining_name

flags.DEFINE_string("out", "experiments/figures/pretraining_curve.png", "the figure to write")
flags.DEFINE_multi_string("recipe", [], "a `distill recipe` work directory (repeatable)")
flags.DEFINE_multi_string("schedule", [], "LABEL=PRETRAIN_DIR[,FINETUNE_DIR]")
FLAGS = flags.FLAGS


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: not found; expected a finished run's {path.name}") from None


def mlm_curve(pretrain_dir: Path) -> tuple[list[float], list[float], int]:
    """(tokens, held-out MLM accuracy) at each evaluation, and the schedule's last step."""
    data = read_json(pretrain_dir / "config.json")
    tokens_per_step = data["trainer"]["batch_size"] * data["data"]["max_seq_length"]
    points = []
    for line in (pretrain_dir / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "eval_mlm_accuracy" in entry:
            points.append((entry["step"] * tokens_per_step, entry["eval_mlm_accuracy"]))
    if not points:
        raise SystemExit(f"{pretrain_dir}/metrics.jsonl: no eval_mlm_accuracy; expected a "
                         "`distill pretrain` run with eval_every set")
    tokens, accuracy = zip(*sorted(points))
    return list(tokens), list(accuracy), data["trainer"]["num_steps"] * tokens_per_step


def best_on_dev(finetune_dir: Path) -> tuple[float, Path]:
    """Test accuracy of the fine-tuning picked on dev, and the (first seed's) run folder."""
    if (finetune_dir / "sweep.json").exists():
        best = read_json(finetune_dir / "sweep.json")["best"]
        return best["test_mean"], finetune_dir / best["runs"][0]
    results = {p.parent: read_json(p) for p in sorted(finetune_dir.glob("*/result.json"))}
    if not results:
        raise SystemExit(f"{finetune_dir}: no sweep.json and no */result.json; expected "
                         "`distill sweep` or `distill finetune` runs")
    run, best = max(results.items(), key=lambda item: item[1]["dev"][item[1]["main_metric"]])
    return best["test"][best["main_metric"]], run


def seed_tests(recipe: Path, prefix: str) -> list[float]:
    """Dev-picked test accuracy of every finished seed of one recipe method (`PREFIX_seed<N>`)."""
    return [best_on_dev(sweep.parent)[0]
            for sweep in sorted(recipe.glob(f"{prefix}_seed*/sweep.json"))]


def seeds_label(n: int) -> str:
    return f"{n} seed{'s' * (n > 1)}"


def plot_learning_curve(ax_dev, ax_loss, run: Path, label: str, color=None) -> None:
    """Dev accuracy at each evaluation and the training loss (mean over 100 steps) of one
    fine-tuning run."""
    entries = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    dev = [(e["step"], 100 * e[k]) for e in entries for k in e if k.startswith("eval_acc")]
    loss = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    line, = ax_dev.plot(*zip(*dev), marker=".", label=label, color=color)
    window = max(1, 100 // max(1, loss[1][0] - loss[0][0]) if len(loss) > 1 else 1)
    smooth = np.convolve([v for _, v in loss], np.ones(window) / window, mode="valid")
    ax_loss.plot([s for s, _ in loss][window - 1:], smooth, label=label, color=line.get_color())


def main(argv):
    del argv
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((ax_mlm, ax_acc), (ax_dev, ax_loss)) = plt.subplots(2, 2, figsize=(11, 8.4))
    scratch_drawn = set()
    for recipe in map(Path, FLAGS.recipe):
        # the reference band: any recipe's fine-tuning from scratch (a scratch-only work
        # directory serves the others), once per student
        for first_seed in sorted(recipe.glob("scratch_*_seed0")):
            student = first_seed.name.removeprefix("scratch_").removesuffix("_seed0")
            scratch = seed_tests(recipe, f"scratch_{student}")
            if scratch and student not in scratch_drawn:
                scratch_drawn.add(student)
                mean, std = 100 * np.mean(scratch), 100 * np.std(scratch)
                ax_acc.axhspan(mean - std, mean + std, color="grey", alpha=0.25,
                               label=f"fine-tune from scratch, {student} "
                                     f"({seeds_label(len(scratch))}, ± std)")
                _, run = best_on_dev(first_seed)
                plot_learning_curve(ax_dev, ax_loss, run, f"from scratch, {student}",
                                    color="grey")
        for pretrain_dir in sorted(recipe.glob("pretrain_*")):
            student = pretrain_dir.name.removeprefix("pretrain_")
            tokens, accuracy, end = mlm_curve(pretrain_dir)
            pt_config = ml_collections.ConfigDict(read_json(pretrain_dir / "config.json"))
            steps = pt_config.trainer.num_steps
            label = f"{pretraining_name(pt_config)}, {steps:,} steps"
            line, = ax_mlm.plot([t / 1e6 for t in tokens], [100 * a for a in accuracy],
                                marker="o", label=label)
            # the schedule's end, and the curve's earlier checkpoints (pt_ft_step<N>_...)
            points = {("PT+FT", steps): seed_tests(recipe, f"pt_ft_{student}"),
                      ("PD", steps): seed_tests(recipe, f"pd_{student}")}
            for folder in recipe.glob(f"pt_ft_step*_{student}_seed0"):
                step = int(folder.name.split("_")[2].removeprefix("step"))
                points["PT+FT", step] = seed_tests(recipe, f"pt_ft_step{step}_{student}")
            for (method, step), tests in sorted(points.items()):
                if tests:
                    ax_acc.errorbar([step * end / steps / 1e6], [100 * np.mean(tests)],
                                    yerr=[100 * np.std(tests)], capsize=3,
                                    marker="o" if method == "PT+FT" else "s",
                                    color=line.get_color(), label=f"{method}, {label} at "
                                    f"{step:,} ({seeds_label(len(tests))})")
            if (recipe / f"pt_ft_{student}_seed0").exists():
                _, run = best_on_dev(recipe / f"pt_ft_{student}_seed0")
                plot_learning_curve(ax_dev, ax_loss, run, f"PT+FT, {label}", color=line.get_color())
    for spec in FLAGS.schedule:
        label, _, dirs = spec.partition("=")
        if not dirs or len(dirs.split(",")) > 3:
            raise SystemExit(f"--schedule {spec!r}: expected "
                             "LABEL=PRETRAIN_DIR[,FINETUNE_DIR[,PD_DIR]]")
        pretrain_dir, finetune_dir, pd_dir = (dirs.split(",") + ["", ""])[:3]
        tokens, accuracy, end = mlm_curve(Path(pretrain_dir))
        line, = ax_mlm.plot([t / 1e6 for t in tokens], [100 * a for a in accuracy], marker="o",
                            label=f"{label} schedule")
        for method, folder, marker in (("PT+FT", finetune_dir, "D"), ("PD", pd_dir, "s")):
            if folder:
                test, run = best_on_dev(Path(folder))
                if method == "PT+FT":
                    plot_learning_curve(ax_dev, ax_loss, run, f"PT+FT, {label} schedule",
                                        color=line.get_color())
                ax_acc.plot([end / 1e6], [100 * test], marker=marker, ls="none",
                            color=line.get_color(),
                            label=f"{method}, {label} schedule at its end (seed 0)")
    ax_mlm.set(xlabel="pre-training tokens (M)", ylabel="held-out MLM accuracy (%)")
    ax_acc.set_xlim(0, ax_mlm.get_xlim()[1])  # the MLM panel's token axis (the band spans none)
    ax_acc.set(xlabel="pre-training tokens (M)", ylabel="test accuracy (%), lr picked on dev")
    ax_dev.set(xlabel="fine-tuning step (seed 0, the dev-picked lr)", ylabel="dev accuracy (%)")
    ax_loss.set(xlabel="fine-tuning step (seed 0, the dev-picked lr)",
                ylabel="training loss (mean over 100 steps)")
    for ax in (ax_mlm, ax_acc, ax_dev, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FLAGS.out, dpi=100)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)

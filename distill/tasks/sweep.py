"""A fine-tuning grid (learning rate × batch size) over several seeds, run one after another,
with the best cell picked on dev by the mean over seeds — small tasks swing by points between
seeds, so one seed per cell would pick noise.

    distill sweep --config sweep_finetune.py:sentiment --workdir runs/sweep

Each run is its own folder (`lr{lr}_bs{bs}_seed{seed}`) and is skipped when finished, so the sweep
resumes. Results: `sweep.md` and `sweep.json` (every cell's mean ± std, the best cell).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from distill.tasks import common, finetune
from distill.tasks.common import derived, stage


def run(config, workdir: str | Path) -> dict:
    workdir = common.prepare_workdir(workdir, config)
    s = config.sweep
    cells = []
    for lr, batch_size in itertools.product(s.learning_rates, s.batch_sizes):
        scores, tests, runs, wall = [], [], [], 0.0
        for seed in s.seeds:
            runs.append(f"lr{lr:g}_bs{batch_size}_seed{seed}")
            result = stage(workdir, runs[-1], finetune, derived(
                config.finetune, **{"optimizer.lr": lr, "trainer.batch_size": batch_size,
                                    "trainer.seed": seed}))
            wall += result.get("wall_seconds") or 0.0
            main = result["main_metric"]
            scores.append(result["dev"][main])
            if "test" in result:
                tests.append(result["test"][main])
        cells.append({"lr": lr, "batch_size": batch_size, "metric": main, "seeds": list(s.seeds),
                      "runs": runs, "wall_seconds": wall,
                      "dev": scores, "dev_mean": float(np.mean(scores)),
                      "dev_std": float(np.std(scores)), "test_mean": float(np.mean(tests)) if tests else None,
                      "test_std": float(np.std(tests)) if tests else None})
    best = max(cells, key=lambda c: c["dev_mean"])
    summary = {"task": config.finetune.task.name, "cells": cells, "best": best}
    common.write_json(workdir / "sweep.json", summary)
    common.write_text(workdir / "sweep.md", markdown(cells, best))
    print(markdown(cells, best))
    return summary


def markdown(cells, best) -> str:
    metric = cells[0]["metric"]
    lines = [f"| lr | batch | dev {metric} (mean ± std over seeds) | test {metric} | |",
             "|---|---|---|---|---|"]
    for c in cells:
        test = "–" if c["test_mean"] is None else f"{100 * c['test_mean']:.1f} ± {100 * c['test_std']:.1f}"
        mark = "best on dev" if c is best else ""
        lines.append(f"| {c['lr']:g} | {c['batch_size']} | {100 * c['dev_mean']:.1f} ± "
                     f"{100 * c['dev_std']:.1f} | {test} | {mark} |")
    return "\n".join(lines) + "\n"



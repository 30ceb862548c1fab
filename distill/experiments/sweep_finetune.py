"""The compact models' fine-tuning grid (Turc et al. 2019 release): batch {8,16,32,64,128} ×
lr {3e-4,1e-4,5e-5,3e-5}, 4 epochs, over seeds; the best cell is chosen on dev by its mean.

    distill sweep --config sweep_finetune.py:sentiment --workdir runs/sweep_tiny \
        --config.finetune.model.name=tiny
    distill sweep --config sweep_finetune.py:sentiment --workdir runs/ft_grid \
        --config.finetune.model.name=runs/pt/export --config.sweep.batch_sizes="(32,)" \
        --config.sweep.seeds="(0,)"      # the paper's four lrs at one batch size and seed

Expected: the 20 × 3 runs of BERT-Tiny on the demo sentiment task take about an hour on 2 CPU
cores; `small` (2 lrs × 2 batches × 2 seeds) takes a few minutes.
"""

import ml_collections

from distill.experiments import finetune


def get_config(arg: str = "sentiment") -> ml_collections.ConfigDict:
    task, _, size = arg.partition(",")
    config = ml_collections.ConfigDict()
    config.finetune = finetune.get_config(task)
    config.finetune.model.name = "tiny"
    config.finetune.trainer.num_epochs = 4
    small = size == "small"
    config.sweep = ml_collections.ConfigDict(dict(
        learning_rates=(1e-4, 3e-4) if small else (3e-4, 1e-4, 5e-5, 3e-5),
        batch_sizes=(16, 32) if small else (8, 16, 32, 64, 128),
        seeds=(0, 1) if small else (0, 1, 2),
    ))
    return config

"""The Well-Read Students comparison (Turc et al. 2019, Table/Figure "pre-training + distillation")
as one chained recipe: teacher fine-tuning, then for each student size and seed — fine-tune from
scratch, MLM pre-train + fine-tune, distil from scratch, and Pre-trained Distillation.

`demo` is the small real-data replica `make demo` runs on a laptop CPU: the all-MiniLM-L6-v2
teacher, BERT-Tiny students, the VADER movie-snippet sentiment task (8,456 / 1,056 / 1,056), the
other VADER texts as unlabelled pre-training and transfer text.

    distill recipe --config experiments/recipe.py:demo --workdir runs/demo

Expected: about 15 minutes on 2 CPU cores; the table in runs/demo/results.md (see
experiments/README.md for the figures we measured and how they compare with the paper's order).
For a full-scale run: `experiments/recipe.py:full` with the GLUE data and a BERT-Base/Large
teacher (see experiments/README.md).
"""

import importlib.util
from pathlib import Path

import ml_collections


def _experiment(name: str, arg: str) -> ml_collections.ConfigDict:
    """Another experiment file's config (they live beside this one, not in a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    if arg not in ("demo", "full"):
        raise ValueError(f"experiments/recipe.py:{arg}; expected demo or full")
    config = ml_collections.ConfigDict()
    config.recipe = ml_collections.ConfigDict(dict(
        students=["tiny"] if arg == "demo" else ["tiny", "mini", "small", "medium"],
        seeds=[0] if arg == "demo" else [0, 1, 2],
        methods=["scratch", "pt_ft", "kd", "pd"],
        teacher_name="all-MiniLM-L6-v2",
    ))
    config.teacher_finetune = _experiment("finetune", "sentiment")
    config.teacher_finetune.trainer.num_epochs = 1 if arg == "demo" else 2
    config.student_finetune = _experiment("finetune", "sentiment")
    config.student_finetune.optimizer.lr = 1e-4
    config.student_finetune.trainer.num_epochs = 4
    config.pretrain = _experiment("pretrain", "tiny")
    config.pretrain.data.max_seq_length = 64
    config.pretrain.data.max_predictions_per_seq = 10
    config.pretrain.trainer.num_steps = 1500 if arg == "demo" else 20000
    config.pretrain.trainer.eval_every = 750
    config.pretrain.trainer.checkpoint_every = 750
    config.distill = _experiment("distill", "task")
    config.distill.trainer.num_epochs = 2
    return config

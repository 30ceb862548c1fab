"""Fine-tuning on a sentence(-pair) task: the demo's movie-snippet sentiment task, or a GLUE task
from its official download (`--config.task.data_dir=/path/to/glue_data`).

    distill finetune --config finetune.py:sentiment --workdir runs/ft_teacher \
        --config.model.name=$FLAXBERT_ASSETS/all-MiniLM-L6-v2
    distill finetune --config finetune.py:sst2 --workdir runs/sst2_tiny \
        --config.model.name=tiny --config.task.data_dir=glue_data

The release's grid for the 24 compact models: batch {8,16,32,64,128} × lr {3e-4,1e-4,5e-5,3e-5},
4 epochs (sweep_finetune.py runs it).

Expected: the all-MiniLM-L6-v2 teacher reaches ≈ 0.84 dev accuracy on `sentiment` in one epoch
(lr 5e-5, batch 32, max length 64; under 3 minutes on 2 CPU cores, 2 epochs by default); BERT-Tiny
from scratch ≈ 0.77 with the recipe's student settings (lr 1e-4, 4 epochs).
"""

import ml_collections

from distill import defaults


def get_config(arg: str = "sentiment") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = defaults.model(str(defaults.MINILM))
    config.task = ml_collections.ConfigDict(dict(
        name=arg,                        # sentiment | cola sst2 mrpc stsb qqp mnli qnli rte wnli | columns
        data_dir=str(defaults.VADER) if arg == "sentiment" else "",
        seed=0,                          # the sentiment task's 80/10/10 split
        # for name=columns: JSONL/CSV/TSV files with named columns
        train="", dev="", test="", text_a="sentence", text_b="", label="label", labels=(),
    ))
    config.data = ml_collections.ConfigDict(dict(
        vocab=str(defaults.MINILM / "vocab.txt"),  # used when the model is a preset
        max_seq_length=64 if arg == "sentiment" else 128,
        buckets=(16, 32, 48, 64, 128),
        group_by_length=True,            # similar lengths share a batch: far less padding
    ))
    config.trainer = defaults.trainer(batch_size=32, num_steps=0, num_epochs=2, eval_every=200,
                                      checkpoint_every=200, log_every=20)
    config.optimizer = defaults.optimizer(lr=5e-5, warmup_fraction=0.1, weight_decay=0.01)
    config.mesh = defaults.mesh()
    return config

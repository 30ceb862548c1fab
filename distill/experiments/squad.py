"""Extractive QA fine-tuning on SQuAD v1.1 or v2.0 (the task MobileBERT is known for), from the
official JSON files you download by hand.

    distill squad --config squad.py:v1 --workdir runs/squad_tiny \
        --config.model.name=runs/pd/export \
        --config.task.train=train-v1.1.json --config.task.dev=dev-v1.1.json

Expected: BERT-Base ≈ 88 F1 on v1.1 dev (Devlin et al. 2019); compact students lower.
"""

import ml_collections

from distill import defaults


def get_config(arg: str = "v1") -> ml_collections.ConfigDict:
    if arg not in ("v1", "v2"):
        raise ValueError(f"squad.py:{arg}; expected v1 or v2")
    config = ml_collections.ConfigDict()
    config.model = defaults.model(str(defaults.MINILM))
    config.task = ml_collections.ConfigDict(dict(train="", dev=""))
    config.data = ml_collections.ConfigDict(dict(
        vocab=str(defaults.MINILM / "vocab.txt"), max_seq_length=384, doc_stride=128,
        max_query_length=64, n_best_size=20, max_answer_length=30,
        null_score_diff_threshold=0.0, version_2=arg == "v2"))
    config.trainer = defaults.trainer(batch_size=32, num_steps=0, num_epochs=2, eval_every=2000,
                                      checkpoint_every=1000)
    config.optimizer = defaults.optimizer(lr=5e-5, warmup_fraction=0.1)
    config.mesh = defaults.mesh()
    return config

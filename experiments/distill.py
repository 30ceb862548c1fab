"""Distillation of a teacher into a compact student, from config.

Variants (the argument after the colon):
  task       PD step 2 (Turc et al. 2019): a fine-tuned teacher labels the unlabelled transfer set;
             the student learns its soft labels (soft cross-entropy, T = 1). Dev accuracy on the
             labelled task is reported as it trains.
  embedding  sentence-embedding distillation (how all-MiniLM-style encoders are shrunk): the
             student's mean-pooled embedding → the teacher's through a projection, cosine loss.
  tinybert   intermediate-layer distillation: hidden states (embeddings included) through a
             learned projection, uniform layer map, MSE (TinyBERT's general distillation).

    distill distill --config experiments/distill.py:task --workdir runs/kd_tiny \
        --config.teacher.name=runs/ft_teacher/best
    distill distill --config experiments/distill.py:embedding --workdir runs/emb_tiny

Expected on the demo data (BERT-Tiny student, all-MiniLM-L6-v2 teacher, 2 CPU cores):
  task: dev accuracy well above chance, teacher agreement ≈ 0.8 after 2 epochs (≈ 3 min);
  embedding: held-out student–teacher cosine ≥ 0.8 within a few minutes.
"""

import ml_collections

from distill import defaults


def get_config(arg: str = "task") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.teacher = ml_collections.ConfigDict(dict(name=str(defaults.MINILM), dtype="float32"))
    config.model = defaults.model("tiny")
    config.task = ml_collections.ConfigDict(dict(
        name="sentiment" if arg == "task" else "", data_dir=str(defaults.VADER), seed=0,
        train="", dev="", test="", text_a="sentence", text_b="", label="label", labels=()))
    config.data = ml_collections.ConfigDict(dict(
        transfer="vader", vader_dir=str(defaults.VADER), max_seq_length=64,
        buckets=(16, 32, 48, 64, 128),
        group_by_length=True,            # similar lengths share a batch: far less padding
        vocab=str(defaults.MINILM / "vocab.txt")))
    terms = {
        "task": [dict(feature="logits", loss="soft_ce", weight=1.0, temperature=1.0,
                      t_squared=False)],
        "embedding": [dict(feature="embedding", loss="cosine", weight=1.0, pooling="mean")],
        "tinybert": [dict(feature="hidden", loss="mse", weight=1.0, layers="uniform")],
    }
    if arg not in terms:
        raise ValueError(f"experiments/distill.py:{arg}; expected one of {sorted(terms)}")
    config.distill = ml_collections.ConfigDict(dict(
        terms=terms[arg],
        alpha=1.0,                      # weight of the distillation terms vs the hard labels
        student_init="model",           # model (preset = random, or a folder) | first | every_other
                                        # | teacher_embeddings (PCA of the teacher's tables)
        include_train_texts=arg == "task",  # the labelled task's texts join the transfer set
        cache="",                       # teacher-logit cache (.npz); '' = live teacher
        held_out=512,                   # transfer examples scored for the eval_ losses
    ))
    config.trainer = defaults.trainer(batch_size=32, num_steps=0, num_epochs=2, eval_every=300,
                                      checkpoint_every=300, log_every=20)
    config.optimizer = defaults.optimizer(lr=1e-3 if arg != "task" else 5e-4, warmup_fraction=0.1)
    config.mesh = defaults.mesh()
    return config

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
  embedding: held-out student–teacher cosine 0.57 after 300 steps, 0.69 after 1,200 (≈ 3 min;
    measured 2026-12-02). From a random init at lr 1e-3: 0.43 after 300 steps; from the demo's
    MLM-pre-trained BERT-Tiny: 0.38. The target of 0.8 needs more steps or a wider student.
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
        # model (preset = random, or a folder) | first | every_other | teacher_embeddings (PCA of
        # the teacher's tables: the embedding variant's start, 0.57 vs 0.43 cosine after 300 steps)
        student_init="teacher_embeddings" if arg == "embedding" else "model",
        include_train_texts=arg == "task",  # the labelled task's texts join the transfer set
        cache="",                       # teacher-logit cache (.npz); '' = live teacher
        held_out=512,                   # transfer examples scored for the eval_ losses
    ))
    config.trainer = defaults.trainer(batch_size=32, num_steps=0, num_epochs=2, eval_every=300,
                                      checkpoint_every=300, log_every=20)
    lr = {"task": 5e-4, "embedding": 3e-3, "tinybert": 1e-3}[arg]
    config.optimizer = defaults.optimizer(lr=lr, warmup_fraction=0.1)
    config.mesh = defaults.mesh()
    return config

"""Distillation of a teacher into a compact student, from config.

Variants (the argument after the colon):
  task       PD step 2 (Turc et al. 2019): a fine-tuned teacher labels the unlabelled transfer set;
             the student learns its soft labels (soft cross-entropy, T = 1). Dev accuracy on the
             labelled task is reported as it trains.
  embedding  sentence-embedding distillation (how all-MiniLM-style encoders are shrunk): the
             student's mean-pooled embedding → the teacher's through a projection, cosine loss.
  tinybert   intermediate-layer distillation: hidden states (embeddings included) through a
             learned projection, uniform layer map, MSE (TinyBERT's general distillation).

    distill distill --config distill.py:task --workdir runs/kd_tiny \
        --config.teacher.name=runs/ft_teacher/best
    distill distill --config distill.py:embedding --workdir runs/emb_tiny

Expected on the demo data (BERT-Tiny student, all-MiniLM-L6-v2 teacher, 2 CPU cores):
  task: dev accuracy well above chance, teacher agreement ≈ 0.8 after 2 epochs (≈ 3 min);
  embedding: held-out student–teacher cosine 0.57 after 300 steps, 0.69 after 1,200 (≈ 3 min;
    measured 2026-12-02). From a random init at lr 1e-3: 0.43 after 300 steps; from the demo's
    MLM-pre-trained BERT-Tiny: 0.38. The target of 0.8 needs more steps or a wider student.

General distillation on raw text (the data block of pretrain.py: the VADER texts
other than the movie snippets for training, the movie snippets held out; masked instances made
as `distill pretrain` makes them; a live teacher with an MLM head). The teacher on this machine
is option (a): BERT-Mini (L4/H256/A4) that `distill pretrain` trains on that text —

    distill pretrain --config pretrain.py:mini --workdir runs/teacher_mini \
        --config.data.max_seq_length=64 --config.data.max_predictions_per_seq=10 \
        --config.trainer.num_steps=1500

  distilbert        student = every other teacher layer (L2/H256), loss 5·KL(T=2)·T² on MLM
                    logits + 2·MLM + 1·cosine(last hidden), as DistilBERT's released code;
  distilbert_cached the same without the cosine term (it needs the teacher's hidden states),
                    from the teacher's top-64 MLM logits cached once in distill.cache;
  mlm_baseline      the same student and init trained on the hard MLM loss alone: what the
                    teacher's soft targets add;
  tinybert_general  embeddings + hidden MSE (projection 128 → 256) + attention-score MSE, uniform
                    map (student L2/H128 with the teacher's 4 heads);
  tinybert_task     the same terms plus prediction-layer soft CE (T = 1) on the task's transfer
                    set, from the general student (TinyBERT runs the two phases one after the
                    other; here they are summed — stated, not hidden);
  mobilebert_pkt    progressive knowledge transfer into a narrow MobileBERT from a narrow IB-BERT
                    teacher of the same depth (feature-map MSE + attention KL per layer, student
                    embeddings and MLM head copied from the teacher, warmup + decay restarted
                    per stage (`distill.progressive_schedule=global`: one over all stages, the
                    comparison in experiments/README.md), lower layers at `distill.progressive_lower_lr`: 0 = frozen (paper), 0.1 =
                    the released code);
  mobilebert_pd     then pre-training distillation of the whole student: 0.5 hard MLM + 0.5 MLM
                    KD (soft CE) + NSP, on NSP pairs;
  minilm            last-layer attention KL + value-relation KL (student with the teacher's heads).

    distill distill --config distill.py:distilbert --workdir runs/distilbert
    distill pretrain --config pretrain.py:narrow_ib_bert --workdir runs/teacher_ib_bert \
        --config.data.max_seq_length=64 --config.data.max_predictions_per_seq=10 \
        --config.data.nsp=True --config.trainer.num_steps=1500     # the MobileBERT recipes' teacher

Expected (measured 2026-12-03, 2 CPU cores; the teacher above reaches held-out MLM accuracy
0.133 in 29 min): distilbert 0.139 held-out MLM accuracy after 600 steps (14 min);
distilbert_cached 0.138 (3.8 min writing the top-64 cache, then 6 min); mlm_baseline (the
same student and init, hard MLM only) 0.131 (7 min); re-run 2026-12-05 (teacher 0.132): distilbert
0.141, mlm_baseline 0.133, their exports fine-tuned at lr 3e-4 (2 epochs) 76.6 and 77.3 test
against 79.8 from a random init of the same L2/H256 shape. Measured 2026-12-04: tinybert_general
held-out hidden MSE 0.470 → 0.288 and attention-score MSE 0.669 → 0.349 (steps 150 → 600, ≈ 7
min); tinybert_task (the BERT-Mini teacher fine-tuned on the demo task, dev 65.8) dev 67.4 /
test 67.0 (6 min); minilm attention KL 0.207 → 0.100, value-relation KL 0.037 → 0.021 (3.5 min);
their exports fine-tuned at lr 3e-4: tinybert_general 76.8, minilm 75.9 test (scratch 78.5).
Measured 2026-12-05: the narrow IB-BERT teacher reaches held-out MLM accuracy 0.155 (1,500 steps);
mobilebert_pkt lowers each stage's layer loss (feature-map MSE, e.g. layer 4 0.259 → 0.178 in its
stage); mobilebert_pd 0.154 held-out MLM accuracy after 600 steps; its export fine-tuned at lr 3e-4
(2 epochs) 75.5 test, the same student from a random init 55.4 (experiments/README.md).
"""

import ml_collections

from distill import defaults
from distill.experiments import pretrain

TEACHER_MINI = "runs/teacher_mini/export"       # distill pretrain, see above
TEACHER_IB_BERT = "runs/teacher_ib_bert/export"  # distill pretrain of `narrow_ib_bert`, NSP on
GENERAL = ("distilbert", "distilbert_cached", "mlm_baseline", "tinybert_general",
           "mobilebert_pkt", "mobilebert_pd", "minilm")
# The MobileBERT student of pretrain.NARROW_IB_BERT for this CPU (4 layers, same inter-block
# width and embeddings, so PKT can copy the embeddings and MLM head verbatim); the full-size
# pair is `ib_bert` → `mobilebert` (`distill compile` builds it).
NARROW_MOBILEBERT = dict(num_hidden_layers=4, hidden_size=128, embedding_size=64,
                         intra_bottleneck_size=32, intermediate_size=128, num_attention_heads=4,
                         max_position_embeddings=128)


def _raw_text_data() -> ml_collections.ConfigDict:
    """pretrain.py's data block (one home for it), at length 64."""
    data = pretrain.get_config("tiny").data
    data.max_seq_length, data.max_predictions_per_seq = 64, 10
    return data


def _general_terms(arg):
    kd = dict(feature="mlm_logits", loss="kl", temperature=2.0, t_squared=True)
    mlm = [dict(kd, weight=5.0), dict(feature="mlm_logits", loss="hard", weight=2.0)]
    return {
        "distilbert": [*mlm, dict(feature="hidden", loss="cosine", weight=1.0, layers="last")],
        "distilbert_cached": mlm,
        "mlm_baseline": [dict(feature="mlm_logits", loss="hard", weight=1.0)],
        "tinybert_general": [dict(feature="hidden", loss="mse", weight=1.0, layers="uniform"),
                             dict(feature="attention_logits", loss="mse", weight=1.0,
                                  layers="uniform")],
        "mobilebert_pkt": [dict(feature="hidden", loss="feature_map", weight=100.0 / 24,
                                layers="uniform"),
                           dict(feature="attention_probs", loss="kl", weight=1.0 / 24,
                                layers="uniform")],
        "mobilebert_pd": [dict(feature="mlm_logits", loss="hard", weight=0.5),
                          dict(feature="mlm_logits", loss="soft_ce", weight=0.5, temperature=1.0,
                               t_squared=False),
                          dict(feature="nsp_logits", loss="hard", weight=1.0)],
        "minilm": [dict(feature="attention_probs", loss="kl", weight=1.0, layers="last"),
                   dict(feature="value_relation", loss="kl", weight=1.0, layers="last")],
    }[arg]


def _general(arg: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    mobile = arg.startswith("mobilebert")
    config.teacher = ml_collections.ConfigDict(dict(
        name=TEACHER_IB_BERT if mobile else TEACHER_MINI, dtype="float32", scan_layers=False))
    every_other = defaults.model("mini", overrides=dict(num_hidden_layers=2))
    students = {
        "distilbert": every_other, "distilbert_cached": every_other, "mlm_baseline": every_other,
        "tinybert_general": defaults.model("tiny", overrides=dict(num_attention_heads=4)),
        "minilm": defaults.model("tiny", overrides=dict(num_attention_heads=4)),
        "mobilebert_pkt": defaults.model("mobilebert", overrides=NARROW_MOBILEBERT),
        "mobilebert_pd": defaults.model("runs/mobilebert_pkt/export"),
    }
    config.model = students[arg]
    config.task = ml_collections.ConfigDict(dict(name="", data_dir="", seed=0))
    config.data = _raw_text_data()
    config.data.nsp = arg == "mobilebert_pd"
    steps = 1200 if arg == "mobilebert_pkt" else 600  # PKT: 4 stages × 300 steps
    config.distill = ml_collections.ConfigDict(dict(
        terms=_general_terms(arg), alpha=1.0,
        student_init="every_other" if arg in ("distilbert", "distilbert_cached", "mlm_baseline")
        else "teacher_embeddings" if arg == "mobilebert_pkt" else "model",
        include_train_texts=False, held_out=0,
        # teacher cache: '' = live teacher; a local folder = its top-k MLM logits at the masked
        # positions of `cache_epochs` masked passes, written once; KD renormalised over the k
        cache="runs/teacher_mini_top64" if arg == "distilbert_cached" else "",
        cache_top_k=64, cache_epochs=1, cache_rows_per_shard=65536,
        progressive_steps=300 if arg == "mobilebert_pkt" else 0,
        progressive_lower_lr=0.0,  # PKT: 0 = lower layers frozen (paper); 0.1 = released code
        progressive_schedule="per_stage",  # PKT lr: restarted per stage (released code) | global
    ))
    config.trainer = defaults.trainer(batch_size=32, num_steps=steps, eval_every=150,
                                      checkpoint_every=300, log_every=25)
    lr = {"mobilebert_pkt": 1.5e-3, "mobilebert_pd": 1.5e-3}.get(arg, 1e-3)
    config.optimizer = defaults.optimizer(name="lamb" if mobile else "adamw", lr=lr,
                                          warmup_fraction=0.1)
    config.mesh = defaults.mesh()
    return config


def get_config(arg: str = "task") -> ml_collections.ConfigDict:
    if arg in GENERAL:
        return _general(arg)
    config = ml_collections.ConfigDict()
    # scan_layers: the frozen teacher's layers as one scanned body (the same outputs; a deep
    # teacher compiles in a fraction of the time)
    config.teacher = ml_collections.ConfigDict(dict(name=str(defaults.MINILM), dtype="float32",
                                                    scan_layers=False))
    config.model = defaults.model("tiny")
    config.task = ml_collections.ConfigDict(dict(
        name="sentiment" if arg in ("task", "tinybert_task") else "", data_dir=str(defaults.VADER), seed=0,
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
        "tinybert_task": [dict(feature="hidden", loss="mse", weight=1.0, layers="uniform"),
                          dict(feature="attention_logits", loss="mse", weight=1.0,
                               layers="uniform"),
                          dict(feature="logits", loss="soft_ce", weight=1.0, temperature=1.0,
                               t_squared=False)],
    }
    if arg not in terms:
        raise ValueError(f"distill.py:{arg}; expected one of {sorted(terms)}")
    config.distill = ml_collections.ConfigDict(dict(
        terms=terms[arg],
        alpha=1.0,                      # weight of the distillation terms vs the hard labels
        # model (preset = random, or a folder) | first | every_other | teacher_embeddings (PCA of
        # the teacher's tables: the embedding variant's start, 0.57 vs 0.43 cosine after 300 steps)
        student_init="teacher_embeddings" if arg == "embedding" else "model",
        include_train_texts=arg in ("task", "tinybert_task"),  # the labelled task's texts join the transfer set
        cache="",                       # teacher-logit cache (.npz); '' = live teacher
        held_out=512,                   # transfer examples scored for the eval_ losses
        progressive_steps=0,            # > 0: MobileBERT's PKT, one student layer per stage
        progressive_lower_lr=0.0,       # PKT: 0 = lower layers frozen (paper), 0.1 = released code
        progressive_schedule="per_stage",  # PKT lr: restarted per stage (released code) | global
    ))
    if arg == "tinybert_task":  # from the general student, against the fine-tuned teacher
        config.model = defaults.model("runs/tinybert_general/export")
        config.teacher.name = "runs/teacher_mini_sentiment/best"
    config.trainer = defaults.trainer(batch_size=32, num_steps=0, num_epochs=2, eval_every=300,
                                      checkpoint_every=300, log_every=20)
    lr = {"task": 5e-4, "embedding": 3e-3, "tinybert": 1e-3, "tinybert_task": 1e-3}[arg]
    config.optimizer = defaults.optimizer(lr=lr, warmup_fraction=0.1)
    config.mesh = defaults.mesh()
    return config

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

Each recipe follows the released code where the paper is silent (the file and setting named):

  distilbert        transformers research_projects/distillation: student = the teacher's layers
                    scripts/extract_distilbert.py picks (`student_distilbert_layers`: the first,
                    the last and evenly spaced between, round(i·(Lt−1)/(Ls−1)) — 0, 2, 4, 7, 9, 11
                    for 6 of 12; 0, 3 for this L2 student of the L4 teacher), embeddings and MLM
                    head copied; loss 5·KL(T=2)·T² over every real token's MLM distribution
                    (distiller.py `restrict_ce_to_mask=False`; `tokens="masked"` restricts it)
                    + 2·MLM + 1·cosine(last hidden) (train.py's alpha_ce 5, alpha_mlm 2,
                    alpha_cos 1); train.py's optimizer: Adam lr 5e-4, betas 0.9/0.98, eps 1e-6,
                    no weight decay, gradient clip 5.0, warmup 5 %;
  distilbert_cached the same with KD at the masked positions only (the cache holds the teacher's
                    top-64 MLM logits there, written once in distill.cache) and no cosine term
                    (it needs the teacher's hidden states);
  mlm_baseline      distilbert's student, initial parameters and optimizer (a test asserts the
                    init) trained on the hard MLM loss alone: what the teacher's soft targets add;
  tinybert_general  huawei-noah TinyBERT general_distill.py: hidden-state MSE (embeddings
                    included, projection `fit_dense` 128 → 256) + attention-score MSE, uniform
                    map, each summed over the layers as there (student L2/H128 with the teacher's
                    4 heads); the export carries the projection to tinybert_task;
  mobilebert_pkt    google-research mobilebert: progressive knowledge transfer into a narrow
                    MobileBERT from a narrow IB-BERT teacher of the same depth; per layer
                    distill_util.py's feature-map MSE ×100, mean MSE ×5000
                    (`beta_distill_factor`), variance L1 ×5 (`gamma_distill_factor`), attention
                    KL ×1, each divided by the student's depth; every variable outside the
                    encoder layers (embeddings, pooler, MLM and NSP heads) copied from the
                    teacher (run_pretraining.py's init from the teacher checkpoint) and fixed
                    (lamb_optimizer.py: learning rate 0 outside `bert/encoder/layer_`); stage
                    peak 3 × the base lr 1.5e-3 (`layer_wise_learning_rate`), warmup + decay
                    restarted per stage (`distill.progressive_schedule=global`: one over all
                    stages), lower layers at `distill.progressive_lower_lr`: 0 = frozen (paper),
                    0.1 = the released code; the export carries the teacher's heads;
  mobilebert_pd     then pre-training distillation of the whole student from PKT's export (heads
                    included): run_pretraining.py's `distill_ground_truth_ratio` 0.5 (0.5 hard MLM
                    + 0.5 MLM soft CE at the masked positions) + NSP, LAMB at lr 1.5e-3, on NSP
                    pairs;
  minilm            last-layer attention KL + value-relation KL (student with the teacher's heads).

    distill distill --config distill.py:distilbert --workdir runs/distilbert
    distill pretrain --config pretrain.py:narrow_ib_bert --workdir runs/teacher_ib_bert \
        --config.data.max_seq_length=64 --config.data.max_predictions_per_seq=10 \
        --config.data.nsp=True --config.trainer.num_steps=1500     # the MobileBERT recipes' teacher
    distill distill --config distill.py:mobilebert_pkt --workdir runs/mobilebert_pkt
    distill distill --config distill.py:mobilebert_pd --workdir runs/mobilebert_pd

TinyBERT's task distillation runs as task_distill.py does, in two chained runs on the task's
transfer set against a fine-tuned teacher (built by the first command):

    distill finetune --config finetune.py:sentiment --workdir runs/teacher_mini_sentiment \
        --config.model.name=runs/teacher_mini/export --config.optimizer.lr=1e-4
    distill distill --config distill.py:tinybert_task --workdir runs/tinybert_task
    distill distill --config distill.py:tinybert_task_pred --workdir runs/tinybert_task_pred

  tinybert_task       intermediate layers first (hidden + attention MSE, summed over layers) from
                      tinybert_general's export, its projection carried over (task_distill.py
                      without `--pred_distill`);
  tinybert_task_pred  then the prediction layer alone (soft CE, T = 1) from tinybert_task's
                      export (task_distill.py `--pred_distill`).

Measured figures: experiments/README.md (recipe section); the fixes of issue 29 (every-token KD,
the released optimizers and layer choice, heads carried through PKT, summed layer terms) make
the figures measured before 2026-12-06 stale.
"""

import ml_collections

from distill import defaults
from distill.experiments import pretrain

TEACHER_MINI = "runs/teacher_mini/export"       # distill pretrain, see above
TEACHER_IB_BERT = "runs/teacher_ib_bert/export"  # distill pretrain of `narrow_ib_bert`, NSP on
TEACHER_MINI_SENTIMENT = "runs/teacher_mini_sentiment/best"  # distill finetune, see above
GENERAL = ("distilbert", "distilbert_cached", "mlm_baseline", "tinybert_general",
           "mobilebert_pkt", "mobilebert_pd", "minilm")
DISTILBERT = ("distilbert", "distilbert_cached", "mlm_baseline")
# The MobileBERT student of pretrain.NARROW_IB_BERT for this CPU (4 layers, same inter-block
# width and embeddings, so PKT can copy the embeddings and heads verbatim); the full-size
# pair is `ib_bert` → `mobilebert` (`distill compile` builds it).
NARROW_MOBILEBERT = dict(num_hidden_layers=4, hidden_size=128, embedding_size=64,
                         intra_bottleneck_size=32, intermediate_size=128, num_attention_heads=4,
                         max_position_embeddings=128)
MOBILEBERT_BASE_LR = 1.5e-3  # the released command's learning_rate; PKT's stage peak is 3 ×


def _raw_text_data() -> ml_collections.ConfigDict:
    """pretrain.py's data block (one home for it), at length 64."""
    data = pretrain.get_config("tiny").data
    data.max_seq_length, data.max_predictions_per_seq = 64, 10
    return data


def _pkt_terms(depth: int) -> list[dict]:
    """distill_util.py's per-layer factors (hidden 100, beta 5000, gamma 5, attention 1) over
    the student's depth."""
    layer = dict(feature="hidden", layers="uniform")
    return [dict(layer, loss="feature_map", weight=100.0 / depth),
            dict(layer, loss="mean_mse", weight=5000.0 / depth),
            dict(layer, loss="variance_l1", weight=5.0 / depth),
            dict(feature="attention_probs", loss="kl", weight=1.0 / depth, layers="uniform")]


def _general_terms(arg):
    kd = dict(feature="mlm_logits", loss="kl", temperature=2.0, t_squared=True, weight=5.0)
    hard_mlm = dict(feature="mlm_logits", loss="hard", weight=2.0)
    layers = [dict(feature="hidden", loss="mse", weight=1.0, layers="uniform"),
              dict(feature="attention_logits", loss="mse", weight=1.0, layers="uniform")]
    return {
        "distilbert": [dict(kd, tokens="all"), hard_mlm,
                       dict(feature="hidden", loss="cosine", weight=1.0, layers="last")],
        "distilbert_cached": [dict(kd, tokens="masked"), hard_mlm],
        "mlm_baseline": [dict(feature="mlm_logits", loss="hard", weight=1.0)],
        "tinybert_general": layers,
        "mobilebert_pkt": _pkt_terms(NARROW_MOBILEBERT["num_hidden_layers"]),
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
        # distill.student_init: see the task variants below
        student_init="every_other" if arg in DISTILBERT
        else "teacher_outside_encoder" if arg == "mobilebert_pkt" else "model",
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
    if arg in DISTILBERT:  # transformers distillation/train.py
        config.optimizer = defaults.optimizer(lr=5e-4, b2=0.98, eps=1e-6, weight_decay=0.0,
                                              clip_norm=5.0, warmup_fraction=0.05)
    elif mobile:  # mobilebert run_pretraining.py / lamb_optimizer.py
        lr = 3 * MOBILEBERT_BASE_LR if arg == "mobilebert_pkt" else MOBILEBERT_BASE_LR
        config.optimizer = defaults.optimizer(name="lamb", lr=lr, warmup_fraction=0.1)
    else:
        config.optimizer = defaults.optimizer(lr=1e-3, warmup_fraction=0.1)
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
    labelled_task = arg in ("task", "tinybert_task", "tinybert_task_pred")
    config.task = ml_collections.ConfigDict(dict(
        name="sentiment" if labelled_task else "", data_dir=str(defaults.VADER), seed=0,
        train="", dev="", test="", text_a="sentence", text_b="", label="label", labels=()))
    config.data = ml_collections.ConfigDict(dict(
        transfer="vader", vader_dir=str(defaults.VADER), max_seq_length=64,
        buckets=(16, 32, 48, 64, 128),
        group_by_length=True,            # similar lengths share a batch: far less padding
        vocab=str(defaults.MINILM / "vocab.txt")))
    soft_labels = dict(feature="logits", loss="soft_ce", weight=1.0, temperature=1.0,
                       t_squared=False)
    terms = {
        "task": [soft_labels],
        "embedding": [dict(feature="embedding", loss="cosine", weight=1.0, pooling="mean")],
        "tinybert": [dict(feature="hidden", loss="mse", weight=1.0, layers="uniform")],
        "tinybert_task": _general_terms("tinybert_general"),
        "tinybert_task_pred": [soft_labels],
    }
    if arg not in terms:
        raise ValueError(f"distill.py:{arg}; expected one of {sorted([*terms, *GENERAL])}")
    config.distill = ml_collections.ConfigDict(dict(
        terms=terms[arg],
        alpha=1.0,                      # weight of the distillation terms vs the hard labels
        # model (preset = random, or a folder) | first | every_other (DistilBERT's layers) |
        # teacher_embeddings (PCA of the teacher's tables: the embedding variant's start, 0.57 vs
        # 0.43 cosine after 300 steps) | teacher_outside_encoder (MobileBERT's PKT)
        student_init="teacher_embeddings" if arg == "embedding" else "model",
        include_train_texts=labelled_task,  # the labelled task's texts join the transfer set
        cache="",                       # teacher-logit cache (.npz); '' = live teacher
        held_out=512,                   # transfer examples scored for the eval_ losses
        progressive_steps=0,            # > 0: MobileBERT's PKT, one student layer per stage
        progressive_lower_lr=0.0,       # PKT: 0 = lower layers frozen (paper), 0.1 = released code
        progressive_schedule="per_stage",  # PKT lr: restarted per stage (released code) | global
    ))
    if arg.startswith("tinybert_task"):  # chained: general → intermediate → prediction layer
        config.model = defaults.model("runs/tinybert_general/export" if arg == "tinybert_task"
                                      else "runs/tinybert_task/export")
        config.teacher.name = TEACHER_MINI_SENTIMENT
    config.trainer = defaults.trainer(batch_size=32, num_steps=0, num_epochs=2, eval_every=300,
                                      checkpoint_every=300, log_every=20)
    lr = {"task": 5e-4, "embedding": 3e-3, "tinybert": 1e-3, "tinybert_task": 1e-3,
          "tinybert_task_pred": 5e-4}[arg]
    config.optimizer = defaults.optimizer(lr=lr, warmup_fraction=0.1)
    config.mesh = defaults.mesh()
    return config

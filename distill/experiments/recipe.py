"""The Well-Read Students comparison (Turc et al. 2019, Table/Figure "pre-training + distillation")
as one chained recipe: teacher fine-tuning, then for each student size and seed — fine-tune from
scratch, MLM pre-train + fine-tune, distil from scratch, the control "distil from scratch +
fine-tune" (what PD's last fine-tuning alone adds, no pre-training), and Pre-trained
Distillation. Every student fine-tuning (scratch, PT+FT, the control, PD's last step) picks its lr
on dev from the same grid (`recipe.learning_rates`); test accuracy is the headline. Pre-training
runs once per student size and the teacher and its transfer-set logits once: all seeds share them.

Variants (real data from `make assets`; the all-MiniLM-L6-v2 teacher; the VADER movie-snippet
task, 8,456 / 1,056 / 1,056):

  demo     `make demo`: BERT-Tiny, one seed; pre-training 1,200 steps × 32 unpacked 64-token
           rows (2.5 M tokens; 64-token rows learn per step as packed 128-token ones at half the
           cost; 10 prediction slots, 15 % of 64) on the general + in-domain text
           (pretrain.py:tiny,corpora) at BERT's lr 1e-4 (dev's pick over 1e-3 and 3e-4);
           distillation, 2 epochs, on a 16,000-sentence sample of the in-domain transfer set +
           the train texts; student fine-tuning at lr 3e-4 × 2 epochs (a grid of one: the
           paper's grid has four lrs × 4 epochs; cut for the 20-minute budget). Of the paper's
           orderings it reproduces PD > fine-tuning from scratch and PD > distillation from
           scratch (on each of seeds 0, 1, 2; means 79.5 ± 0.3, 78.1 ± 0.5, 78.0 ± 0.2), not
           PT+FT > scratch (77.7 ± 1.1: level, within the spread); and PD ties the control
           (79.5 ± 0.3): at this budget PD's lead is its distillation and last fine-tuning, its
           pre-training pays only at the replica's compute (experiments/README.md, "The demo's
           pre-training lr").
  replica  the measurement: three seeds, the paper's grid (3e-4, 1e-4, 5e-5, 3e-5) × 4 epochs,
           20,000 pre-training steps × 32 unpacked 64-token rows (41 M tokens; a shorter
           schedule decays its lr before BERT-Tiny leaves the MLM plateau), the whole 64k-sentence
           transfer set, 2 epochs of distillation. About 2 h 10 min on 2 CPU cores with its
           stages run side by side (the pre-training ≈ 60 min alone with 20 prediction slots; at
           10, measured 10.8 steps/s against 5.8, about half that);
           `--config.recipe.pretrain_checkpoints="(10000,)"` adds PT+FT from an earlier
           checkpoint of the same run. Other pre-training by override (a new work directory;
           copy `teacher/` and `teacher_logits.npz` in to reuse them):
           `--config.pretrain.objective=electra` (replaced-token detection), or self-pre-training
           on the in-domain text alone: `--config.pretrain.data.train=text:$FLAXBERT_ASSETS/
           corpora/movies.txt --config.pretrain.data.task_texts=sentiment` (pretrain.py:tiny,movies).
  paper    the paper at its own scale, for a TPU pod or a GPU cluster (experiments/README.md,
           "At the paper's scale"): per GLUE task (default SST-2, MNLI, RTE) a BERT-Large
           teacher fine-tuned from Google's checkpoint; the 24 students, each pre-trained once
           with BERT's recipe (MLM + NSP, batch 256, 1 M steps: 90 % at 128 tokens, then 512);
           PD on the task's transfer set; every student method fine-tuned over the release's grid
           (4 lrs × 5 batch sizes × 4 epochs, dev picks); GLUE submission files of the test
           predictions in WORKDIR/submissions/. Data come from TensorFlow Datasets by default
           (`recipe.task_name` = `tfds:glue/{task}`, `pretrain.data.train`: `tfds:` specs); a
           local GLUE download is `--config.recipe.task_name={task}
           --config.recipe.task_data=/data/glue_data`. Not run at this scale here: `distill plan
           --config recipe.py:paper` prints what it costs.

    distill recipe --config recipe.py:demo --workdir runs/demo
    distill recipe --config recipe.py:replica --workdir runs/replica
    distill recipe --config recipe.py:paper --workdir gs://BUCKET/paper \
        --config.recipe.vocab=/data/uncased_L-24_H-1024_A-16/vocab.txt \
        --config.teacher_finetune.model.name=/data/uncased_L-24_H-1024_A-16

Expected (demo): 15.8 minutes from a fresh clone on 2 idle CPU cores (venv and assets included);
test accuracy teacher 84.1, PD 79.9, control 79.4, scratch 78.6, distil 78.3, PT+FT 76.5; the table
in runs/demo/results.md.
Expected (replica, measured 2026-12-05, 2 h 9 min with its
stages side by side): held-out MLM accuracy 0.290 after 20,000 steps; test accuracy, mean ± std
over 3 seeds: PD 81.6 ± 0.3 > scratch 79.2 ± 0.2 > distil 78.7 ± 0.4 > PT+FT 76.9 ± 0.6 (teacher
84.1); the control was added after. experiments/README.md has the figures, the pre-training curve
and how they compare with the paper's order.
"""

import ml_collections

from distill import defaults
from distill.experiments import distill, finetune, pretrain

# The paper's fine-tuning grid for the compact models (google-research/bert README, "compact
# models"): every student method fine-tunes at each cell and dev picks; the demo and replica run
# the lrs at batch 32 (an empty batch grid: student_finetune's own), the teacher keeps its tuned
# setting.
PAPER_LRS = (3e-4, 1e-4, 5e-5, 3e-5)
PAPER_BATCH_SIZES = (8, 16, 32, 64, 128)
# The 24 compact models of the release: L ∈ {2, 4, 6, 8, 10, 12} × H ∈ {128, 256, 512, 768}.
PAPER_STUDENTS = tuple(f"bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"
                       for layers in (2, 4, 6, 8, 10, 12) for hidden in (128, 256, 512, 768))
# Google's BERT-Large uncased release (google-research/bert README), unpacked by hand; BERT-Base:
# `--config.teacher_finetune.model.name=…/uncased_L-12_H-768_A-12` (same vocab file).
GOOGLE_LARGE = defaults.ASSETS / "google" / "uncased_L-24_H-1024_A-16"
# the paper's transfer sets, made by hand (experiments/README.md, "At the paper's scale")
TRANSFER = defaults.ASSETS / "transfer"


def plan_block(**sizes) -> ml_collections.ConfigDict:
    """`distill plan`'s assumptions (the recipe's runs ignore this block)."""
    return ml_collections.ConfigDict(dict(
        device="tpu_v4",        # tpu_v4 | tpu_v5e | tpu_v5p | tpu_v6e | h100 | h200 | a100
        # the share of the device's bf16 peak a step reaches: an assumption, not a measurement
        # (BERT-Base/Large-sized steps reach about this on TPUs and GPUs; the smallest students,
        # whose matmuls are narrow, less — their hours are underestimated)
        mfu=0.4,
        # the share of the device's memory a step may use (JAX preallocates 75 % of a GPU's
        # unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise)
        memory_fraction=1.0,
        **sizes))


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    if arg == "paper":
        return paper()
    if arg not in ("demo", "replica"):
        raise ValueError(f"recipe.py:{arg}; expected demo, replica or paper")
    demo, replica = arg == "demo", arg == "replica"
    config = ml_collections.ConfigDict()
    config.recipe = ml_collections.ConfigDict(dict(
        students=("tiny",),
        seeds=(0,) if demo else (0, 1, 2),
        methods=("scratch", "pt_ft", "kd", "kd_ft", "pd"),
        teacher_name="all-MiniLM-L6-v2",
        # demo: one lr of the grid (3e-4), 2 epochs, to stay within 20 minutes on 2 cores
        learning_rates=PAPER_LRS[:1] if demo else PAPER_LRS,
        batch_sizes=(),  # the fine-tuning grid's batch sizes; () = student_finetune's (32)
        # earlier kept pre-training checkpoints plain fine-tuning also starts from (a curve point
        # each, e.g. "(10000,)"; a multiple of pretrain.trainer.checkpoint_every)
        pretrain_checkpoints=(),
    ))
    config.teacher_finetune = finetune.get_config("sentiment")
    config.teacher_finetune.trainer.num_epochs = 1
    config.student_finetune = finetune.get_config("sentiment")
    config.student_finetune.optimizer.lr = 1e-4     # used only with an empty learning_rates grid
    config.student_finetune.trainer.num_epochs = 2 if demo else 4
    config.pretrain = pretrain.get_config("tiny,corpora")
    config.pretrain.trainer.num_steps = 1200 if demo else 20000
    # demo: BERT's lr (Devlin et al. §A.2). In 1,200 steps a larger one teaches BERT-Tiny more MLM
    # and costs fine-tuning more (dev, 3 seeds: PD 79.1 / 78.7 / 78.2 and PT+FT 77.9 / 76.5 / 75.9
    # at 1e-4 / 3e-4 / 1e-3); the replica needs 1e-3 to leave the MLM plateau within 20k steps
    config.pretrain.optimizer.lr = 1e-4 if demo else 1e-3
    config.pretrain.trainer.eval_every = 1200 if demo else 2500
    # 64-token rows learn per step as packed 128-token ones, at half the cost
    config.pretrain.data.max_seq_length = 64
    config.pretrain.data.pack = False
    # 15 % of 64 tokens is 10 masks: BERT's 20 slots (for 128 tokens) would leave half of them
    # padding, each a 30,522-word projection — 10 gives the same masks at ~60 % of the FLOPs
    config.pretrain.data.max_predictions_per_seq = 10
    config.pretrain.trainer.checkpoint_every = config.pretrain.trainer.eval_every
    config.pretrain.trainer.keep_checkpoints = 10 if replica else 2
    config.pretrain.trainer.log_every = 50
    config.distill = distill.get_config("task")
    config.distill.trainer.num_epochs = 2
    # the in-domain transfer set (+ the task's train texts, include_train_texts)
    name = "transfer_demo.txt" if demo else "transfer.txt"
    config.distill.data.transfer = str(pretrain.CORPORA / name)
    # the demo task's training split, and the transfer sets' sentences + those training texts
    config.plan = plan_block(train_examples=dict(sentiment=8456),
                             transfer_examples=dict(sentiment=(16000 if demo else 64000) + 8456))
    return config


def paper() -> ml_collections.ConfigDict:
    """Turc et al. 2019 at its own scale. Every figure is a field; the comment names its source:
    [T] Turc et al. 2019 (arXiv:1908.08962) and the compact models' README in google-research/bert,
    [B] BERT (Devlin et al. 2019, §A.2 pre-training, §A.3 fine-tuning) and its released code
    (run_pretraining.py, create_pretraining_data.py, optimization.py)."""
    config = ml_collections.ConfigDict()
    # every stage tokenizes with the teacher's vocabulary (the students share it [T]): one field
    vocab = ml_collections.FieldReference(str(GOOGLE_LARGE / "vocab.txt"))
    config.recipe = ml_collections.ConfigDict(dict(
        tasks=("sst2", "mnli", "rte"),   # [T] Table 1's tasks; any GLUE task by name
        # each task's `task.name`, `{task}` filled in: TFDS's prepared GLUE config (the `tfds:`
        # task reader), or "{task}" to read the official download from `task_data`
        task_name="tfds:glue/{task}",
        # the task blocks' data_dir: the TFDS data folder ('' = $TFDS_DATA_DIR or
        # ~/tensorflow_datasets), or the GLUE download's folder (/data/glue_data)
        task_data="",
        # each task's unlabelled transfer set [T Table 1]: movie-review sentences for SST-2 (a
        # text file, one a line), NLI* for the NLI tasks (sentence pairs, labels dropped, none
        # of the task's dev/test: `distill transfer-pairs --out FILE --task tfds:glue/TASK`)
        transfer=dict(sst2=str(TRANSFER / "movie_sentences.txt"),
                      mnli=str(TRANSFER / "nli_star_mnli.tsv"),
                      rte=str(TRANSFER / "nli_star_rte.tsv")),
        students=PAPER_STUDENTS,         # [T] the 24 compact models; any subset by override
        seeds=(0,),
        methods=("scratch", "pt_ft", "kd", "pd"),
        teacher_name="BERT-Large uncased",
        learning_rates=PAPER_LRS,        # [T] README: the fine-tuning grid
        batch_sizes=PAPER_BATCH_SIZES,   # [T] README
        pretrain_checkpoints=(),
        # [B] §A.2: 128-token rows for 90 % of the steps, then 512 (run_pretraining.py's
        # max_predictions_per_seq 20 at 128, 80 at 512: 15 % of the tokens)
        pretrain_long_fraction=0.1,
        pretrain_long_seq_length=512,
        pretrain_long_max_predictions=80,
        vocab=vocab,
    ))
    config.teacher_finetune = finetune.get_config("sst2")   # the task: set per recipe.tasks
    config.teacher_finetune.model.name = str(GOOGLE_LARGE)  # Google's folder, read as it is
    config.teacher_finetune.optimizer.lr = 2e-5       # [B] §A.3 grid {5e-5, 4e-5, 3e-5, 2e-5}
    config.teacher_finetune.trainer.num_epochs = 3    # [B] §A.3 {2, 3, 4}; run_classifier.py: 3
    config.teacher_finetune.trainer.batch_size = 32   # [B] §A.3 {16, 32}
    config.student_finetune = finetune.get_config("sst2")
    config.student_finetune.trainer.num_epochs = 4    # [T] README: 4 epochs
    config.pretrain = pretrain.get_config("tiny")     # the size: set per recipe.students
    config.pretrain.data.update(dict(
        # [B] BooksCorpus + English Wikipedia; TFDS holds Wikipedia (add your books text with
        # `text:` files); evaluation: a held-out slice of your text (here the same corpus)
        train="tfds:wikipedia/20230601.en", eval="tfds:wikipedia/20230601.en",
        nsp=True,                        # [B] MLM + next-sentence prediction
        pack=False,                      # NSP pairs fill their rows themselves
        max_seq_length=128,              # [B] the first phase (the second: recipe.pretrain_long_*)
        max_predictions_per_seq=20,      # [B] run_pretraining.py at 128
        masked_lm_prob=0.15, short_seq_prob=0.1,  # [B] create_pretraining_data.py
        dupe_factor=10,                  # [B] create_pretraining_data.py
        whole_word_masking=False,        # [T] the compact models use WordPiece masking
    ))
    config.pretrain.trainer.update(dict(
        batch_size=256,                  # [B] §A.2: 256 sequences
        num_steps=1_000_000,             # [B] §A.2: 1,000,000 steps
        eval_every=10_000, checkpoint_every=10_000, log_every=100))
    config.pretrain.optimizer.update(dict(
        name="adamw", lr=1e-4,           # [B] §A.2: Adam, lr 1e-4, β 0.9/0.999, L2 decay 0.01
        b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01,  # [B] optimization.py: ε 1e-6
        warmup_steps=10_000,             # [B] §A.2: 10,000 warmup steps
        schedule="linear"))              # [B] §A.2: then linear decay
    config.distill = distill.get_config("task")  # [T] soft cross-entropy at T = 1
    config.distill.data.max_seq_length = 128
    config.distill.trainer.num_epochs = 3  # not stated in [T]: ours, as the teacher's epochs
    config.distill.distill.include_train_texts = False  # [T] the transfer set alone
    for block in (config.teacher_finetune, config.student_finetune, config.distill):
        block.task.data_dir = ""  # set per task: recipe.task_name, recipe.task_data
        block.data.max_seq_length = 128  # [B] run_classifier.py's max_seq_length
    for data in (config.student_finetune.data, config.teacher_finetune.data, config.distill.data,
                 config.pretrain.data):
        data.vocab = vocab
    # planning sizes of the transfer sets (examples): [T] Table 1 lists transfer sets of this
    # order (movie-review sentences for SST-2, NLI* for the NLI tasks); set yours
    config.plan = plan_block(train_examples={},
                             transfer_examples=dict(sst2=1_700_000, mnli=1_300_000,
                                                    rte=1_300_000))
    return config

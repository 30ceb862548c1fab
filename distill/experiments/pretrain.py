"""MLM pre-training of a compact BERT (Turc et al. 2019, step 1 of Pre-trained Distillation).

Any of the 24 students by name: `pretrain.py:bert_uncased_L-4_H-256_A-4`, or an alias
(tiny, mini, small, medium); `narrow_ib_bert` is the MobileBERT recipes' CPU-sized IB-BERT
teacher (distill.py; pre-train it with `--config.data.nsp=True`). The held-out evaluation text is always VADER's movie snippets (the
demo task's sentences; none of them is in the training text). Training text, by the suffix:

  (none)      the VADER sentences other than the movie snippets (13k tweets, NYT editorial and
              Amazon review snippets, ~0.2 M words) — the old demo data;
  ,corpora    the real text `make assets` converts (distill/data/corpora.py): general.txt (news,
              BBC, Wikipedia + those VADER sentences; 3.5 M words) and movies.txt (IMDb reviews +
              plot summaries; 1.2 M words), packed 128-token rows;
  ,movies     self-pre-training (Krishna et al. 2023): the in-domain text alone — movies.txt
              plus the sentiment task's own 8,456 training texts (`data.task_texts`); the
              held-out evaluation becomes the task's dev + test snippets, which no training text
              holds (`make assets` removed them from movies.txt). Packed 128-token rows.

The objective (`objective`): `mlm` (BERT's) or `electra` (replaced-token detection,
distill/electra.py: a generator `electra.generator_width` × the student's width — 1/4, the
ELECTRA paper's setting for ELECTRA-Small, whose ablation finds 1/4–1/2 of the discriminator
best; a stronger generator makes the task too hard — trained with MLM, the student as the
discriminator on every token, RTD weight 50 as the paper). The export is the student alone.
`embedding_gradient`: BERT's dense update of every word-embedding row through the tied output
softmax, or `batch_rows` — only the rows of the batch's tokens (distill/tasks/pretrain.py,
`batch_rows_only`; why, in experiments/README.md: "Why PT+FT loses to scratch").

    distill pretrain --config pretrain.py:tiny --workdir runs/pretrain_tiny
    distill pretrain --config pretrain.py:tiny,corpora --workdir runs/pt_tiny_corpora
    distill pretrain --config pretrain.py:tiny,movies --config.objective=electra --workdir runs/pt_e

Expected (BERT-Tiny, 2,000 steps of 32 × 128 tokens, about 4 minutes on 2 CPU cores): held-out
MLM accuracy ≈ 0.30, far above the most-frequent-token baseline (≈ 0.05). For `tiny,corpora`
see the pre-training curve in experiments/README.md.
"""

import ml_collections

from distill import defaults as common

CORPORA = common.ASSETS / "corpora"
# The pre-training text of the replica: general + in-domain, de-duplicated against the demo's
# dev/test sentences when `make assets` built it.
CORPORA_TRAIN = f"text:{CORPORA / 'general.txt'},{CORPORA / 'movies.txt'}"


# The MobileBERT recipes' CPU-sized IB-BERT teacher (distill.py's NARROW_MOBILEBERT is its
# student): 4 layers, the inter-block width and embeddings of the student, so PKT can copy them.
NARROW_IB_BERT = dict(num_hidden_layers=4, hidden_size=128, embedding_size=64,
                      intra_bottleneck_size=256, intermediate_size=1024, num_attention_heads=4,
                      max_position_embeddings=128)


# Self-pre-training's text: the in-domain movie text alone (+ the task's train texts).
MOVIES_TRAIN = f"text:{CORPORA / 'movies.txt'}"


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    name, _, data = arg.partition(",")
    if data not in ("", "corpora", "movies"):
        raise ValueError(f"pretrain.py:{arg}; expected MODEL, MODEL,corpora or MODEL,movies")
    config = ml_collections.ConfigDict()
    config.model = (common.model("ib_bert", overrides=NARROW_IB_BERT) if name == "narrow_ib_bert"
                    else common.model(name))
    config.objective = "mlm"        # mlm | electra
    # which word-embedding rows an MLM step updates: "dense" (BERT: every row, through the tied
    # output softmax) or "batch_rows" (only the tokens in the batch; see pretrain.batch_rows_only)
    config.embedding_gradient = "dense"
    config.electra = ml_collections.ConfigDict(dict(
        generator_width=0.25,       # generator hidden/FFN size and heads, × the student's
        rtd_weight=50.0,            # λ of loss = MLM(generator) + λ · RTD(discriminator)
    ))
    train = {"": f"vader:{common.TRANSFER_FILES}", "corpora": CORPORA_TRAIN,
             "movies": MOVIES_TRAIN}[data]
    config.data = ml_collections.ConfigDict(dict(
        vocab=str(common.MINILM / "vocab.txt"),
        train=train,
        # "sentiment": the task's train texts join the training text and its dev + test texts
        # are the held-out evaluation (replacing `eval`); "" = none
        task_texts="sentiment" if data == "movies" else "",
        eval=f"vader:{common.VADER / 'movieReviewSnippets_GroundTruth.txt'}",
        # the prepared TFDS data a `tfds:` train/eval spec reads (a folder or gs:// path);
        # '' = $TFDS_DATA_DIR, else ~/tensorflow_datasets
        tfds_data_dir="",
        sentences_per_document=8,
        max_seq_length=128,
        max_predictions_per_seq=20,
        masked_lm_prob=0.15,
        short_seq_prob=0.1,
        nsp=False,
        whole_word_masking=False,
        pack=bool(data),            # several short instances per row (needs nsp=False)
        dupe_factor=5,
        seed=12345,
    ))
    config.trainer = common.trainer(num_steps=2000, eval_every=500, checkpoint_every=500)
    config.optimizer = common.optimizer(lr=1e-3, warmup_fraction=0.05)
    config.mesh = common.mesh()
    return config

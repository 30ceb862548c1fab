"""MLM pre-training of a compact BERT (Turc et al. 2019, step 1 of Pre-trained Distillation).

Any of the 24 students by name: `experiments/pretrain.py:bert_uncased_L-4_H-256_A-4`, or an alias
(tiny, mini, small, medium). The default data is the demo's: the VADER sentences (tweets, NYT
editorials, Amazon reviews) for training, the movie snippets held out for evaluation.

    distill pretrain --config experiments/pretrain.py:tiny --workdir runs/pretrain_tiny

Expected (BERT-Tiny, 2,000 steps of 32 × 128 tokens, about 4 minutes on 2 CPU cores): held-out
MLM accuracy ≈ 0.30, far above the most-frequent-token baseline (≈ 0.05).
"""

import ml_collections

from distill import defaults as common


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = common.model(arg)
    config.data = ml_collections.ConfigDict(dict(
        vocab=str(common.MINILM / "vocab.txt"),
        train=f"vader:{common.TRANSFER_FILES}",
        eval=f"vader:{common.VADER / 'movieReviewSnippets_GroundTruth.txt'}",
        sentences_per_document=8,
        max_seq_length=128,
        max_predictions_per_seq=20,
        masked_lm_prob=0.15,
        short_seq_prob=0.1,
        nsp=False,
        whole_word_masking=False,
        pack=False,                 # several short instances per row (needs nsp=False)
        dupe_factor=5,
        seed=12345,
    ))
    config.trainer = common.trainer(num_steps=2000, eval_every=500, checkpoint_every=500)
    config.optimizer = common.optimizer(lr=1e-3, warmup_fraction=0.05)
    config.mesh = common.mesh()
    return config

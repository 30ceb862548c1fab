"""Sentence(-pair) examples → model features → batches, for fine-tuning, evaluation and task
distillation.

Training batches come from a grain pipeline (shuffled per epoch, checkpointable position) and are
trimmed to the smallest length bucket that holds the batch's longest sequence, so a handful of
shapes compile. Evaluation batches keep file order; the last one is filled up with rows whose
`example_weight` is 0 so that every batch has the same size (divisible by the data-parallel
size) and no example is dropped.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import grain
import numpy as np

from distill.data.buckets import DEFAULT_BUCKETS, pad_batch
from distill.data.tasks import Example
from flaxbert.tokenization import Preprocessor


def encode_examples(examples: Sequence[Example], tokenizer, max_seq_length: int,
                    regression: bool = False) -> dict[str, np.ndarray]:
    """Packs examples with the TF Hub preprocessor semantics; labels None become 0 / weight 1."""
    if not examples:
        raise ValueError("no examples to encode (empty split)")
    pre = Preprocessor(tokenizer, seq_length=max_seq_length)
    texts_a = [e.text_a for e in examples]
    pairs = examples[0].text_b is not None
    if pairs and any(e.text_b is None for e in examples):
        raise ValueError("examples mix single sentences and sentence pairs")
    features = pre(texts_a, [e.text_b for e in examples] if pairs else None)
    labels = [0 if e.label is None else e.label for e in examples]
    features["label"] = np.asarray(labels, np.float32 if regression else np.int32)
    features["example_weight"] = np.ones(len(examples), np.float32)
    return features


def num_examples(features: dict[str, np.ndarray]) -> int:
    return len(features["input_word_ids"])


class _Rows(Sequence):
    """Random access to row i of a dict of equal-length arrays (a grain data source)."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return num_examples(self.features)

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.features.items()}


def train_batches(features: dict[str, np.ndarray], batch_size: int, seed: int,
                  buckets: Sequence[int] = DEFAULT_BUCKETS) -> grain.DatasetIterator:
    """An endless, per-epoch reshuffled, checkpointable iterator of bucket-padded batches."""
    if num_examples(features) < batch_size:
        raise ValueError(f"the training split has {num_examples(features)} examples, fewer than "
                         f"one batch of {batch_size}")
    ds = (grain.MapDataset.source(_Rows(features)).shuffle(seed=seed).repeat()
          .batch(batch_size, drop_remainder=True)
          .map(lambda b: pad_batch(b, buckets=buckets)))
    return iter(ds.to_iter_dataset())


def eval_batches(features: dict[str, np.ndarray], batch_size: int,
                 buckets: Sequence[int] = DEFAULT_BUCKETS) -> Iterator[dict[str, np.ndarray]]:
    """File-order batches; the last is filled with zero-weight copies of row 0."""
    n = num_examples(features)
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        real = idx < n
        batch = {k: v[np.where(real, idx, 0)] for k, v in features.items()}
        batch["example_weight"] = batch["example_weight"] * real
        yield pad_batch(batch, buckets=buckets)

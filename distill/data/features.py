"""Sentence(-pair) examples → model features → batches, for fine-tuning, evaluation and task
distillation.

Training batches come from a grain pipeline (shuffled per epoch, optionally grouped by length,
checkpointable position) and are trimmed to the smallest length bucket that holds the batch's
longest sequence, so a handful of shapes compile. Evaluation batches visit the file in
length-sorted chunks (`in_file_order` restores the order of their outputs); the last one is
filled up with rows whose `example_weight` is 0 so that every batch has the same size (divisible
by the data-parallel size) and no example is dropped.

Both build global batches, identical in every process, and yield this process's contiguous rows
of each (`process_index` / `process_count`, by default JAX's): the layout
`jax.make_array_from_process_local_data` expects, with shapes that agree across processes.
"""

from __future__ import annotations

import functools
from typing import Iterator, Sequence

import grain
import jax
import numpy as np

from distill.data.tasks import Example
from flaxbert.buckets import DEFAULT_BUCKETS, length_bucketed_order, pad_batch
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


def _lengths(features: dict[str, np.ndarray]) -> np.ndarray:
    return features["input_mask"].astype(bool).sum(-1)


def _process_rows(batch_size: int, process_index: int | None,
                  process_count: int | None) -> slice:
    """This process's contiguous rows of a global batch."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if batch_size % count:
        raise ValueError(f"batch_size={batch_size} is not divisible by the number of processes "
                         f"{count}")
    local = batch_size // count
    return slice(index * local, (index + 1) * local)


def train_batches(features: dict[str, np.ndarray], batch_size: int, seed: int,
                  buckets: Sequence[int] = DEFAULT_BUCKETS, *, group_by_length: bool = False,
                  process_index: int | None = None,
                  process_count: int | None = None) -> grain.DatasetIterator:
    """An endless, checkpointable iterator of this process's rows of bucket-padded global
    batches of ``batch_size`` rows (each epoch a fresh permutation). ``group_by_length`` draws
    each epoch's order from `length_bucketed_order` (rows of similar length share a batch, so
    far less padding; the epoch's last partial batch waits for the next epoch's reshuffle).
    """
    n = num_examples(features)
    if n < batch_size:
        raise ValueError(f"the training split has {n} examples, fewer than one batch of "
                         f"{batch_size}")
    mine = _process_rows(batch_size, process_index, process_count)
    rows = _Rows(features)
    if group_by_length:
        lengths = _lengths(features)
        per_epoch = n // batch_size * batch_size

        @functools.lru_cache(maxsize=2)
        def epoch_order(epoch):
            return length_bucketed_order(lengths, batch_size, seed=[seed, epoch])[:per_epoch]

        ds = grain.MapDataset.range(per_epoch).repeat().map_with_index(
            lambda i, _: rows[epoch_order(i // per_epoch)[i % per_epoch]])
    else:
        ds = grain.MapDataset.source(rows).shuffle(seed=seed).repeat()
    ds = (ds.batch(batch_size, drop_remainder=True)
          .map(lambda b: {k: v[mine] for k, v in pad_batch(b, buckets=buckets).items()}))
    return iter(ds.to_iter_dataset())


def eval_order(features: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """The order `eval_batches` visits the examples: the file cut into chunks of 100 batches,
    each sorted by length (longest first), so batches pad little without a global sort."""
    return length_bucketed_order(_lengths(features), batch_size, seed=0, shuffle=False)


def eval_batches(features: dict[str, np.ndarray], batch_size: int,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, *, process_index: int | None = None,
                 process_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """This process's rows of global batches of `batch_size` rows in `eval_order`, each padded
    to its bucket; the last is filled up with zero-weight copies of its shortest row.
    `in_file_order` puts the per-row outputs of the global batches back in file order."""
    mine = _process_rows(batch_size, process_index, process_count)
    order = eval_order(features, batch_size)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        real = len(idx)
        idx = np.concatenate([idx, np.full(batch_size - real, idx[-1])])
        batch = {k: v[idx] for k, v in features.items()}
        batch["example_weight"] = batch["example_weight"] * (np.arange(batch_size) < real)
        yield {k: v[mine] for k, v in pad_batch(batch, buckets=buckets).items()}


def in_file_order(outputs: Sequence[dict[str, np.ndarray]], key: str,
                  features: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """`outputs[i][key]` for the batches of `eval_batches(features, batch_size)`, concatenated,
    filler rows dropped, and rows put back in file order."""
    order = eval_order(features, batch_size)
    values = np.concatenate([o[key] for o in outputs])[:len(order)]
    restored = np.empty_like(values)
    restored[order] = values
    return restored

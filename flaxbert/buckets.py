"""Dynamic padding for fine-tuning and eval: a few sequence-length buckets, so jit compiles a
handful of shapes instead of padding every batch to max_seq_length.

Typical use on host batches that were packed to a fixed T (the TF Hub preprocessor's
``input_word_ids`` / ``input_mask`` / ``input_type_ids``, all [B, T] int32)::

    order = length_bucketed_order(lengths, batch_size=32, seed=epoch)
    for start in range(0, len(order), 32):
        idx = order[start : start + 32]
        batch = pad_batch({k: v[idx] for k, v in features.items()})  # T -> 32/64/128/...

Sorting by length within chunks keeps the short batches short (fewer wasted FLOPs) while the
order of the examples across the epoch stays random.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_BUCKETS: tuple[int, ...] = (32, 64, 128, 256, 512)
SEQUENCE_KEYS: tuple[str, ...] = ("input_word_ids", "input_mask", "input_type_ids")


def _check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    b = tuple(int(x) for x in buckets)
    if not b or any(x <= 0 for x in b) or any(x >= y for x, y in zip(b, b[1:])):
        raise ValueError(
            f"buckets must be strictly increasing positive lengths, got {tuple(buckets)}"
        )
    return b


def bucket_length(max_len_in_batch: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
    """The smallest bucket >= ``max_len_in_batch`` (0 -> the smallest bucket).

    Raises ValueError when the batch is longer than the largest bucket: truncate in the
    tokenizer (seq_length) or add a bucket.
    """
    b = _check_buckets(buckets)
    n = int(max_len_in_batch)
    if n < 0:
        raise ValueError(f"max_len_in_batch must be >= 0, got {max_len_in_batch}")
    if n > b[-1]:
        raise ValueError(
            f"a sequence of length {n} exceeds the largest bucket {b[-1]} (buckets {b}); "
            f"truncate to seq_length <= {b[-1]} or add a larger bucket"
        )
    return b[int(np.searchsorted(b, n, side="left"))]


def _real_length(mask: np.ndarray) -> int:
    """1 + the last position where any row of the [B, T] mask is non-zero (0 if none)."""
    cols = np.flatnonzero(np.any(mask != 0, axis=0))
    return int(cols[-1]) + 1 if cols.size else 0


def pad_batch(
    features: Mapping[str, np.ndarray],
    length: int | None = None,
    *,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    keys: Sequence[str] = SEQUENCE_KEYS,
    mask_key: str = "input_mask",
) -> dict[str, np.ndarray]:
    """Trim or zero-pad the [B, T] arrays named in ``keys`` to ``length`` along T.

    Args:
        features: host arrays; entries not named in ``keys`` (labels, teacher logits, ...)
            are passed through unchanged.
        length: target T; None -> ``bucket_length(real length, buckets)`` where the real
            length is 1 + the last position with ``features[mask_key] != 0`` in any row.
        buckets, keys, mask_key: see above. Padding uses 0 (the [PAD] id, mask 0, type 0).

    Returns:
        A new dict; trimmed arrays are views, padded ones copies.

    Raises ValueError if trimming would drop a real token (mask != 0 beyond ``length``), if a
    key is missing or not [B, T], or if the arrays disagree on B or T.
    """
    present = [k for k in keys if k in features]
    if mask_key not in features:
        raise ValueError(f"features have no {mask_key!r} (keys: {sorted(features)}); "
                         f"pad_batch needs the mask to find the real length")
    shapes = {k: np.shape(features[k]) for k in present}
    for k, s in shapes.items():
        if len(s) != 2:
            raise ValueError(f"features[{k!r}] must be [batch, seq_len], got shape {s}")
    if len(set(shapes.values())) != 1:
        raise ValueError(f"sequence features disagree on [batch, seq_len]: {shapes}")
    mask = np.asarray(features[mask_key])
    real = _real_length(mask)
    if length is None:
        length = bucket_length(real, buckets)
    length = int(length)
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if real > length:
        raise ValueError(
            f"cannot trim to length {length}: {mask_key} has real tokens up to position {real}; "
            f"use length >= {real} (or length=None to pick a bucket)"
        )
    out = dict(features)
    for k in present:
        a = np.asarray(features[k])
        t = a.shape[1]
        if t >= length:
            out[k] = a[:, :length]
        else:
            padded = np.zeros((a.shape[0], length), dtype=a.dtype)
            padded[:, :t] = a
            out[k] = padded
    return out


def length_bucketed_order(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    seed: int,
    *,
    chunk_batches: int = 100,
    shuffle: bool = True,
) -> np.ndarray:
    """An epoch's example order in which each consecutive ``batch_size`` slice has similar
    lengths, without a global sort.

    Rule: permute all indices with ``np.random.default_rng(seed)`` (skipped if not shuffle);
    cut the permutation into chunks of ``chunk_batches * batch_size``; stable-sort each chunk
    by length (descending); cut the result into batches of ``batch_size`` (only the very last
    batch of the epoch can be short); shuffle the order of the full batches (if shuffle),
    keeping the short batch last. With ``shuffle=False`` (eval) the result is deterministic
    without randomness: each chunk of the file order sorted by length; scatter predictions
    back with ``out[order] = preds``.

    Returns an int64 permutation of ``range(len(lengths))``.
    """
    lens = np.asarray(lengths)
    if lens.ndim != 1:
        raise ValueError(f"lengths must be 1-D (one length per example), got shape {lens.shape}")
    if batch_size <= 0 or chunk_batches <= 0:
        raise ValueError(
            f"batch_size and chunk_batches must be positive, got {batch_size}, {chunk_batches}"
        )
    n = len(lens)
    rng = np.random.default_rng(seed)
    base = rng.permutation(n) if shuffle else np.arange(n)
    chunk = chunk_batches * batch_size
    batches = []
    for start in range(0, n, chunk):
        idx = base[start : start + chunk]
        idx = idx[np.argsort(-lens[idx], kind="stable")]
        batches.extend(idx[i : i + batch_size] for i in range(0, len(idx), batch_size))
    if shuffle and batches:
        full = [b for b in batches if len(b) == batch_size]
        tail = [b for b in batches if len(b) != batch_size]
        batches = [full[i] for i in rng.permutation(len(full))] + tail
    if not batches:
        return np.zeros((0,), dtype=np.int64)
    return np.concatenate(batches).astype(np.int64)

"""distill.data.buckets: bucket choice, trim/pad of packed batches, length-grouped order."""

import numpy as np
import pytest

from distill.data.buckets import bucket_length, length_bucketed_order, pad_batch


def test_bucket_length():
    assert bucket_length(0) == 32
    assert bucket_length(1) == 32
    assert bucket_length(32) == 32
    assert bucket_length(33) == 64
    assert bucket_length(129) == 256
    assert bucket_length(512) == 512
    assert bucket_length(5, buckets=(8, 16)) == 8
    assert bucket_length(9, buckets=[8, 16]) == 16
    with pytest.raises(ValueError, match="exceeds the largest bucket 512"):
        bucket_length(513)
    with pytest.raises(ValueError, match="strictly increasing"):
        bucket_length(3, buckets=(64, 32))
    with pytest.raises(ValueError, match=">= 0"):
        bucket_length(-1)


def _packed(lengths, t=128):
    b = len(lengths)
    ids = np.zeros((b, t), np.int32)
    mask = np.zeros((b, t), np.int32)
    types = np.zeros((b, t), np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n] = np.arange(1, n + 1) + 100 * i
        mask[i, :n] = 1
        types[i, n // 2 : n] = 1
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types,
            "label_ids": np.arange(b, dtype=np.int32)}


def test_pad_batch_trims_to_bucket_and_keeps_tokens():
    feats = _packed([5, 40, 17], t=128)
    out = pad_batch(feats)
    for k in ("input_word_ids", "input_mask", "input_type_ids"):
        assert out[k].shape == (3, 64)  # longest real sequence 40 -> bucket 64
        np.testing.assert_array_equal(out[k], feats[k][:, :64])
        assert out[k].dtype == np.int32
    np.testing.assert_array_equal(out["label_ids"], feats["label_ids"])  # untouched
    assert pad_batch(_packed([3, 32]))["input_mask"].shape == (2, 32)
    assert pad_batch(_packed([3, 33]))["input_mask"].shape == (2, 64)


def test_pad_batch_pads_with_zeros():
    feats = _packed([5, 10], t=16)
    out = pad_batch(feats, 48)
    assert out["input_word_ids"].shape == (2, 48)
    np.testing.assert_array_equal(out["input_word_ids"][:, :16], feats["input_word_ids"])
    assert not out["input_word_ids"][:, 16:].any()
    assert not out["input_mask"][:, 16:].any()
    assert not out["input_type_ids"][:, 16:].any()
    # length=None on a short packing pads up to the smallest bucket.
    assert pad_batch(feats)["input_type_ids"].shape == (2, 32)


def test_pad_batch_errors():
    feats = _packed([5, 40], t=128)
    with pytest.raises(ValueError, match="real tokens up to position 40"):
        pad_batch(feats, 32)
    bad = dict(feats, input_type_ids=feats["input_type_ids"][:, :64])
    with pytest.raises(ValueError, match="disagree"):
        pad_batch(bad)
    with pytest.raises(ValueError, match="input_mask"):
        pad_batch({"input_word_ids": feats["input_word_ids"]})
    with pytest.raises(ValueError, match=r"\[batch, seq_len\]"):
        pad_batch(dict(feats, input_mask=feats["input_mask"][0]))


def test_length_bucketed_order_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 300, size=5003)
    bs = 16
    order = length_bucketed_order(lengths, bs, seed=7, chunk_batches=20)
    assert order.dtype == np.int64
    np.testing.assert_array_equal(np.sort(order), np.arange(len(lengths)))
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    assert all(len(b) == bs for b in batches[:-1]) and len(batches[-1]) == 5003 % bs
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[rng.permutation(len(lengths))[:bs]])
                             for _ in range(50)])
    assert spread < 0.1 * random_spread
    # Padded tokens: far fewer than with the random order.
    def padded(o):
        return sum(lengths[o[i : i + bs]].max() * len(o[i : i + bs]) for i in range(0, len(o), bs))
    assert padded(order) < 0.7 * padded(rng.permutation(len(lengths)))
    # Batches are shuffled: the epoch does not run from long to short chunk by chunk.
    firsts = [lengths[b].max() for b in batches[:20]]
    assert firsts != sorted(firsts, reverse=True)


def test_length_bucketed_order_determinism_and_eval_mode():
    lengths = np.random.default_rng(1).integers(1, 128, size=1000)
    a = length_bucketed_order(lengths, 8, seed=3)
    np.testing.assert_array_equal(a, length_bucketed_order(lengths, 8, seed=3))
    assert not np.array_equal(a, length_bucketed_order(lengths, 8, seed=4))
    ev = length_bucketed_order(lengths, 8, seed=0, shuffle=False, chunk_batches=10)
    np.testing.assert_array_equal(ev, length_bucketed_order(lengths, 8, seed=99, shuffle=False,
                                                            chunk_batches=10))
    # Eval order: each chunk of 80 file-order examples, sorted by length descending.
    np.testing.assert_array_equal(np.sort(ev[:80]), np.arange(80))
    assert np.all(np.diff(lengths[ev[:80]]) <= 0)
    preds = lengths[ev] * 2  # a model's outputs in bucketed order ...
    back = np.empty_like(preds)
    back[ev] = preds  # ... scattered back to file order
    np.testing.assert_array_equal(back, lengths * 2)
    assert length_bucketed_order([], 4, seed=0).shape == (0,)
    with pytest.raises(ValueError, match="batch_size"):
        length_bucketed_order(lengths, 0, seed=0)

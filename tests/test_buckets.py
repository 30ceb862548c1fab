"""flaxbert.buckets: bucket choice, trim/pad of packed batches, length-grouped order."""

import numpy as np
import pytest

from distill.data.features import eval_batches, in_file_order, train_batches
from flaxbert.buckets import bucket_length, length_bucketed_order, pad_batch


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


def _features(lengths, t=64):
    feats = _packed(lengths, t=t)
    feats["label"] = np.arange(len(lengths), dtype=np.int32)  # the row's identity
    return feats


@pytest.mark.parametrize("group_by_length", [False, True])
def test_train_batches_split_global_batches_across_processes(group_by_length):
    """Each process yields its contiguous rows of the same global batch, padded to the global
    batch's bucket (shapes agree across processes); one process sees every row of it."""
    lengths = np.random.default_rng(0).integers(3, 64, size=100)
    feats = _features(lengths)
    kw = dict(batch_size=8, seed=1, buckets=(16, 32, 64), group_by_length=group_by_length)
    whole = train_batches(feats, **kw)
    parts = [train_batches(feats, **kw, process_index=i, process_count=2) for i in range(2)]
    for _ in range(30):  # past the first epoch of 12 batches
        batch, halves = next(whole), [next(p) for p in parts]
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), batch[key])
    with pytest.raises(ValueError, match="not divisible by the number of processes 3"):
        train_batches(feats, **kw, process_index=0, process_count=3)


def test_eval_batches_split_global_batches_across_processes():
    lengths = np.random.default_rng(0).integers(3, 64, size=101)
    feats = _features(lengths)
    feats["example_weight"] = np.ones(101, np.float32)
    kw = dict(batch_size=8, buckets=(16, 32, 64))
    whole = list(eval_batches(feats, **kw))
    parts = [list(eval_batches(feats, **kw, process_index=i, process_count=2)) for i in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 13
    for batch, *halves in zip(whole, *parts):
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), batch[key])


def test_train_batches_grouped_by_length_pad_less_and_resume():
    lengths = np.random.default_rng(0).integers(3, 64, size=400)
    feats = _features(lengths)
    kw = dict(batch_size=8, seed=1, buckets=(16, 32, 48, 64))
    epoch = 400 // 8

    def slots(it, n):
        return sum(next(it)["input_word_ids"].size for _ in range(n))
    assert slots(train_batches(feats, **kw, group_by_length=True), epoch) < 0.8 * slots(
        train_batches(feats, **kw), epoch)
    grouped = train_batches(feats, **kw, group_by_length=True)
    seen = [next(grouped)["label"] for _ in range(2 * epoch)]
    for rows in (seen[:epoch], seen[epoch:]):  # each epoch: every row once, a new order
        np.testing.assert_array_equal(np.sort(np.concatenate(rows)), np.arange(400))
    assert not np.array_equal(np.concatenate(seen[:epoch]), np.concatenate(seen[epoch:]))
    resumed = train_batches(feats, **kw, group_by_length=True)
    for _ in range(epoch - 3):
        next(resumed)
    state = resumed.get_state()
    fresh = train_batches(feats, **kw, group_by_length=True)
    fresh.set_state(state)
    for expected in seen[epoch - 3:epoch + 3]:
        np.testing.assert_array_equal(next(fresh)["label"], expected)


def test_eval_batches_pad_less_and_outputs_return_to_file_order():
    lengths = np.random.default_rng(0).integers(3, 64, size=203)
    feats = _features(lengths)
    feats["example_weight"] = np.ones(203, np.float32)
    batches = list(eval_batches(feats, 16, buckets=(16, 32, 48, 64)))
    assert all(len(b["label"]) == 16 for b in batches) and len(batches) == 13
    assert sum(b["example_weight"].sum() for b in batches) == 203
    assert sum(b["input_word_ids"].size for b in batches) < 0.8 * 13 * 16 * 64
    # a per-row output (here the row's own id, as a model's logits would be) comes back in order
    outputs = [{"logits": b["label"][:, None] * np.ones((1, 2))} for b in batches]
    np.testing.assert_array_equal(in_file_order(outputs, "logits", feats, 16)[:, 0], np.arange(203))

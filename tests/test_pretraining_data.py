"""MLM/NSP pre-training data: sources, instance creation, masking and the grain pipeline.

The recipe checked here is google-research/bert create_pretraining_data.py (see
shared/REFERENCES.md "Pre-training data"): masked_lm_prob 0.15, predictions
min(max_pred, max(1, round(len * 0.15))), 80% [MASK] / 10% kept / 10% random, never [CLS]/[SEP],
short_seq_prob 0.1, NSP random-next with probability 0.5, truncation from the longer segment.
"""

import json

import numpy as np
import pytest

from distill.data import pretraining as P
from distill.data import sources as S

CLS, SEP, PAD, MASK, UNK = 1, 2, 0, 3, 4
VOCAB_SIZE = 1000
FIRST_WORD_ID = 10  # ids below are special / unused in the hand-made corpus


def _vocab(seed=0) -> P.VocabInfo:
    starts = np.random.default_rng(seed).random(VOCAB_SIZE) < 0.6  # 40% of ids are "##" pieces
    starts[:FIRST_WORD_ID] = True
    return P.VocabInfo(
        vocab_size=VOCAB_SIZE, cls_id=CLS, sep_id=SEP, pad_id=PAD, mask_id=MASK,
        special_ids=(UNK,), word_starts=starts,
    )


def _corpus(num_docs=400, seed=0, min_sents=6, max_sents=30, max_len=25):
    rng = np.random.default_rng(seed)
    return [
        [
            rng.integers(FIRST_WORD_ID, VOCAB_SIZE, rng.integers(1, max_len + 1)).tolist()
            for _ in range(rng.integers(min_sents, max_sents + 1))
        ]
        for _ in range(num_docs)
    ]


def _take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def _same(batches_a, batches_b) -> bool:
    return all(
        a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        for a, b in zip(batches_a, batches_b, strict=True)
    )


def _unmask(batch):
    """Original token ids of every row (positions restored from masked_lm_ids)."""
    ids = batch["input_word_ids"].copy()
    for r in range(len(ids)):
        w = batch["masked_lm_weights"][r] > 0
        ids[r, batch["masked_lm_positions"][r][w]] = batch["masked_lm_ids"][r][w]
    return ids


@pytest.fixture(scope="module")
def real_tokenizer(minilm_dir):
    from flaxbert.tokenization import load_tokenizer

    return load_tokenizer(minilm_dir)


# ----------------------------------------------------------------------------- sources


def test_text_source_google_format(tmp_path):
    (tmp_path / "a.txt").write_text("s1\ns2\n\n\n  s3  \n\ns4\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("t1\nt2", encoding="utf-8")
    (tmp_path / "skip.json").write_text("{}", encoding="utf-8")
    assert S.read_documents(str(tmp_path)) == [["s1", "s2"], ["s3"], ["s4"], ["t1", "t2"]]
    assert S.read_documents(f"text:{tmp_path}/b.txt") == [["t1", "t2"]]
    assert S.read_documents(f"{tmp_path}/*.txt,{tmp_path}/b.txt")[-1] == ["t1", "t2"]


def test_jsonl_source_and_sentence_split(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"body": "One. Two!  Three? four"}, {"body": "line a. still a\nline b"}, {"body": " "}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    docs = S.read_documents(str(path), text_field="body")
    assert docs == [["One.", "Two!", "Three?", "four"], ["line a. still a", "line b"]]
    assert S.split_sentences("a. b\nc. d", "both") == ["a.", "b", "c.", "d"]
    with pytest.raises(ValueError, match="'text'.*body"):
        S.read_documents(str(path))  # default field "text" is absent: message names both
    with pytest.raises(ValueError, match="sentence_split"):
        S.split_sentences("x", "words")


def test_vader_pseudo_documents(vader_dir, movie_sentences):
    docs = S.read_documents(f"vader:{vader_dir}/movieReviewSnippets_GroundTruth.txt")
    assert len(docs) == -(-10605 // 8)
    assert all(len(d) == 8 for d in docs[:-1]) and len(docs[-1]) == 10605 % 8
    assert [s for d in docs for s in d] == [s.strip() for s in movie_sentences]
    docs3 = S.read_documents(f"vader:{vader_dir}", sentences_per_document=3)
    assert sum(map(len, docs3)) == 10605 + 4200 + 5190 + 3708
    assert max(map(len, docs3)) == 3
    with pytest.raises(ValueError, match="sentences_per_document"):
        S.read_documents(f"vader:{vader_dir}", sentences_per_document=0)


def test_host_sharding_is_disjoint_and_covers(vader_dir):
    spec = f"vader:{vader_dir}"
    full = S.read_documents(spec)
    shards = [S.read_documents(spec, process_index=i, process_count=2) for i in range(2)]
    assert shards[0] == full[0::2] and shards[1] == full[1::2]
    as_set = [{tuple(d) for d in s} for s in shards]
    assert not as_set[0] & as_set[1]
    assert sorted(shards[0] + shards[1]) == sorted(full)
    with pytest.raises(ValueError, match="process_index"):
        S.read_documents(spec, process_index=2, process_count=2)


def test_source_errors(tmp_path, real_tokenizer):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        S.read_documents(str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="matched no files"):
        S.read_documents(str(tmp_path / "*.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt"):
        S.read_documents(str(empty))
    with pytest.raises(ValueError, match="empty.txt"):
        P.text_to_pretraining_dataset(str(empty), real_tokenizer, batch_size=2)
    with pytest.raises(ValueError, match="source spec.*Tokenizer"):
        P.make_pretraining_dataset(str(empty), _vocab(), batch_size=2)
    # tfds: sources, their errors and the missing package: tests/test_tfds.py


# ----------------------------------------------------------------------------- instances


def test_instances_structure_and_lengths():
    docs = _corpus(300)
    store = P.create_instances(docs, cls_id=CLS, sep_id=SEP, max_seq_length=64, rng=0)
    lengths = store.lengths()
    assert len(store) > 300 and lengths.max() <= 64 and lengths.max() == 64
    for i in range(len(store)):
        inst = store[i]
        t, n0 = inst["tokens"], inst["num_type0"]
        assert t[0] == CLS and t[n0 - 1] == SEP and t[-1] == SEP
        assert n0 >= 3 and len(t) - n0 >= 2  # both segments non-empty
        assert not np.isin(t[1 : n0 - 1], [CLS, SEP]).any()
        assert not np.isin(t[n0:-1], [CLS, SEP]).any()
    with pytest.raises(ValueError, match="max_seq_length"):
        P.create_instances(docs, cls_id=CLS, sep_id=SEP, max_seq_length=4, rng=0)
    with pytest.raises(ValueError, match="empty"):
        P.create_instances([[], [[]]], cls_id=CLS, sep_id=SEP, rng=0)


def test_actual_next_keeps_order_and_random_next_comes_from_other_document():
    # Every token encodes (document, sentence, position) so the provenance of B is visible.
    docs = [[[10_000 * d + 100 * s + k for k in range(5)] for s in range(40)] for d in range(50)]
    store = P.create_instances(docs, cls_id=CLS, sep_id=SEP, max_seq_length=40, rng=3)
    for i in range(len(store)):
        inst = store[i]
        t, n0 = inst["tokens"], inst["num_type0"]
        a, b = t[1 : n0 - 1], t[n0:-1]
        assert (a // 10_000 == inst["doc_index"]).all()
        if inst["is_random_next"]:
            assert (b // 10_000 != inst["doc_index"]).all()
        else:  # B continues A within the same document (truncation only trims the ends)
            assert (b // 10_000 == inst["doc_index"]).all() and b[0] > a[-1]


def test_short_sequence_fraction():
    # With one-token sentences an actual-next instance holds exactly `target` text tokens, so
    # the first instance of a document is short iff that document drew a short target (p = 0.1:
    # google draws the target once per document; randint(2, 125) < 125 with p = 123/124).
    # (A random-next B can run out of sentences at the end of the other document; skip those.)
    docs = [[[FIRST_WORD_ID + (k % 50)] for k in range(130)] for _ in range(3000)]
    store = P.create_instances(docs, cls_id=CLS, sep_id=SEP, max_seq_length=128, rng=1)
    first = np.unique(store.doc_index, return_index=True)[1]
    first = first[store.is_random_next[first] == 0]
    assert len(first) > 1200
    short = (store.lengths()[first] < 128).mean()
    assert abs(short - 0.1 * 123 / 124) < 0.03, short
    none = P.create_instances(docs[:100], cls_id=CLS, sep_id=SEP, short_seq_prob=0.0, rng=1)
    first = np.unique(none.doc_index, return_index=True)[1]
    first = first[none.is_random_next[first] == 0]
    assert len(first) > 20 and (none.lengths()[first] == 128).all()


def test_nsp_label_balance():
    # The first chunk of a long document always has >= 2 sentences, where google draws random
    # next with p = 0.5. (Later singleton chunks are always random next, so overall the label-1
    # share is a little higher on corpora of short documents; see the VADER test.)
    docs = _corpus(2000, seed=5, min_sents=20, max_sents=40, max_len=12)
    store = P.create_instances(docs, cls_id=CLS, sep_id=SEP, short_seq_prob=0.0, rng=7)
    first = np.unique(store.doc_index, return_index=True)[1]
    share = store.is_random_next[first].mean()
    assert abs(share - 0.5) < 0.03, share
    assert abs(store.is_random_next.mean() - 0.5) < 0.05


def test_truncation_removes_from_longer_segment_front_or_back():
    a, b = list(range(100, 150)), list(range(200, 210))
    fronts = backs = 0
    for seed in range(20):
        ta, tb = P._truncate_seq_pair(a, b, 30, np.random.default_rng(seed))
        assert len(ta) + len(tb) == 30 and tb == b  # only the longer segment is cut here
        assert ta == a[a.index(ta[0]) : a.index(ta[0]) + len(ta)]  # a contiguous span survives
        fronts += ta[0] != a[0]
        backs += ta[-1] != a[-1]
    assert fronts == 20 and backs == 20  # 30 removals: both ends cut (p of failing ~ 1e-9)
    ta, tb = P._truncate_seq_pair(list(range(10)), list(range(10)), 10, np.random.default_rng(0))
    assert len(ta) == len(tb) == 5


def test_full_sentences_packing_without_nsp():
    docs = _corpus(100, seed=2, max_len=40)
    store = P.create_instances(
        docs, cls_id=CLS, sep_id=SEP, max_seq_length=32, nsp=False, short_seq_prob=0.0, rng=0
    )
    assert store.lengths().max() <= 32 and (store.lengths() == 32).mean() > 0.3
    assert (store.num_type0 == store.lengths()).all() and not store.is_random_next.any()
    content = np.concatenate([store[i]["tokens"][1:-1] for i in range(len(store))])
    assert (store.tokens[store.offsets[:-1]] == CLS).all()
    # Contiguous text, in order, nothing lost: [SEP] only marks document boundaries.
    expected = [t for d in docs for s in d for t in s]
    assert content[content != SEP].tolist() == expected
    assert (content == SEP).sum() <= len(docs) - 1


# ----------------------------------------------------------------------------- masking


def test_mask_tokens_counts_positions_and_padding():
    rng = np.random.default_rng(0)
    ids = np.array([CLS, *range(20, 60), SEP, *range(60, 70), SEP] + [PAD] * 30, np.int32)
    special = np.isin(ids, [CLS, SEP, PAD])
    n_real = int((ids != PAD).sum())
    for _ in range(200):
        masked, pos, lab, w = P.mask_tokens(
            ids, special, None, rng, vocab_size=VOCAB_SIZE, mask_id=MASK, pad_id=PAD,
            max_predictions_per_seq=20,
        )
        k = int(w.sum())
        assert k == P.num_predictions(n_real) == round(n_real * 0.15)
        assert (np.diff(pos[:k]) > 0).all() and not special[pos[:k]].any()
        assert (pos[k:] == 0).all() and (lab[k:] == 0).all() and (w[k:] == 0).all()
        assert (lab[:k] == ids[pos[:k]]).all()
        changed = np.flatnonzero(masked != ids)
        assert set(changed) <= set(pos[:k].tolist())
        assert (masked[special] == ids[special]).all()
    # google's count: at least 1, at most max_predictions_per_seq
    assert P.num_predictions(3) == 1 and P.num_predictions(128) == 19
    assert P.num_predictions(512, max_predictions_per_seq=20) == 20
    with pytest.raises(ValueError, match="special_mask"):
        P.mask_tokens(ids, special[:-1], None, 0, vocab_size=VOCAB_SIZE, mask_id=MASK)
    with pytest.raises(ValueError, match="masked_lm_prob"):
        P.mask_tokens(ids, special, None, 0, vocab_size=VOCAB_SIZE, mask_id=MASK,
                      masked_lm_prob=0.0)


def _mask_stats(batches, vocab: P.VocabInfo, full_length_only=False):
    """masked fraction of non-special tokens and the [MASK]/kept/random split."""
    n_tokens = n_pred = n_mask = n_keep = n_rand = 0
    special = np.asarray(vocab.special_ids)
    for b in batches:
        orig = _unmask(b)
        for r in range(len(orig)):
            length = int(b["input_mask"][r].sum())
            if full_length_only and length < orig.shape[1]:
                continue
            k = int(b["masked_lm_weights"][r].sum())
            pos = b["masked_lm_positions"][r][:k]
            assert k == P.num_predictions(length, 0.15, b["masked_lm_ids"].shape[1])
            assert not np.isin(orig[r, pos], special).any()  # never [CLS]/[SEP]/[PAD]/...
            assert pos.max(initial=0) < length  # never padding
            assert (b["input_word_ids"][r, length:] == vocab.pad_id).all()
            n_tokens += int((~np.isin(orig[r, :length], special)).sum())
            got = b["input_word_ids"][r, pos]
            n_pred += k
            n_mask += int((got == vocab.mask_id).sum())
            n_keep += int((got == orig[r, pos]).sum())
            n_rand += int(((got != vocab.mask_id) & (got != orig[r, pos])).sum())
            assert not np.isin(got[got != vocab.mask_id], special).any()
    return n_pred / n_tokens, n_mask / n_pred, n_keep / n_pred, n_rand / n_pred


def test_mask_statistics_on_hand_made_corpus():
    vocab = _vocab()
    ds = P.make_pretraining_dataset(
        _corpus(400), vocab, batch_size=64, dupe_factor=2, seed=3, num_epochs=1
    )
    frac, m, keep, rnd = _mask_stats(list(ds), vocab, full_length_only=True)
    assert abs(frac - 0.15) < 0.01, frac
    assert abs(m - 0.8) < 0.02 and abs(keep - 0.1) < 0.02 and abs(rnd - 0.1) < 0.02, (m, keep, rnd)


def test_whole_word_masking_masks_all_pieces_together():
    vocab = _vocab()
    ds = P.make_pretraining_dataset(
        _corpus(150), vocab, batch_size=32, dupe_factor=1, seed=0, num_epochs=1,
        whole_word_masking=True,
    )
    n_multi = 0
    for b in ds:
        orig = _unmask(b)
        for r in range(len(orig)):
            length = int(b["input_mask"][r].sum())
            k = int(b["masked_lm_weights"][r].sum())
            assert 1 <= k <= P.num_predictions(length)
            chosen = np.zeros(length, bool)
            chosen[b["masked_lm_positions"][r][:k]] = True
            is_special = np.isin(orig[r, :length], vocab.special_ids)
            after_special = np.concatenate([[True], is_special[:-1]])
            # a word = a start piece and the "##" pieces after it (never across a special)
            word = np.cumsum(vocab.word_starts[orig[r, :length]] | is_special | after_special)
            for w_id in np.unique(word[chosen]):
                assert chosen[word == w_id].all()  # all pieces of a chosen word are chosen
                n_multi += (word == w_id).sum() > 1
    assert n_multi > 100  # multi-piece words were actually exercised


# ----------------------------------------------------------------------------- pipeline


def test_batch_shapes_and_dtypes():
    ds = P.make_pretraining_dataset(_corpus(50), _vocab(), batch_size=4, max_seq_length=48,
                                    max_predictions_per_seq=7, dupe_factor=1)
    b = next(iter(ds))
    shapes = {k: (v.shape, v.dtype.name) for k, v in b.items()}
    assert shapes == {
        "input_word_ids": ((4, 48), "int32"), "input_mask": ((4, 48), "int32"),
        "input_type_ids": ((4, 48), "int32"), "masked_lm_positions": ((4, 7), "int32"),
        "masked_lm_ids": ((4, 7), "int32"), "masked_lm_weights": ((4, 7), "float32"),
        "next_sentence_labels": ((4,), "int32"),
    }
    # type ids: 0 on [CLS] A [SEP], 1 on B [SEP], 0 on padding
    for r in range(4):
        length = b["input_mask"][r].sum()
        types = b["input_type_ids"][r]
        n0 = int((types[:length] == 0).sum())
        assert (types[:n0] == 0).all() and (types[n0:length] == 1).all()
        assert not types[length:].any()
        assert _unmask(b)[r, n0 - 1] == SEP
    b = next(iter(P.make_pretraining_dataset(_corpus(50), _vocab(), batch_size=4, nsp=False)))
    assert "next_sentence_labels" not in b and not b["input_type_ids"].any()


def test_determinism_and_dynamic_masking():
    docs, vocab = _corpus(120), _vocab()
    kw = dict(batch_size=8, dupe_factor=2, seed=11)
    a = _take(P.make_pretraining_dataset(docs, vocab, **kw), 6)
    assert _same(a, _take(P.make_pretraining_dataset(docs, vocab, **kw), 6))
    assert not _same(a, _take(P.make_pretraining_dataset(docs, vocab, **{**kw, "seed": 12}), 6))

    # Unshuffled, epoch 1 repeats epoch 0's instances in order but with fresh masks.
    n = len(P.build_instances(docs, vocab, dupe_factor=2, seed=11))
    ds = P.make_pretraining_dataset(docs, vocab, batch_size=1, dupe_factor=2, seed=11,
                                    shuffle=False, num_epochs=2)
    rows = list(ds)
    assert len(rows) == 2 * n
    e0, e1 = rows[:40], rows[n : n + 40]
    assert all(np.array_equal(_unmask(x), _unmask(y)) for x, y in zip(e0, e1))
    differ = sum(not np.array_equal(x["masked_lm_positions"], y["masked_lm_positions"])
                 for x, y in zip(e0, e1))
    assert differ >= 35

    # Masks depend on (seed, epoch, instance), not on batching or iteration history.
    ds8 = P.make_pretraining_dataset(docs, vocab, batch_size=8, dupe_factor=2, seed=11,
                                     shuffle=False, num_epochs=2)
    first8 = next(iter(ds8))
    assert all(np.array_equal(first8[k][i], rows[i][k][0]) for k in first8 for i in range(8))

    # Shuffled epochs come in a different order.
    sh = _take(P.make_pretraining_dataset(docs, vocab, batch_size=n, dupe_factor=2, seed=11,
                                          drop_remainder=False), 2)
    assert not np.array_equal(_unmask(sh[0]), _unmask(sh[1]))
    assert sorted(map(tuple, _unmask(sh[0]))) == sorted(map(tuple, _unmask(sh[1])))


def test_iterator_state_resumes_exactly():
    ds = P.make_pretraining_dataset(_corpus(80), _vocab(), batch_size=8, dupe_factor=2, seed=4)
    it = iter(ds)
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(6)]
    fresh = iter(ds)
    fresh.set_state(state)
    assert _same(expected, [next(fresh) for _ in range(6)])


def test_orbax_checkpoint_of_iterator(tmp_path):
    grain = pytest.importorskip("grain")
    ocp = pytest.importorskip("orbax.checkpoint")
    ds = P.make_pretraining_dataset(_corpus(60), _vocab(), batch_size=4, dupe_factor=1, seed=9)
    it = iter(ds)
    for _ in range(3):
        next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
    expected = [next(it) for _ in range(4)]
    fresh = iter(ds)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        restored = mngr.restore(
            7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh))
        )
    assert _same(expected, [next(restored["data"]) for _ in range(4)])


def test_pipeline_host_sharding_and_errors():
    docs, vocab = _corpus(40), _vocab()
    kw = dict(batch_size=4, dupe_factor=1, seed=0, shuffle=False, num_epochs=1,
              drop_remainder=False)
    tokens = []
    for pi in range(2):
        rows = np.concatenate([_unmask(b) for b in P.make_pretraining_dataset(
            docs, vocab, process_index=pi, process_count=2, **kw)])
        tokens.append({t for t in rows.ravel().tolist() if t >= FIRST_WORD_ID})
    # Segment A always comes from the host's own documents; B may be random from them too.
    own = [{t for d in docs[pi::2] for s in d for t in s} for pi in range(2)]
    assert tokens[0] <= own[0] and tokens[1] <= own[1]
    with pytest.raises(ValueError, match="process_index"):
        P.make_pretraining_dataset(docs, vocab, batch_size=2, process_index=1, process_count=1)
    with pytest.raises(ValueError, match="batch_size"):
        P.make_pretraining_dataset(docs, vocab, batch_size=0)
    with pytest.raises(ValueError, match="shard 1 of 2"):
        P.make_pretraining_dataset(docs[:1], vocab, batch_size=2, process_index=1,
                                   process_count=2)
    with pytest.raises(ValueError, match="mask_id"):
        P.VocabInfo(vocab_size=10, cls_id=1, sep_id=2, pad_id=0, mask_id=10)


# ----------------------------------------------------------------------------- real data


def test_real_vader_text_with_real_vocab(vader_dir, real_tokenizer):
    tok = real_tokenizer
    vocab = P.VocabInfo.from_tokenizer(tok)
    assert vocab.vocab_size == 30522 and vocab.mask_id == 103  # bert-base-uncased ids
    assert vocab.word_starts[tok.encode_batch(["embeddings"])[0]].tolist() == [True] + [False] * (
        len(tok.encode_batch(["embeddings"])[0]) - 1
    )
    ds = P.text_to_pretraining_dataset(
        f"vader:{vader_dir}", tok, batch_size=128, dupe_factor=1, seed=0, num_epochs=1,
        sentences_per_document=8,
    )
    batches = list(ds)
    frac, m, keep, rnd = _mask_stats(batches, vocab)
    # google's count includes [CLS]/[SEP] (round(len * 0.15)), so short sequences mask a bit
    # more than 15% of their text; over full-length rows it is 19/125.
    assert 0.15 <= frac < 0.16, frac
    assert abs(m - 0.8) < 0.02 and abs(keep - 0.1) < 0.02 and abs(rnd - 0.1) < 0.02, (m, keep, rnd)
    labels = np.concatenate([b["next_sentence_labels"] for b in batches])
    # 8-sentence pseudo-documents leave singleton chunks, which google always pairs with a
    # random next: the label-1 share sits above one half.
    assert 0.5 < labels.mean() < 0.65, labels.mean()
    lengths = np.concatenate([b["input_mask"].sum(1) for b in batches])
    assert lengths.max() == 128 and lengths.min() >= 5


def test_real_whole_word_masking(vader_dir, real_tokenizer, movie_sentences):
    tok = real_tokenizer
    docs = P.tokenize_documents([movie_sentences[i : i + 8] for i in range(0, 800, 8)], tok)
    vocab = P.VocabInfo.from_tokenizer(tok)
    ds = P.make_pretraining_dataset(docs, tok, batch_size=50, dupe_factor=1, seed=0,
                                    num_epochs=1, whole_word_masking=True)
    n_multi = 0
    for b in ds:
        orig = _unmask(b)
        for r in range(len(orig)):
            length = int(b["input_mask"][r].sum())
            k = int(b["masked_lm_weights"][r].sum())
            chosen = np.zeros(length, bool)
            chosen[b["masked_lm_positions"][r][:k]] = True
            is_special = np.isin(orig[r, :length], vocab.special_ids)
            after_special = np.concatenate([[True], is_special[:-1]])
            word = np.cumsum(vocab.word_starts[orig[r, :length]] | is_special | after_special)
            for w_id in np.unique(word[chosen]):
                assert chosen[word == w_id].all()
                n_multi += (word == w_id).sum() > 1
    assert n_multi > 20


def test_sentencepiece_vocab_drives_a_pretraining_run(tmp_path, vader_dir):
    """`distill vocab` on the real sentences, then a short pre-training run on it."""


    from distill.cli import main as distill_main
    from flaxbert.tokenization import load_tokenizer

    source = f"vader:{vader_dir / 'tweets_GroundTruth.txt'}"
    distill_main(["distill", "vocab", "--input", source, "--out", str(tmp_path / "spm"),
                   "--kind", "sentencepiece", "--vocab-size", "2000"])
    tok = load_tokenizer(tmp_path / "spm")
    assert tok.vocab_size == 2000
    distill_main(["distill", "pretrain", "--config=pretrain.py:tiny",
                  f"--workdir={tmp_path / 'run'}", f"--config.data.vocab={tmp_path / 'spm'}",
                  f"--config.data.train={source}", f"--config.data.eval={source}",
                  "--config.data.max_seq_length=32", "--config.data.dupe_factor=1",
                  "--config.trainer.num_steps=3", "--config.trainer.batch_size=8"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["steps"] == 3
    exported = json.loads((tmp_path / "run" / "export" / "config.json").read_text())
    assert exported["vocab_size"] == 2000 and (tmp_path / "run" / "export" / "spiece.model").exists()


def _segments(batch):
    """(masked ids, MLM targets by position) of every packed segment in a batch."""
    out = []
    for r in range(len(batch["input_word_ids"])):
        seg = batch["input_mask"][r]
        w = batch["masked_lm_weights"][r] > 0
        targets = dict(zip(batch["masked_lm_positions"][r][w].tolist(),
                           batch["masked_lm_ids"][r][w].tolist()))
        for s in range(1, seg.max() + 1):
            (where,) = np.nonzero(seg == s)
            assert np.array_equal(batch["input_positions"][r][where], np.arange(len(where)))
            out.append((tuple(batch["input_word_ids"][r][where].tolist()),
                        tuple((int(p - where[0]), targets[p]) for p in where if p in targets)))
    return out


def test_packed_rows_hold_the_unpacked_instances_with_their_masks():
    common = dict(batch_size=8, max_seq_length=64, max_predictions_per_seq=10, nsp=False,
                  seed=5, short_seq_prob=0.9, shuffle=False)
    packed = _take(P.make_pretraining_dataset(_corpus(60), _vocab(), pack=True, **common), 4)
    plain = _take(P.make_pretraining_dataset(_corpus(60), _vocab(), cross_documents=False,
                                             **common), 24)
    instances = set()
    for b in plain:
        for r in range(len(b["input_word_ids"])):
            n = int(b["input_mask"][r].sum())
            w = b["masked_lm_weights"][r] > 0
            instances.add((tuple(b["input_word_ids"][r][:n].tolist()),
                           tuple(sorted(zip(b["masked_lm_positions"][r][w].tolist(),
                                            b["masked_lm_ids"][r][w].tolist())))))
    segments = [(ids, tuple(sorted(t))) for b in packed for ids, t in _segments(b)]
    assert len(segments) > 1.5 * 4 * 8  # rows really hold several instances
    assert all(s in instances for s in segments)
    fill = lambda bs: np.mean([(b["input_mask"] > 0).mean() for b in bs])  # noqa: E731
    assert fill(packed) > 1.5 * fill(plain)
    assert packed[0]["masked_lm_positions"].shape == plain[0]["masked_lm_positions"].shape


def test_packing_with_nsp_is_refused():
    with pytest.raises(ValueError, match="pack=True needs nsp=False"):
        P.make_pretraining_dataset(_corpus(5), _vocab(), batch_size=2, nsp=True, pack=True)


def test_a_packed_row_gives_each_instance_its_own_outputs():
    """Segment-local attention and restarted positions: every packed segment's sequence output and
    MLM logits equal those of the instance run alone (≤ 1e-5)."""
    import jax.numpy as jnp

    from flaxbert import Model, get_config, init_params

    model = Model(get_config("tiny").replace(vocab_size=VOCAB_SIZE, max_position_embeddings=64),
                  heads=("mlm",))
    params = init_params(model, 0)
    batch = _take(P.make_pretraining_dataset(_corpus(30), _vocab(), batch_size=4, max_seq_length=64,
                                             nsp=False, seed=1, short_seq_prob=0.7, pack=True), 1)[0]
    out = model.apply({"params": params}, *(jnp.asarray(batch[k]) for k in (
        "input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions")),
        input_positions=jnp.asarray(batch["input_positions"]))
    checked = 0
    for r in range(4):
        for s in range(1, batch["input_mask"][r].max() + 1):
            (where,) = np.nonzero(batch["input_mask"][r] == s)
            alone = np.zeros((1, 64), np.int32)
            alone[0, :len(where)] = batch["input_word_ids"][r][where]
            types = np.zeros_like(alone)
            types[0, :len(where)] = batch["input_type_ids"][r][where]
            mask = (np.arange(64) < len(where)).astype(np.int32)[None]
            single = model.apply({"params": params}, alone, mask, types,
                                 np.arange(len(where), dtype=np.int32)[None])
            np.testing.assert_allclose(np.asarray(out["sequence_output"][r][where]),
                                       np.asarray(single["sequence_output"][0, :len(where)]),
                                       atol=1e-5, rtol=0)
            predicted = np.isin(batch["masked_lm_positions"][r], where) & (
                batch["masked_lm_weights"][r] > 0)
            np.testing.assert_allclose(
                np.asarray(out["mlm_logits"][r][predicted]),
                np.asarray(single["mlm_logits"][0][batch["masked_lm_positions"][r][predicted]
                                                   - where[0]]), atol=1e-4, rtol=0)
            checked += 1
    assert checked > 4


def test_ten_prediction_slots_hold_every_mask_of_a_64_token_row():
    # 15 % of 64 tokens rounds to 10, so the recipes' 64-token rows need 10 slots, not BERT's 20
    # for 128 tokens: the same masks, half the vocabulary projections
    common = dict(batch_size=8, max_seq_length=64, nsp=False, seed=5, shuffle=False)
    ten = _take(P.make_pretraining_dataset(_corpus(60), _vocab(), max_predictions_per_seq=10,
                                           **common), 6)
    twenty = _take(P.make_pretraining_dataset(_corpus(60), _vocab(), max_predictions_per_seq=20,
                                              **common), 6)
    assert P.num_predictions(64, max_predictions_per_seq=20) == 10
    for a, b in zip(ten, twenty):
        np.testing.assert_array_equal(a["input_word_ids"], b["input_word_ids"])
        assert not b["masked_lm_weights"][:, 10:].any()
        for key in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
            np.testing.assert_array_equal(a[key], b[key][:, :10])

"""Tokenizers against transformers' BertTokenizerFast on real text; TF Hub packing by hand."""

import io
import json
import random
import re
import shutil
import unicodedata
from collections import Counter

import numpy as np
import pytest
import sentencepiece as spm
import transformers

from flaxbert.tokenization import (
    Preprocessor,
    SentencePieceTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
    pack_inputs,
    round_robin_trim,
    train_sentencepiece,
    train_wordpiece,
)

ACCENTED = ["Café Déjà vu", "naïve résumé, façade; CRÈME brûlée!", "Ångström über Straße"]
MIXED_CJK = ["我爱北京天安门!", "I love 北京 and 東京タワー, Café.", "中文 text 混合 english"]
CLS, SEP = 101, 102  # bert-base-uncased ids, used as plain numbers in the packing tests


def _hf(vocab_file, **kwargs):
    return transformers.BertTokenizerFast(str(vocab_file), **kwargs)


def _write_vocab(path, tokens):
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


def _strip_accents(text):
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if unicodedata.category(c) != "Mn")


@pytest.fixture(scope="module")
def uncased(minilm_dir):
    return load_tokenizer(minilm_dir)


@pytest.fixture(scope="module")
def hf_uncased(minilm_dir):
    return _hf(minilm_dir / "vocab.txt")


# ------------------------------------------------------------------ WordPiece parity


def test_uncased_ids_match_transformers(uncased, hf_uncased, movie_sentences):
    texts = movie_sentences + ACCENTED + MIXED_CJK
    assert len(movie_sentences) >= 1000
    theirs = hf_uncased(texts, add_special_tokens=False)["input_ids"]
    assert uncased.encode_batch(texts) == theirs
    # The single-text path and tokenize() agree with the batched one.
    for text, ids in zip(texts[:300] + texts[-6:], theirs[:300] + theirs[-6:]):
        assert uncased.encode(text) == ids
        assert uncased.tokenize(text) == hf_uncased.convert_ids_to_tokens(ids)


def test_uncased_lowercases_and_strips_accents(uncased):
    # bert-base-uncased: "Café Déjà vu" -> cafe de ##ja vu (google BERT basic tokenizer).
    assert uncased.tokenize("Café Déjà vu") == ["cafe", "de", "##ja", "vu"]
    assert uncased.tokenize("CAFÉ") == ["cafe"]
    assert uncased.encode("[MASK]") == [uncased.mask_id] == [103]
    assert uncased.tokenize("中文") == ["中", "文"]


def test_tokenizer_json_matches_vocab_txt(minilm_dir, uncased, movie_sentences):
    from_json = WordPieceTokenizer.from_tokenizer_json(minilm_dir / "tokenizer.json")
    texts = movie_sentences[:2000] + ACCENTED + MIXED_CJK
    # tokenizer.json pads/truncates to 128: switched off, so long texts keep every piece.
    long_text = " ".join(movie_sentences[:40])
    assert len(from_json.encode(long_text)) > 128
    assert from_json.encode_batch(texts) == uncased.encode_batch(texts)
    assert from_json.special_ids == uncased.special_ids == frozenset({0, 100, 101, 102, 103})
    assert from_json.lowercase is True


def test_uncased_keep_accents_matches_transformers(minilm_dir, movie_sentences):
    ours = WordPieceTokenizer.from_vocab(minilm_dir / "vocab.txt", lowercase=True,
                                         strip_accents=False)
    theirs = _hf(minilm_dir / "vocab.txt", do_lower_case=True, strip_accents=False)
    texts = ACCENTED + movie_sentences[:500]
    assert ours.encode_batch(texts) == theirs(texts, add_special_tokens=False)["input_ids"]
    # bert-base-uncased has no accented pieces at all, so unstripped "café" is unknown.
    assert ours.tokenize("Café vu") == ["[UNK]", "vu"]


@pytest.fixture(scope="module")
def cased_vocab(tmp_path_factory, movie_sentences):
    """A cased vocabulary collected from the real sentences: frequent case-preserved words,
    every character alone and as '##' continuation, a few suffixes, and two accented words."""
    words = Counter(w for s in movie_sentences for w in re.findall(r"\w+|[^\w\s]", s))
    chars = sorted({c for s in movie_sentences + ACCENTED for c in s if not c.isspace()})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Café", "Déjà"]
    tokens += [w for w, n in sorted(words.items()) if n >= 3 and w not in tokens]
    tokens += [c for c in chars if c not in tokens]
    tokens += ["##" + c for c in chars] + ["##ing", "##ed", "##ly", "##er"]
    return _write_vocab(tmp_path_factory.mktemp("cased") / "vocab.txt", tokens)


def test_cased_ids_match_transformers(cased_vocab, movie_sentences):
    ours = WordPieceTokenizer.from_vocab(cased_vocab, lowercase=False)
    theirs = _hf(cased_vocab, do_lower_case=False)
    texts = movie_sentences + ACCENTED + MIXED_CJK
    assert ours.encode_batch(texts) == theirs(texts, add_special_tokens=False)["input_ids"]
    # Neither lower-cased nor stripped: the accented words are whole tokens, "Zyx" is not.
    assert ours.tokenize("Café Déjà Zyx") == ["Café", "Déjà", "Z", "##y", "##x"]
    assert ours.tokenize("The") != ours.tokenize("the")
    assert load_tokenizer(cased_vocab).lowercase is False  # inferred from upper-case tokens


@pytest.fixture(scope="module")
def cjk_vocab(tmp_path_factory):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "我", "爱", "北", "京", "天", "安",
              "门", "東", "タ", "##ワ", "##ー", "##爱", "##北", "##京", "i", "love", "and",
              "cafe", "text", "english", "!", ",", "."]
    return _write_vocab(tmp_path_factory.mktemp("cjk") / "vocab.txt", tokens)


@pytest.mark.parametrize("split_cjk", [True, False])
def test_cjk_ids_match_transformers(cjk_vocab, split_cjk):
    ours = WordPieceTokenizer.from_vocab(cjk_vocab, tokenize_chinese_chars=split_cjk)
    theirs = _hf(cjk_vocab, tokenize_chinese_chars=split_cjk)
    texts = MIXED_CJK + ACCENTED + ["我爱北京", "東京タワー"]
    assert ours.encode_batch(texts) == theirs(texts, add_special_tokens=False)["input_ids"]
    expected = ["我", "爱", "北", "京"] if split_cjk else ["我", "##爱", "##北", "##京"]
    assert ours.tokenize("我爱北京") == expected
    # Katakana are not CJK ideographs: never split per character, so "タワー" stays a word
    # (and without the split the whole run is one word with no "##タ" piece: unknown).
    expected = ["東", "京", "タ", "##ワ", "##ー"] if split_cjk else ["[UNK]"]
    assert ours.tokenize("東京タワー") == expected


# ------------------------------------------------------------------ offsets, decode, masks


def test_offsets_point_at_the_pieces(uncased, hf_uncased, movie_sentences):
    texts = movie_sentences[:1000] + ACCENTED
    for text in texts:
        ids, offsets = uncased.encode_with_offsets(text)
        assert ids == uncased.encode(text)
        for i, (start, end) in zip(ids, offsets):
            if i == uncased.unk_id:
                continue
            piece = uncased.id_to_token(i).removeprefix("##")
            assert _strip_accents(text[start:end].lower()) == piece, (text, start, end)
    theirs = hf_uncased(texts[:200], add_special_tokens=False, return_offsets_mapping=True)
    ours = [uncased.encode_with_offsets(t)[1] for t in texts[:200]]
    assert ours == [[tuple(o) for o in row] for row in theirs["offset_mapping"]]


def test_decode_matches_transformers(uncased, hf_uncased, movie_sentences):
    for text in movie_sentences[:300] + ACCENTED:
        ids = [uncased.cls_id] + uncased.encode(text) + [uncased.sep_id]
        assert uncased.decode(ids) == hf_uncased.decode(ids)
        assert (uncased.decode(ids, skip_special_tokens=True)
                == hf_uncased.decode(ids, skip_special_tokens=True))
    assert uncased.decode(uncased.encode("Hello, World! Déjà vu.")) == "hello, world! deja vu."


def test_word_start_mask_wordpiece(uncased):
    ids = uncased.encode("unaffable thing")  # una ##ffa ##ble thing
    assert uncased.tokenize("unaffable thing") == ["una", "##ffa", "##ble", "thing"]
    np.testing.assert_array_equal(uncased.word_start_mask(ids), [True, False, False, True])
    with_specials = [uncased.cls_id] + ids + [uncased.sep_id, uncased.pad_id]
    np.testing.assert_array_equal(uncased.word_start_mask(with_specials),
                                  [True, True, False, False, True, True, True])
    assert uncased.word_start_mask([]).shape == (0,)
    with pytest.raises(ValueError, match="30522"):
        uncased.word_start_mask([5, 30522])


def test_vocab_lookups(uncased):
    assert uncased.vocab_size == 30522
    assert (uncased.pad_id, uncased.unk_id, uncased.cls_id, uncased.sep_id,
            uncased.mask_id) == (0, 100, 101, 102, 103)
    assert uncased.token_to_id("[CLS]") == 101 and uncased.id_to_token(2023) == "this"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        uncased.token_to_id("definitely-not-a-token")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        uncased.id_to_token(30522)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        uncased.decode([7592, -1])


# ------------------------------------------------------------------ trimming and packing


def _round_robin_reference(lengths, budget):
    """The tf_text RoundRobinTrimmer docstring, literally: one token per segment in turn."""
    used = [0] * len(lengths)
    while budget > 0 and any(u < n for u, n in zip(used, lengths)):
        for k, n in enumerate(lengths):
            if budget > 0 and used[k] < n:
                used[k] += 1
                budget -= 1
    return used


def test_round_robin_trim_hand_cases():
    seg = lambda n, base: list(range(base, base + n))  # noqa: E731
    # tf_text docs: sizes [3, 4, 2] with budget 5 keep [2, 2, 1].
    assert round_robin_trim([seg(3, 10), seg(4, 20), seg(2, 30)], 5) == [
        [10, 11], [20, 21], [30]]
    assert round_robin_trim([seg(10, 10), [99]], 6) == [[10, 11, 12, 13, 14], [99]]
    assert round_robin_trim([[], seg(5, 20), seg(5, 30)], 3) == [[], [20, 21], [30]]
    assert round_robin_trim([seg(3, 10), seg(3, 20), seg(3, 30)], 1) == [[10], [], []]
    assert round_robin_trim([seg(3, 10), seg(3, 20)], 0) == [[], []]
    assert round_robin_trim([seg(2, 10), seg(1, 20)], 100) == [[10, 11], [20]]
    with pytest.raises(ValueError, match="budget"):
        round_robin_trim([[1]], -1)


def test_round_robin_trim_matches_literal_definition():
    rng = random.Random(0)
    for _ in range(2000):
        lengths = [rng.randrange(0, 12) for _ in range(rng.randrange(1, 5))]
        budget = rng.randrange(0, 30)
        kept = round_robin_trim([list(range(n)) for n in lengths], budget)
        assert [len(k) for k in kept] == _round_robin_reference(lengths, budget), (lengths,
                                                                                  budget)


def _check_pack(segments, seq_length, ids, types, pad_id=0):
    out = pack_inputs(segments, seq_length, CLS, SEP, pad_id)
    assert set(out) == {"input_word_ids", "input_mask", "input_type_ids"}
    assert all(v.dtype == np.int32 and v.shape == (1, seq_length) for v in out.values())
    np.testing.assert_array_equal(out["input_word_ids"][0], ids)
    np.testing.assert_array_equal(out["input_type_ids"][0], types)
    np.testing.assert_array_equal(out["input_mask"][0], [int(i != pad_id) for i in ids])


def test_pack_single_segment_shorter_and_longer():
    _check_pack([[[5, 6]]], 6, [CLS, 5, 6, SEP, 0, 0], [0, 0, 0, 0, 0, 0])
    _check_pack([[[5, 6, 7, 8, 9]]], 5, [CLS, 5, 6, 7, SEP], [0, 0, 0, 0, 0])


def test_pack_pairs():
    # One short: the long one takes what the short one leaves (budget 7-3 = 4 -> 1 + 3).
    _check_pack([[[5]], [[6, 7, 8, 9, 10]]], 7, [CLS, 5, SEP, 6, 7, 8, SEP],
                [0, 0, 0, 1, 1, 1, 1])
    # Both long, odd budget 8-3 = 5: the first segment gets the extra token (3 + 2).
    _check_pack([[[11, 12, 13, 14, 15, 16]], [[21, 22, 23, 24, 25, 26]]], 8,
                [CLS, 11, 12, 13, SEP, 21, 22, SEP], [0, 0, 0, 0, 0, 1, 1, 1])
    # Both long, even budget 9-3 = 6: 3 + 3.
    _check_pack([[[11, 12, 13, 14, 15, 16]], [[21, 22, 23, 24, 25, 26]]], 9,
                [CLS, 11, 12, 13, SEP, 21, 22, 23, SEP], [0, 0, 0, 0, 0, 1, 1, 1, 1])


def test_pack_three_segments_and_empty_segment():
    _check_pack([[[11, 12, 13]], [[21, 22, 23, 24]], [[31, 32]]], 9,
                [CLS, 11, 12, SEP, 21, 22, SEP, 31, SEP], [0, 0, 0, 0, 1, 1, 1, 2, 2])
    # An empty segment still gets its [SEP] (tf_text combine_segments).
    _check_pack([[[]], [[21, 22]]], 6, [CLS, SEP, 21, 22, SEP, 0], [0, 0, 1, 1, 1, 0])
    # Budget 1 < 3 segments: only the first keeps a token; every [SEP] stays.
    _check_pack([[[11, 12]], [[21]], [[31]]], 5, [CLS, 11, SEP, SEP, SEP], [0, 0, 0, 1, 2])
    # Budget 0.
    _check_pack([[[11]], [[21]]], 3, [CLS, SEP, SEP], [0, 0, 1])


def test_pack_batch_rows_are_independent_and_pad_id_is_used():
    out = pack_inputs([[[5], [5, 6, 7, 8]], [[9], []]], 6, CLS, SEP, pad_id=7)
    np.testing.assert_array_equal(out["input_word_ids"],
                                  [[CLS, 5, SEP, 9, SEP, 7], [CLS, 5, 6, 7, SEP, SEP]])
    np.testing.assert_array_equal(out["input_mask"], [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(out["input_type_ids"],
                                  [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]])


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="seq_length=2"):
        pack_inputs([[[1]], [[2]]], 2, CLS, SEP)
    with pytest.raises(ValueError, match="segment 1 has 1"):
        pack_inputs([[[1], [2]], [[3]]], 8, CLS, SEP)
    with pytest.raises(ValueError, match="at least one segment"):
        pack_inputs([], 8, CLS, SEP)


def test_preprocessor_matches_transformers_when_nothing_is_trimmed(
        uncased, hf_uncased, movie_sentences):
    pre = Preprocessor(uncased, seq_length=128)
    a, b = movie_sentences[0:400:2], movie_sentences[1:400:2]
    for ours, theirs in [
        (pre(a), hf_uncased(a, padding="max_length", max_length=128, return_tensors="np")),
        (pre(a, b), hf_uncased(a, b, padding="max_length", max_length=128,
                               return_tensors="np")),
    ]:
        assert ours["input_mask"].sum(1).max() < 128  # the check needs untrimmed rows
        np.testing.assert_array_equal(ours["input_word_ids"], theirs["input_ids"])
        np.testing.assert_array_equal(ours["input_mask"], theirs["attention_mask"])
        np.testing.assert_array_equal(ours["input_type_ids"], theirs["token_type_ids"])


def test_preprocessor_trims_round_robin(uncased, movie_sentences):
    long_a, long_b = " ".join(movie_sentences[:10]), " ".join(movie_sentences[10:20])
    out = Preprocessor(uncased, seq_length=32)([long_a, "short"], [long_b, long_b])
    types, ids = out["input_type_ids"], out["input_word_ids"]
    assert out["input_mask"].sum() == 64 and ids.dtype == np.int32
    # Row 0, both long: 29 tokens split 15 / 14 (the first segment takes the odd one).
    assert (types[0] == 0).sum() == 1 + 15 + 1 and (types[0] == 1).sum() == 14 + 1
    np.testing.assert_array_equal(ids[0, 1:16], uncased.encode(long_a)[:15])
    # Row 1: "short" is one token, the pair takes the remaining 28.
    np.testing.assert_array_equal(ids[1, :3], [101, uncased.encode("short")[0], 102])
    np.testing.assert_array_equal(ids[1, 3:31], uncased.encode(long_b)[:28])
    assert ids[0, -1] == ids[1, -1] == 102
    assert Preprocessor(uncased, 16)("one text")["input_word_ids"].shape == (1, 16)
    assert Preprocessor(uncased, 16)(["a"], seq_length=8)["input_word_ids"].shape == (1, 8)
    with pytest.raises(ValueError, match="2 texts_a but 1 texts_b"):
        Preprocessor(uncased)(["a", "b"], ["c"])


# ------------------------------------------------------------------ SentencePiece


def _spm_normalized(text):
    # sentencepiece's default nmt_nfkc rule: NFKC, whitespace runs collapsed to one space,
    # no leading/trailing space. Decoding gives the text back in that form.
    return " ".join(unicodedata.normalize("NFKC", text).split())


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory, movie_sentences):
    out = tmp_path_factory.mktemp("spm")
    train_sentencepiece(movie_sentences[:3000], 2000, out)
    return out


@pytest.fixture(scope="module")
def sp(spm_dir):
    return SentencePieceTokenizer.from_model(spm_dir / "spiece.model")


def test_sentencepiece_round_trip_is_lossless(sp, movie_sentences):
    # All 10,605 sentences, 7,605 of them unseen in training: byte fallback means no [UNK].
    ids = sp.encode_batch(movie_sentences)
    assert all(sp.unk_id not in row for row in ids)
    decoded = [sp.decode(row) for row in ids]
    assert decoded == [_spm_normalized(s) for s in movie_sentences]
    assert sp.decode(sp.encode("Café  Déjà vu ½")) == "Café Déjà vu 1⁄2"
    assert ids[:50] == [sp.encode(s) for s in movie_sentences[:50]]


def test_sentencepiece_specials_and_layout(sp, spm_dir):
    assert (sp.pad_id, sp.unk_id, sp.cls_id, sp.sep_id, sp.mask_id) == (0, 1, 2, 3, 4)
    assert [sp.id_to_token(i) for i in range(5)] == ["<pad>", "<unk>", "[CLS]", "[SEP]",
                                                    "[MASK]"]
    assert sp.vocab_size == 2000 and sp.special_ids >= {0, 1, 2, 3, 4}
    ids = sp.encode("the [MASK] is good")
    assert sp.mask_id in ids  # a user symbol: recognised in raw text
    with_specials = [sp.cls_id] + ids + [sp.sep_id]
    assert "[CLS]" in sp.decode(with_specials) and "[MASK]" in sp.decode(with_specials)
    assert sp.decode(with_specials, skip_special_tokens=True).split() == ["the", "is", "good"]
    config = json.loads((spm_dir / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is False and config["mask_token"] == "[MASK]"


def test_sentencepiece_word_start_mask_and_offsets(sp, movie_sentences):
    for text in movie_sentences[:300]:
        ids, offsets = sp.encode_with_offsets(text)
        assert ids == sp.encode(text)
        pieces = [sp.id_to_token(i) for i in ids]
        np.testing.assert_array_equal(sp.word_start_mask(ids),
                                      [p.startswith("▁") for p in pieces])
        for piece, (start, end) in zip(pieces, offsets):
            if not piece.startswith("<0x"):  # byte pieces share one character's span
                assert unicodedata.normalize("NFKC", text[start:end]) == piece.lstrip("▁")
    assert sp.word_start_mask([sp.cls_id, sp.pad_id]).tolist() == [True, True]


def test_train_sentencepiece_is_deterministic_and_bpe_works(tmp_path, movie_sentences):
    texts = movie_sentences[3000:3600]
    train_sentencepiece(texts, 700, tmp_path / "a")
    train_sentencepiece(texts, 700, tmp_path / "b")
    assert (tmp_path / "a/spiece.model").read_bytes() == (tmp_path / "b/spiece.model").read_bytes()
    bpe = train_sentencepiece(texts, 700, tmp_path / "bpe", model_type="bpe")
    assert bpe.decode(bpe.encode(texts[0])) == _spm_normalized(texts[0])
    lower = train_sentencepiece(texts, 700, tmp_path / "lower", lowercase=True)
    assert lower.encode("THE FILM") == lower.encode("the film")
    again = load_tokenizer(tmp_path / "lower")  # lowercase comes from tokenizer_config.json
    assert isinstance(again, SentencePieceTokenizer) and again.lowercase is True
    assert again.encode_batch(texts[:20]) == lower.encode_batch(texts[:20])
    with pytest.raises(ValueError, match="model_type"):
        train_sentencepiece(texts, 700, tmp_path / "c", model_type="char")
    with pytest.raises(ValueError, match="vocab_size=50"):
        train_sentencepiece(texts, 50, tmp_path / "d")


def test_sentencepiece_model_without_specials_is_rejected(tmp_path, movie_sentences):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(movie_sentences[:500]),
                                   model_writer=model, vocab_size=300, minloglevel=2)
    (tmp_path / "plain.model").write_bytes(model.getvalue())
    with pytest.raises(ValueError, match=r"\[CLS\].*\[MASK\]"):
        SentencePieceTokenizer.from_model(tmp_path / "plain.model")
    (tmp_path / "broken.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a valid SentencePiece model"):
        SentencePieceTokenizer.from_model(tmp_path / "broken.model")


# ------------------------------------------------------------------ WordPiece training


def test_train_wordpiece(tmp_path, movie_sentences):
    tok = train_wordpiece(movie_sentences[:3000], 2000, tmp_path)
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.vocab_size == 2000 == len(lines) - 1
    assert any(t.startswith("##") for t in lines)
    held_out = movie_sentences[5000:6000]
    ids = tok.encode_batch(held_out)
    n_pieces = sum(map(len, ids))
    assert sum(row.count(tok.unk_id) for row in ids) / n_pieces < 0.01
    # Its vocab.txt is a real BERT vocabulary: transformers tokenizes it identically.
    assert ids == _hf(tmp_path / "vocab.txt")(held_out, add_special_tokens=False)["input_ids"]
    assert load_tokenizer(tmp_path).encode_batch(held_out[:50]) == ids[:50]
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece(movie_sentences[:10], 5, tmp_path / "tiny")


# ------------------------------------------------------------------ loading and saving


def test_load_tokenizer_from_dirs_and_files(minilm_dir, tmp_path, uncased):
    text = ["Café Déjà vu, 北京!"]
    expected = uncased.encode_batch(text)
    for source in [minilm_dir / "vocab.txt", minilm_dir / "tokenizer.json"]:
        tok = load_tokenizer(source)
        assert isinstance(tok, WordPieceTokenizer) and tok.encode_batch(text) == expected
    only_json = tmp_path / "only_json"
    only_json.mkdir()
    shutil.copy(minilm_dir / "tokenizer.json", only_json)
    assert load_tokenizer(only_json).encode_batch(text) == expected
    # A bare all-lower-case vocab infers uncased; lowercase=False overrides it.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(minilm_dir / "vocab.txt", bare)
    assert load_tokenizer(bare).lowercase is True
    cased = load_tokenizer(bare / "vocab.txt", lowercase=False)
    assert cased.lowercase is False and cased.tokenize("Hello") != ["hello"]


def test_save_round_trip(uncased, cased_vocab, tmp_path, movie_sentences):
    texts = movie_sentences[:200] + ACCENTED
    uncased.save(tmp_path / "u")
    again = load_tokenizer(tmp_path / "u")
    assert again.encode_batch(texts) == uncased.encode_batch(texts)
    cased = WordPieceTokenizer.from_vocab(cased_vocab, lowercase=False)
    cased.save(tmp_path / "c")
    config = json.loads((tmp_path / "c/tokenizer_config.json").read_text())
    assert config["do_lower_case"] is False
    assert load_tokenizer(tmp_path / "c").encode_batch(texts) == cased.encode_batch(texts)
    # transformers reads the saved folder as the same cased tokenizer.
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "c")
    assert hf(texts, add_special_tokens=False)["input_ids"] == cased.encode_batch(texts)


def test_load_errors(tmp_path, minilm_dir):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="vocab.txt.*spiece.model.*tokenizer.json"):
        load_tokenizer(empty)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        WordPieceTokenizer.from_vocab(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="missing.model"):
        SentencePieceTokenizer.from_model(tmp_path / "missing.model")
    no_mask = _write_vocab(tmp_path / "no_mask.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(ValueError, match=r"no_mask.txt.*\['\[MASK\]'\]"):
        load_tokenizer(no_mask)
    dup = _write_vocab(tmp_path / "dup.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                              "a", "a"])
    with pytest.raises(ValueError, match="'a' appears twice"):
        load_tokenizer(dup)
    data = json.loads((minilm_dir / "tokenizer.json").read_text())
    data["model"] = {"type": "BPE", "vocab": {}, "merges": []}
    (tmp_path / "bpe.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="'BPE'"):
        load_tokenizer(tmp_path / "bpe.json")

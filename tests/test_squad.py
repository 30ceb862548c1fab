"""distill.data.squad: SQuAD JSON → windowed features → answers → official EM / F1.

Expected metric values are computed by hand in the comments, following the official
evaluate-v1.1.py / evaluate-v2.0.py (Rajpurkar et al.). Windowing and decoding follow
google-research/bert run_squad.py (doc_stride = step between window starts,
_check_is_max_context, write_predictions). The tokenizer is the real bert-base-uncased vocab.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from distill.data import squad
from distill.data.squad import (
    Answer,
    SquadExample,
    decode,
    evaluate,
    exact_match,
    f1_score,
    featurize,
    normalize_answer,
    read_squad,
)
from flaxbert.tokenization import WordPieceTokenizer

MAX_SEQ, STRIDE, MAX_Q = 64, 20, 16


@pytest.fixture(scope="module")
def tok(minilm_dir):
    return WordPieceTokenizer.from_vocab(minilm_dir / "vocab.txt", lowercase=True)


# --------------------------------------------------------------------------------------------
# Official metrics


@pytest.mark.parametrize("raw, expected", [
    ("The  Quick, brown fox!", "quick brown fox"),     # case, punctuation, article, spaces
    ("an apple a day", "apple day"),                   # all three articles go
    ("theater Anthem", "theater anthem"),              # only whole-word articles
    ("A.B.C.", "abc"),                                 # punctuation goes BEFORE articles
    ("  tabs\tand\nnewlines  ", "tabs and newlines"),
    ("The", ""),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Eiffel Tower.", "Eiffel   tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # pred "the big red dog" -> [big, red, dog] (3); gold "a red dog barked loudly" ->
    # [red, dog, barked, loudly] (4); common 2: P = 2/3, R = 2/4,
    # F1 = 2·(2/3·2/4)/(2/3+2/4) = (2/3)/(7/6) = 4/7.
    assert f1_score("the big red dog", "a red dog barked loudly") == pytest.approx(4 / 7)
    # Bag counts: pred [dog, dog, dog], gold [dog]: common = min(3, 1) = 1, P = 1/3, R = 1,
    # F1 = 2·(1/3)/(4/3) = 1/2.
    assert f1_score("dog dog dog", "dog") == pytest.approx(0.5)
    assert f1_score("cat", "dog") == 0.0
    # Both normalize to nothing: v1.1 scores 0 (num_same == 0), v2.0 scores 1 (agreeing no-ans).
    assert f1_score("", "The") == 0.0
    assert f1_score("", "The", version_2=True) == 1.0
    assert f1_score("", "dog", version_2=True) == 0.0


def _ex(qid, answers, impossible=False, context="ctx"):
    return SquadExample(qid, "q?", context, tuple(Answer(t, 0) for t in answers), impossible)


def test_evaluate_v11_max_over_gold_and_missing():
    examples = [
        _ex("q1", ["Denver Broncos", "The Denver Broncos", "Broncos"]),
        _ex("q2", ["Santa Clara, California", "Levi's Stadium"]),
        _ex("q3", ["1990"]),
    ]
    preds = {"q1": "broncos", "q2": "Levi's Stadium in Santa Clara", "extra": "ignored"}
    out = evaluate(examples, preds)
    # q1: EM 1 against "Broncos", F1 1.
    # q2: pred -> [levis, stadium, in, santa, clara] (5).
    #   vs [santa, clara, california]: common 2, P 2/5, R 2/3, F1 = (8/15)/(16/15) = 1/2;
    #   vs [levis, stadium]: common 2, P 2/5, R 1, F1 = (4/5)/(7/5) = 4/7  -> max 4/7, EM 0.
    # q3: missing -> 0, still counted (v1.1). EM = 100·1/3, F1 = 100·(1 + 4/7)/3 = 100·11/21.
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * 11 / 21)
    assert out["total"] == 3 and out["missing"] == 1
    assert "HasAns_f1" not in out


def test_evaluate_v20_no_answer_both_ways_and_breakdown():
    examples = [
        _ex("a", ["Paris"]),
        _ex("b", ["in 1990"]),
        _ex("c", [], impossible=True),
        _ex("d", [], impossible=True),
    ]
    preds = {"a": "Paris", "b": "1990", "c": "", "d": "London"}
    out = evaluate(examples, preds)  # v2.0 inferred from the impossible questions
    # a: 1/1. b: EM 0; [1990] vs [in, 1990]: P 1, R 1/2, F1 2/3.
    # c: gold [""], pred "" -> EM 1, F1 1 (no-answer predicted for a no-answer question).
    # d: gold [""], pred "London" -> 0/0 (an answer predicted for a no-answer question).
    assert out["exact_match"] == pytest.approx(100 * 2 / 4)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert out["HasAns_exact_match"] == pytest.approx(50.0)
    assert out["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert out["NoAns_exact_match"] == pytest.approx(50.0)
    assert out["NoAns_f1"] == pytest.approx(50.0)
    assert out["HasAns_total"] == 2 and out["NoAns_total"] == 2
    # An answerable question answered with "" scores 0 in v2.0.
    assert evaluate(examples, {**preds, "a": ""})["HasAns_exact_match"] == 0.0


def test_evaluate_v11_vs_v20_on_gold_that_normalizes_to_nothing():
    examples = [_ex("q", ["The"])]
    # v1.1 compares against "the" itself: EM("a","The") = 1 ("" == ""), F1 = 0 (no tokens).
    v1 = evaluate(examples, {"q": "a"})
    assert (v1["exact_match"], v1["f1"]) == (100.0, 0.0)
    # v2.0 drops that gold, leaving [""]: EM 1 and F1 1.
    v2 = evaluate(examples, {"q": "a"}, version_2=True)
    assert (v2["exact_match"], v2["f1"]) == (100.0, 100.0)


def test_evaluate_v11_rejects_question_without_gold():
    with pytest.raises(ValueError, match="'q'.*no gold answers"):
        evaluate([_ex("q", [])], {"q": ""}, version_2=False)


# --------------------------------------------------------------------------------------------
# The hand-written SQuAD file

SHORT_CONTEXT = ("The Normans were the people who in the 10th and 11th centuries gave their "
                 "name to Normandy, a region in France.")
TOWNS = ["Ashford", "Brigham", "Calloway", "Dunmore", "Elmsworth", "Fairhaven", "Glenrock",
         "Hartwell", "Ironbridge", "Jasperton", "Kingsley", "Lockhaven"]
LONG_CONTEXT = " ".join(
    f"In {1801 + 7 * i}, the town of {name} built a {thing} beside the river."
    for i, (name, thing) in enumerate(zip(TOWNS, ["mill", "bridge", "school", "chapel",
                                                   "library", "harbour", "market", "tower",
                                                   "foundry", "granary", "theatre", "museum"])))
BOUNDARY_QUESTION = "What stood where the first window ends?"


def _span(context, text):
    start = context.index(text)
    return {"text": text, "answer_start": start}


def _boundary_answer(tok):
    """An answer whose word pieces straddle the end of the first window of BOUNDARY_QUESTION."""
    n_q = len(tok.encode(BOUNDARY_QUESTION)[:MAX_Q])
    doc_len = MAX_SEQ - n_q - 3                    # context pieces in window 0
    _, offs = tok.encode_with_offsets(LONG_CONTEXT)
    # Whole words: from the word holding piece doc_len - 2 to the one holding piece doc_len + 1.
    start = LONG_CONTEXT.rfind(" ", 0, offs[doc_len - 2][0]) + 1
    end = LONG_CONTEXT.find(" ", offs[doc_len + 1][1])
    assert offs[doc_len - 1][1] <= end and start < offs[doc_len - 1][0]   # it does straddle
    return {"text": LONG_CONTEXT[start:end], "answer_start": start}


def _squad_json(tok):
    return {"version": "v2.0", "data": [
        {"title": "Normans", "paragraphs": [{"context": SHORT_CONTEXT, "qas": [
            {"id": "n1", "question": "In what country is Normandy located?",
             "answers": [_span(SHORT_CONTEXT, "France"), _span(SHORT_CONTEXT, "in France")],
             "is_impossible": False},
            {"id": "n2", "question": "Who gave their name to Normandy in the 1000's?",
             "answers": [], "is_impossible": True,
             "plausible_answers": [_span(SHORT_CONTEXT, "The Normans")]},
        ]}]},
        {"title": "Towns", "paragraphs": [{"context": LONG_CONTEXT, "qas": [
            {"id": "t_first", "question": "What did Ashford build?",
             "answers": [_span(LONG_CONTEXT, "a mill")]},
            {"id": "t_last", "question": "Which town built a museum?",
             "answers": [_span(LONG_CONTEXT, "Lockhaven")]},
            {"id": "t_mid", "question": "When did Hartwell build a tower?",
             "answers": [_span(LONG_CONTEXT, "1850")]},
            {"id": "t_cross", "question": BOUNDARY_QUESTION, "answers": [_boundary_answer(tok)]},
            {"id": "t_none", "question": "Which town built an airport?", "answers": [],
             "is_impossible": True},
        ]}]},
    ]}


@pytest.fixture(scope="module")
def squad_file(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("squad") / "dev-v2.0.json"
    path.write_text(json.dumps(_squad_json(tok)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def examples(squad_file):
    return read_squad(squad_file)


@pytest.fixture(scope="module")
def train_feats(examples, tok):
    return featurize(examples, tok, MAX_SEQ, STRIDE, MAX_Q, is_training=True)


def test_read_squad_fields(examples):
    assert [e.qid for e in examples] == ["n1", "n2", "t_first", "t_last", "t_mid", "t_cross",
                                         "t_none"]
    n1, n2 = examples[0], examples[1]
    assert n1.title == "Normans" and n1.context == SHORT_CONTEXT
    assert [a.text for a in n1.answers] == ["France", "in France"]
    assert all(n1.context[a.start:a.end] == a.text for a in n1.answers)
    assert n2.is_impossible and n2.answers == ()
    assert [a.text for a in n2.plausible_answers] == ["The Normans"]
    assert not examples[2].is_impossible  # no is_impossible field = v1.1 = possible


def test_featurize_layout(examples, train_feats, tok):
    a = train_feats.arrays
    n = len(train_feats)
    assert a["input_word_ids"].shape == (n, MAX_SEQ) and a["input_word_ids"].dtype == np.int32
    assert set(a) == {"input_word_ids", "input_mask", "input_type_ids", "example_weight",
                      "start_positions", "end_positions"}
    # The long context splits into >= 3 windows for every question on it.
    per_example = np.bincount(train_feats.example_index, minlength=len(examples))
    assert per_example[0] == per_example[1] == 1
    assert (per_example[2:] >= 3).all()
    for f in range(n):
        ex = examples[train_feats.example_index[f]]
        q = tok.encode(ex.question)[:MAX_Q]
        ids, mask, types = (a[k][f] for k in ("input_word_ids", "input_mask", "input_type_ids"))
        real = int(mask.sum())
        assert mask[:real].all() and not mask[real:].any()
        assert ids[0] == tok.cls_id and list(ids[1:1 + len(q)]) == q
        assert ids[1 + len(q)] == tok.sep_id and ids[real - 1] == tok.sep_id
        assert (ids[real:] == tok.pad_id).all()
        assert not types[:len(q) + 2].any() and types[len(q) + 2:real].all()
        assert not types[real:].any()
        # Offsets exist exactly on the context pieces and point at the pieces' own text.
        offs = train_feats.token_offsets[f]
        ctx = np.arange(len(q) + 2, real - 1)
        assert (offs[ctx] >= 0).all() and (np.delete(offs, ctx, axis=0) == -1).all()
        for p in ctx:
            piece = tok.id_to_token(int(ids[p])).removeprefix("##")
            assert ex.context[offs[p, 0]:offs[p, 1]].lower() == piece


def test_featurize_windows_stride_and_max_context(examples, train_feats, tok):
    _, doc_offs = tok.encode_with_offsets(LONG_CONTEXT)
    for e_i in range(2, len(examples)):
        rows = np.flatnonzero(train_feats.example_index == e_i)
        starts = []
        coverage = np.zeros(len(doc_offs), int)
        for f in rows:
            ctx = np.flatnonzero(train_feats.token_offsets[f, :, 0] >= 0)
            first = doc_offs.index(tuple(train_feats.token_offsets[f, ctx[0]]))
            starts.append(first)
            coverage[first:first + len(ctx)] += train_feats.token_is_max_context[f, ctx]
        # BERT: window starts are doc_stride pieces apart; the last reaches the context's end.
        assert starts == [STRIDE * k for k in range(len(rows))]
        assert train_feats.token_offsets[rows[-1]].max() == doc_offs[-1][1]
        # Every context piece is the max-context piece of exactly one window.
        assert (coverage == 1).all()


def test_featurize_positions_decode_to_answer_text(examples, train_feats):
    a = train_feats.arrays
    for e_i, ex in enumerate(examples):
        rows = np.flatnonzero(train_feats.example_index == e_i)
        labelled = [f for f in rows if a["start_positions"][f] > 0]
        if ex.is_impossible:
            assert not labelled and not a["end_positions"][rows].any()
            continue
        assert labelled, ex.qid
        for f in labelled:
            s, e = a["start_positions"][f], a["end_positions"][f]
            offs = train_feats.token_offsets[f]
            assert e >= s and offs[s, 0] >= 0 and offs[e, 0] >= 0
            assert ex.context[offs[s, 0]:offs[e, 1]] == ex.answers[0].text, ex.qid
        for f in set(rows) - set(labelled):
            assert a["end_positions"][f] == 0


def test_featurize_answer_across_window_boundary(examples, train_feats):
    e_i = [e.qid for e in examples].index("t_cross")
    rows = np.flatnonzero(train_feats.example_index == e_i)
    starts = train_feats.arrays["start_positions"][rows]
    # Window 0 holds only the first half of the answer -> labelled [CLS]; window 1 has it all.
    assert starts[0] == 0 and starts[1] > 0
    text = examples[e_i].answers[0].text
    assert len(text.split()) >= 2


def test_featurize_eval_mode_has_no_labels(examples, tok):
    feats = featurize(examples, tok, MAX_SEQ, STRIDE, MAX_Q, is_training=False)
    assert "start_positions" not in feats.arrays
    assert len(feats) == len(featurize(examples, tok, MAX_SEQ, STRIDE, MAX_Q,
                                       is_training=True))


def test_featurize_truncates_long_question(tok):
    ex = SquadExample("q", "why " * 40, "Because it is.", (Answer("it", 8),))
    feats = featurize([ex], tok, 32, 8, max_query_length=5, is_training=True)
    types = feats.arrays["input_type_ids"][0]
    assert int(np.argmax(types)) == 5 + 2          # [CLS] + 5 question pieces + [SEP]
    s = feats.arrays["start_positions"][0]
    assert ex.context[slice(*feats.token_offsets[0, s])] == "it"


def test_featurize_errors_and_skips(tok):
    ex = SquadExample("q", "q?", "a b", (Answer("a", 0),))
    with pytest.raises(ValueError, match="max_seq_length 10.*max_query_length \\+ 4"):
        featurize([ex], tok, 10, 4, 8, is_training=False)
    with pytest.raises(ValueError, match="no examples"):
        featurize([], tok, is_training=False)
    # An answer made of whitespace covers no word piece: skipped with a warning in training.
    blank = SquadExample("blank", "q?", "a b", (Answer(" ", 1),))
    with pytest.warns(UserWarning, match="blank"):
        feats = featurize([ex, blank], tok, 16, 4, 4, is_training=True)
    assert feats.skipped == ("blank",) and list(feats.example_index) == [0]


# --------------------------------------------------------------------------------------------
# Decoding


def _one_hot_logits(feats, positions, low=-10.0, high=10.0):
    out = np.full(feats.token_offsets.shape[:2], low, np.float32)
    for f, p in enumerate(positions):
        if p > 0:
            out[f, p] = high
    return out


def test_decode_round_trip_from_labels(examples, train_feats):
    a = train_feats.arrays
    start = _one_hot_logits(train_feats, a["start_positions"])
    end = _one_hot_logits(train_feats, a["end_positions"])
    # v2.0: make [CLS] the best choice in the impossible questions' windows.
    for f, e_i in enumerate(train_feats.example_index):
        if examples[e_i].is_impossible:
            start[f, 0] = end[f, 0] = 10.0
    preds = decode(examples, train_feats, start, end, version_2=True)
    for ex in examples:
        assert preds[ex.qid] == ("" if ex.is_impossible else ex.answers[0].text), ex.qid
    assert evaluate(examples, preds)["exact_match"] == 100.0
    # Bucket-trimmed logits (T < L) decode the same.
    real = int(a["input_mask"].sum(1).max())
    assert dict(decode(examples, train_feats, start[:, :real], end[:, :real],
                       version_2=True)) == dict(preds)


def _one_window(tok, context="Alpha beta gamma delta epsilon zeta eta theta iota kappa."):
    ex = SquadExample("w", "Which?", context, (Answer("Alpha", 0),))
    feats = featurize([ex], tok, 32, 8, 8, is_training=False)
    assert len(feats) == 1
    ctx = np.flatnonzero(feats.token_offsets[0, :, 0] >= 0)
    return ex, feats, ctx


def _text(ex, feats, s, e):
    return ex.context[feats.token_offsets[0, s, 0]:feats.token_offsets[0, e, 1]]


def test_decode_synthetic_span_and_max_answer_length(tok):
    ex, feats, ctx = _one_window(tok)
    s = ctx[1]
    start = np.zeros((1, 32), np.float32)
    end = np.zeros((1, 32), np.float32)
    start[0, s] = 9.0
    end[0, s + 5] = 8.0        # best end: a 6-piece span
    end[0, s + 2] = 6.0        # next best: a 3-piece span
    long_text, short_text = _text(ex, feats, s, s + 5), _text(ex, feats, s, s + 2)
    assert long_text == "beta gamma delta epsilon zeta eta"
    assert decode([ex], feats, start, end)["w"] == long_text
    # A span longer than max_answer_length pieces is rejected; the next best wins.
    assert decode([ex], feats, start, end, max_answer_length=5)["w"] == short_text
    assert decode([ex], feats, start, end, max_answer_length=6)["w"] == long_text
    # end < start is never a span: the best end sits before the only good start.
    start2 = np.zeros_like(start)
    start2[0, s + 3] = 9.0
    end2 = np.zeros_like(end)
    end2[0, s + 1] = 9.0
    end2[0, s + 4] = 1.0
    assert decode([ex], feats, start2, end2)["w"] == _text(ex, feats, s + 3, s + 4)
    # Spans must lie in the context: a huge [CLS]/question logit is ignored in v1.1.
    start[0, :ctx[0]] = 100.0
    end[0, :ctx[0]] = 100.0
    assert decode([ex], feats, start, end)["w"] == long_text


def test_decode_nbest_list(tok):
    ex, feats, ctx = _one_window(tok)
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=(2, 1, 32)).astype(np.float32)
    preds = decode([ex], feats, start, end, n_best_size=5)
    nbest = preds.nbest["w"]
    assert 1 <= len(nbest) <= 5 and nbest[0]["text"] == preds["w"]
    scores = [x["start_logit"] + x["end_logit"] for x in nbest]
    assert scores == sorted(scores, reverse=True)
    assert len({x["text"] for x in nbest}) == len(nbest)
    assert sum(x["probability"] for x in nbest) == pytest.approx(1.0)
    assert all(x["text"] in ex.context for x in nbest)


def test_decode_start_must_be_max_context(examples, tok):
    ex = examples[[e.qid for e in examples].index("t_mid")]
    feats = featurize([ex], tok, MAX_SEQ, STRIDE, MAX_Q, is_training=False)
    # A context piece present in windows 0 and 1 whose max-context window is 1.
    f0 = np.flatnonzero(feats.token_offsets[0, :, 0] >= 0)
    p0 = next(p for p in f0 if not feats.token_is_max_context[0, p])
    char = tuple(feats.token_offsets[0, p0])
    p1 = next(p for p in range(MAX_SEQ) if tuple(feats.token_offsets[1, p]) == char)
    assert feats.token_is_max_context[1, p1] and feats.token_is_max_context[1, p1 + 1]
    start = np.full((len(feats), MAX_SEQ), -10.0, np.float32)
    end = np.full_like(start, -10.0)
    start[0, p0] = end[0, p0] = 20.0              # best score (40), not max-context: rejected
    start[1, p1 + 1] = end[1, p1 + 1] = 8.0       # a weaker span (16) in its max-context window
    # (window 0's best valid pair is a -10 start with the 20 end: 10 < 16)
    got = decode([ex], feats, start, end)[ex.qid]
    assert got == ex.context[slice(*feats.token_offsets[1, p1 + 1])]
    start[1, p1] = end[1, p1] = 9.0               # the same piece from window 1 is accepted
    assert decode([ex], feats, start, end)[ex.qid] == ex.context[slice(*char)]


def test_decode_v2_null_threshold_and_min_over_windows(examples, tok):
    ex = examples[[e.qid for e in examples].index("t_none")]
    feats = featurize([ex], tok, MAX_SEQ, STRIDE, MAX_Q, is_training=False)
    n = len(feats)
    start = np.zeros((n, MAX_SEQ), np.float32)
    end = np.zeros_like(start)
    start[:, 0] = end[:, 0] = 5.0                 # null score 10 in every window
    p = np.flatnonzero(feats.token_is_max_context[0])[3]
    start[0, p] = end[0, p] = 4.0                 # best span scores 8
    span = ex.context[slice(*feats.token_offsets[0, p])]
    # diff = null − best = 10 − 8 = 2.
    preds = decode([ex], feats, start, end, version_2=True)
    assert preds[ex.qid] == "" and preds.null_score_diff[ex.qid] == pytest.approx(2.0)
    assert decode([ex], feats, start, end, version_2=True,
                  null_score_diff_threshold=2.5)[ex.qid] == span
    # BERT answers "" only when diff > threshold (strictly): at diff == threshold, the span.
    assert decode([ex], feats, start, end, version_2=True,
                  null_score_diff_threshold=2.0)[ex.qid] == span
    assert decode([ex], feats, start, end, version_2=True,
                  null_score_diff_threshold=1.9)[ex.qid] == ""
    # The null score is the MINIMUM over windows: one window with [CLS] 1 + 1 = 2 gives
    # diff = 2 − 8 = −6, and the span is returned.
    start[n - 1, 0] = end[n - 1, 0] = 1.0
    preds = decode([ex], feats, start, end, version_2=True)
    assert preds[ex.qid] == span and preds.null_score_diff[ex.qid] == pytest.approx(-6.0)
    # v1.1 decoding never answers "".
    assert decode([ex], feats, start, end)[ex.qid] == span


def test_decode_shape_errors(examples, train_feats):
    n = len(train_feats)
    good = np.zeros((n, MAX_SEQ), np.float32)
    with pytest.raises(ValueError, match="rows but there are"):
        decode(examples, train_feats, good[:-1], good)
    with pytest.raises(ValueError, match="max_seq_length"):
        decode(examples, train_feats, np.zeros((n, MAX_SEQ + 1)), good)
    with pytest.raises(ValueError, match="same list"):
        decode(examples[:1], train_feats, good, good)


# --------------------------------------------------------------------------------------------
# Malformed files


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _one(qa, context="Paris is in France."):
    return {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}


GOOD_QA = {"id": "x1", "question": "Where?", "answers": [{"text": "France",
                                                          "answer_start": 12}]}


@pytest.mark.parametrize("qa, pattern", [
    ({**GOOD_QA, "answers": [{"text": "France", "answer_start": 11}]},
     r"'x1'.*answer_start 11 .*'France'.*first occurs at 12"),
    ({**GOOD_QA, "answers": [{"text": "Spain", "answer_start": 12}]},
     r"'x1'.*does not occur in the context"),
    ({**GOOD_QA, "answers": [{"text": "France", "answer_start": 500}]}, r"'x1'.*answer_start 500"),
    ({**GOOD_QA, "answers": [{"text": "France", "answer_start": "12"}]},
     r"'x1'.*'answer_start' must be int"),
    ({**GOOD_QA, "answers": [{"answer_start": 12}]}, r"'x1'.*missing field 'text'"),
    ({k: v for k, v in GOOD_QA.items() if k != "question"}, r"'x1'.*missing field 'question'"),
    ({k: v for k, v in GOOD_QA.items() if k != "answers"}, r"'x1'.*missing field 'answers'"),
    ({k: v for k, v in GOOD_QA.items() if k != "id"}, r"qas\[0\].*missing field 'id'"),
    ({**GOOD_QA, "is_impossible": True}, r"'x1'.*is_impossible is true"),
    ({**GOOD_QA, "answers": []}, r"'x1'.*'answers' is empty"),
    ({**GOOD_QA, "is_impossible": "no"}, r"'x1'.*'is_impossible' must be bool"),
])
def test_read_squad_malformed_question(tmp_path, qa, pattern):
    path = _write(tmp_path, _one(qa))
    with pytest.raises(ValueError, match=pattern) as err:
        read_squad(path)
    assert str(path) in str(err.value)


def test_read_squad_malformed_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_squad(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_squad(_write(tmp_path, "{'data': oops"))
    with pytest.raises(ValueError, match="missing field 'data'"):
        read_squad(_write(tmp_path, {"version": "1.1"}))
    with pytest.raises(ValueError, match=r"paragraphs\[0\].*missing field 'context'"):
        read_squad(_write(tmp_path, {"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(ValueError, match="no questions"):
        read_squad(_write(tmp_path, {"data": []}))
    dup = _one(GOOD_QA)
    dup["data"][0]["paragraphs"][0]["qas"].append(dict(GOOD_QA))
    with pytest.raises(ValueError, match="'x1'.*repeats"):
        read_squad(_write(tmp_path, dup))
    # Accepted: the good question, and v2.0 plausible answers are not span-checked.
    ok = _one({**GOOD_QA, "answers": [], "is_impossible": True,
               "plausible_answers": [{"text": "Paris", "answer_start": 3}]})
    (ex,) = read_squad(_write(tmp_path, ok))
    assert ex.is_impossible and ex.plausible_answers[0].text == "Paris"


def test_public_api_names():
    assert set(squad.__all__) <= set(dir(squad))


def test_span_model_trains_and_decodes_end_to_end(tmp_path, minilm_dir):
    """A hand-written SQuAD v1.1 set: a small random model learns to point at its answers."""
    from distill.cli import main

    contexts = [
        ("The Eiffel Tower is in Paris. It was finished in 1889.", [
            ("Where is the Eiffel Tower?", "Paris"), ("When was it finished?", "1889")]),
        ("Marie Curie won two Nobel prizes, in physics and in chemistry.", [
            ("How many Nobel prizes did Marie Curie win?", "two"),
            ("In which fields?", "physics and in chemistry")]),
    ]
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": c, "qas": [{"id": f"q{i}{j}", "question": q,
                                "answers": [{"text": a, "answer_start": c.index(a)}]}
                               for j, (q, a) in enumerate(qas)]}
        for i, (c, qas) in enumerate(contexts)]}]}
    path = tmp_path / "train-v1.1.json"
    path.write_text(json.dumps(data))
    main(["distill", "squad", "--config=squad.py:v1", f"--workdir={tmp_path / 'run'}",
          "--config.model.name=tiny", f"--config.data.vocab={minilm_dir / 'vocab.txt'}",
          "--config.model.overrides={'hidden_size': 64, 'num_attention_heads': 2, "
          "'intermediate_size': 128, 'num_hidden_layers': 2}",
          f"--config.task.train={path}", f"--config.task.dev={path}",
          "--config.data.max_seq_length=48", "--config.data.max_query_length=16",
          "--config.trainer.batch_size=4",
          "--config.trainer.num_steps=150", "--config.trainer.eval_every=150",
          "--config.optimizer.lr=3e-3", "--config.optimizer.warmup_fraction=0.05"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["dev"]["exact_match"] == 100.0 and result["dev"]["f1"] == 100.0, result

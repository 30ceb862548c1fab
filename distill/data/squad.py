"""SQuAD v1.1 / v2.0 span extraction: JSON → examples → windowed features; logits → answers;
the official EM / F1.

The flow follows google-research/bert ``run_squad.py`` (``read_squad_examples``,
``convert_examples_to_features``, ``write_predictions``) with one simplification: instead of
whitespace tokens + ``get_final_text``, every context word piece carries its character offsets
into the ORIGINAL context (``Tokenizer.encode_with_offsets``), so an answer is cut straight from
the context as ``context[char_start(start_token):char_end(end_token)]``.

Windows (BERT semantics): the question is truncated to ``max_query_length`` pieces; each
feature is ``[CLS] question [SEP] context-window [SEP]`` with ``max_seq_length -
len(question) - 3`` context pieces; consecutive windows START ``doc_stride`` pieces apart
(BERT's ``doc_stride`` is the step between window starts, not the overlap as in HF
``transformers``' ``stride``). A context piece that sits in several windows is "max context" in
the one where ``min(left context, right context) + 0.01 * window length`` is largest (first
window on ties) -- ``_check_is_max_context`` -- and a predicted span must START at such a piece.

Evaluation re-implements the official ``evaluate-v1.1.py`` and ``evaluate-v2.0.py`` scripts
(Rajpurkar et al. 2016, 2018): ``normalize_answer`` (lower case, drop punctuation, drop the
articles a/an/the, collapse whitespace), EM and bag-of-tokens F1, max over gold answers.

Example::

    from distill.data import squad
    from flaxbert.tokenization import load_tokenizer

    examples = squad.read_squad("dev-v1.1.json")
    feats = squad.featurize(examples, load_tokenizer("vocab.txt"), is_training=False)
    # run the span head over feats.arrays["input_word_ids"/"input_mask"/"input_type_ids"]
    preds = squad.decode(examples, feats, start_logits, end_logits)   # dict qid -> text
    squad.evaluate(examples, preds)                      # {'exact_match': .., 'f1': .., ...}
"""

from __future__ import annotations

import collections
import json
import math
import re
import string
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "Answer", "SquadExample", "SquadFeatures", "SquadPredictions", "read_squad", "featurize",
    "decode", "normalize_answer", "exact_match", "f1_score", "evaluate", "MODEL_INPUT_KEYS",
]

MODEL_INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Answer:
    """A gold answer: ``context[start:start + len(text)] == text``."""

    text: str
    start: int

    @property
    def end(self) -> int:
        """Exclusive character end in the context."""
        return self.start + len(self.text)


@dataclass(frozen=True)
class SquadExample:
    """One question. ``answers`` is empty exactly when ``is_impossible`` (SQuAD v2.0); v2.0's
    ``plausible_answers`` are kept for inspection but never used as labels."""

    qid: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    is_impossible: bool = False
    plausible_answers: tuple[Answer, ...] = ()
    title: str = ""


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r} (has {sorted(obj)})")
    value = obj[key]
    # bool is an int subclass: never accept it where a number is expected.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"{where}: field {key!r} must be {names}, got "
                         f"{type(value).__name__} {value!r:.60}")
    return value


def _answers(raw: Any, key: str, context: str, where: str, check: bool) -> tuple[Answer, ...]:
    items = _field(raw, key, list, where)
    out = []
    for k, a in enumerate(items):
        w = f"{where} {key}[{k}]"
        text = _field(a, "text", str, w)
        start = _field(a, "answer_start", int, w)
        if check:
            if not text:
                raise ValueError(f"{w}: the answer text is empty")
            found = context[start:start + len(text)] if 0 <= start <= len(context) else None
            if found != text:
                hint = context.find(text)
                hint = (f"; the text first occurs at {hint}" if hint >= 0
                        else "; the text does not occur in the context")
                raise ValueError(f"{w}: answer_start {start} does not point at the answer text "
                                 f"{text!r}: context[{start}:{start + len(text)}] is "
                                 f"{found!r}{hint}")
        out.append(Answer(text, start))
    return tuple(out)


def read_squad(path: str | Path) -> list[SquadExample]:
    """Reads an official SQuAD v1.1 / v2.0 JSON file (``train-v1.1.json``, ``dev-v2.0.json``).

    Layout: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
    "answers": [{"text", "answer_start"}], "is_impossible"?, "plausible_answers"?}]}]}]}``.

    Raises FileNotFoundError if ``path`` is missing and ValueError (naming the file, the
    article / paragraph / question id and the field) when a field is missing or mistyped, an
    ``answer_start`` does not point at its text in the context, a question id repeats, an
    ``is_impossible`` question carries answers, or a possible one has none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); expected the official SQuAD "
                         f"layout {{'data': [...]}}") from e
    articles = _field(data, "data", list, str(path))
    examples: list[SquadExample] = []
    seen: dict[str, str] = {}
    for i, article in enumerate(articles):
        where_a = f"{path}: data[{i}]"
        paragraphs = _field(article, "paragraphs", list, where_a)
        title = article.get("title", "")
        title = title if isinstance(title, str) else str(title)
        for j, para in enumerate(paragraphs):
            where_p = f"{where_a}.paragraphs[{j}]"
            context = _field(para, "context", str, where_p)
            for k, qa in enumerate(_field(para, "qas", list, where_p)):
                qid = _field(qa, "id", str, f"{where_p}.qas[{k}]")
                where = f"{where_p}.qas[{k}] (question id {qid!r})"
                if qid in seen:
                    raise ValueError(f"{where}: the question id repeats ({seen[qid]}); ids must "
                                     f"be unique")
                seen[qid] = where
                question = _field(qa, "question", str, where)
                impossible = (_field(qa, "is_impossible", bool, where)
                              if "is_impossible" in qa else False)
                answers = _answers(qa, "answers", context, where, check=True)
                plausible = (_answers(qa, "plausible_answers", context, where, check=False)
                             if "plausible_answers" in qa else ())
                if impossible and answers:
                    raise ValueError(f"{where}: is_impossible is true but 'answers' holds "
                                     f"{len(answers)} answer(s); v2.0 keeps them under "
                                     f"'plausible_answers'")
                if not impossible and not answers:
                    raise ValueError(f"{where}: 'answers' is empty but is_impossible is not "
                                     f"true; give at least one answer or mark the question "
                                     f"impossible (SQuAD v2.0)")
                examples.append(SquadExample(qid, question, context, answers, impossible,
                                             plausible, title))
    if not examples:
        raise ValueError(f"{path} holds no questions (data[].paragraphs[].qas[] are all empty)")
    return examples


# --------------------------------------------------------------------------------------------
# Featurizing


@dataclass
class SquadFeatures:
    """One row per window.

    ``arrays`` (the batchable part, every value [N, ...]): ``input_word_ids``, ``input_mask``,
    ``input_type_ids`` (int32 [N, L]), ``example_weight`` (float32 [N], ones) and, when built
    with ``is_training=True``, ``start_positions`` / ``end_positions`` (int32 [N]; 0 = [CLS]
    for an impossible question or an answer not wholly inside the window).

    Bookkeeping for ``decode`` (kept out of ``arrays`` so that length bucketing never sees it):
    ``example_index`` int32 [N] (index into the examples list), ``token_offsets`` int32
    [N, L, 2] (character ``(start, end)`` in the example's context for context pieces, -1
    elsewhere), ``token_is_max_context`` bool [N, L].
    """

    arrays: dict[str, np.ndarray]
    example_index: np.ndarray
    token_offsets: np.ndarray
    token_is_max_context: np.ndarray
    max_seq_length: int = 0
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.example_index)


def _is_max_context(spans: Sequence[tuple[int, int]], cur: int, position: int) -> bool:
    """BERT ``_check_is_max_context``: is window ``cur`` the best-centred one for ``position``?

    Score of a window holding the piece: min(pieces left of it, pieces right of it) + 0.01 *
    window length; the first best-scoring window wins.
    """
    best_score, best = None, None
    for idx, (start, length) in enumerate(spans):
        end = start + length - 1
        if not start <= position <= end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best = score, idx
    return cur == best


def _doc_spans(n: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    spans, start = [], 0
    while True:
        length = min(n - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length >= n:
            return spans
        start += min(length, doc_stride)


def _answer_token_span(offsets: Sequence[tuple[int, int]],
                       answer: Answer) -> tuple[int, int] | None:
    """First and last context piece overlapping the answer's characters (None if none do)."""
    s, e = answer.start, answer.end
    hit = [i for i, (a, b) in enumerate(offsets) if a < e and b > s]
    return (hit[0], hit[-1]) if hit else None


def featurize(
    examples: Sequence[SquadExample],
    tokenizer,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    *,
    is_training: bool,
) -> SquadFeatures:
    """Windows every example into ``[CLS] question [SEP] context-window [SEP]`` features.

    Args:
        examples: from ``read_squad``.
        tokenizer: a ``flaxbert.tokenization.Tokenizer`` (``encode``, ``encode_with_offsets``,
            ``cls_id``, ``sep_id``, ``pad_id``).
        max_seq_length: L, the padded length of every feature.
        doc_stride: pieces between the starts of consecutive windows (BERT's meaning).
        max_query_length: the question is cut to its first this-many pieces.
        is_training: add ``start_positions`` / ``end_positions`` (from the first gold answer).
            An answerable training example whose answer covers no piece (e.g. only
            whitespace) is skipped with one ``UserWarning``, as BERT's run_squad skips it;
            its id lands in ``SquadFeatures.skipped``.

    Returns a ``SquadFeatures`` (see there). Raises ValueError on bad lengths or no examples.
    """
    if not examples:
        raise ValueError("featurize: no examples (empty list)")
    if max_query_length < 1 or doc_stride < 1:
        raise ValueError(f"featurize: max_query_length ({max_query_length}) and doc_stride "
                         f"({doc_stride}) must be >= 1")
    if max_seq_length < max_query_length + 4:
        raise ValueError(f"featurize: max_seq_length {max_seq_length} leaves no room for the "
                         f"context: it must be >= max_query_length + 4 = {max_query_length + 4} "
                         f"([CLS] question [SEP] >=1 context piece [SEP])")
    L = max_seq_length
    cls_id, sep_id, pad_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    context_cache: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}
    ids_rows, type_rows, mask_rows, starts, ends = [], [], [], [], []
    ex_index, offset_rows, max_ctx_rows, skipped = [], [], [], []
    for e_i, ex in enumerate(examples):
        if ex.context not in context_cache:
            ids, offs = tokenizer.encode_with_offsets(ex.context)
            context_cache[ex.context] = (list(ids), [tuple(o) for o in offs])
        doc_ids, doc_offs = context_cache[ex.context]
        q_ids = list(tokenizer.encode(ex.question))[:max_query_length]
        tok_span = None
        if is_training and not ex.is_impossible:
            tok_span = _answer_token_span(doc_offs, ex.answers[0])
            if tok_span is None:
                skipped.append(ex.qid)
                continue
        spans = _doc_spans(len(doc_ids), L - len(q_ids) - 3, doc_stride)
        n_q = len(q_ids) + 2
        for s_i, (d_start, d_len) in enumerate(spans):
            ids = [cls_id, *q_ids, sep_id, *doc_ids[d_start:d_start + d_len], sep_id]
            row = np.full(L, pad_id, np.int32)
            row[:len(ids)] = ids
            types = np.zeros(L, np.int32)
            types[n_q:len(ids)] = 1
            mask = np.zeros(L, np.int32)
            mask[:len(ids)] = 1
            offs = np.full((L, 2), -1, np.int32)
            max_ctx = np.zeros(L, bool)
            for k in range(d_len):
                offs[n_q + k] = doc_offs[d_start + k]
                max_ctx[n_q + k] = _is_max_context(spans, s_i, d_start + k)
            start = end = 0
            if tok_span is not None and d_start <= tok_span[0] and tok_span[1] < d_start + d_len:
                start, end = tok_span[0] - d_start + n_q, tok_span[1] - d_start + n_q
            ids_rows.append(row)
            type_rows.append(types)
            mask_rows.append(mask)
            starts.append(start)
            ends.append(end)
            ex_index.append(e_i)
            offset_rows.append(offs)
            max_ctx_rows.append(max_ctx)
    if skipped:
        warnings.warn(f"featurize: skipped {len(skipped)} training example(s) whose answer "
                      f"covers no word piece: {skipped[:5]}{' ...' if len(skipped) > 5 else ''}",
                      UserWarning, stacklevel=2)
    if not ids_rows:
        raise ValueError(f"featurize: every example was skipped ({len(skipped)}); no features")
    arrays = {
        "input_word_ids": np.stack(ids_rows),
        "input_mask": np.stack(mask_rows),
        "input_type_ids": np.stack(type_rows),
        "example_weight": np.ones(len(ids_rows), np.float32),
    }
    if is_training:
        arrays["start_positions"] = np.asarray(starts, np.int32)
        arrays["end_positions"] = np.asarray(ends, np.int32)
    return SquadFeatures(arrays, np.asarray(ex_index, np.int32), np.stack(offset_rows),
                         np.stack(max_ctx_rows), L, tuple(skipped))


# --------------------------------------------------------------------------------------------
# Decoding


class SquadPredictions(dict):
    """``{qid: answer text}`` (``""`` = no answer, v2.0), plus

    ``nbest[qid]``: list of ``{"text", "probability", "start_logit", "end_logit"}``, best first
    (probability = softmax over the n-best's start+end scores), and, with ``version_2``,
    ``null_score_diff[qid]`` = null score − best non-null score (the value BERT writes to
    ``null_odds.json``; the answer is "" when it exceeds the threshold).
    """

    def __init__(self, answers=(), nbest=None, null_score_diff=None):
        super().__init__(answers)
        self.nbest: dict[str, list[dict]] = nbest or {}
        self.null_score_diff: dict[str, float] = null_score_diff or {}


def _logit_rows(logits, n: int, name: str, max_len: int) -> list[np.ndarray]:
    if isinstance(logits, np.ndarray) or hasattr(logits, "shape"):
        arr = np.asarray(logits, np.float32)
        if arr.ndim != 2:
            raise ValueError(f"decode: {name} must be [num_features, seq_len], got shape "
                             f"{arr.shape}")
        rows = list(arr)
    else:
        rows = [np.asarray(r, np.float32).reshape(-1) for r in logits]
    if len(rows) != n:
        raise ValueError(f"decode: {name} has {len(rows)} rows but there are {n} features; "
                         f"pass one row per feature, in feature order")
    for i, r in enumerate(rows):
        if len(r) > max_len:
            raise ValueError(f"decode: {name}[{i}] has length {len(r)} > the features' "
                             f"max_seq_length {max_len}")
    return rows


def _top(logits: np.ndarray, n: int) -> np.ndarray:
    return np.argsort(-logits, kind="stable")[:n]


def _softmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    m = max(scores)
    exp = [math.exp(s - m) for s in scores]
    total = sum(exp)
    return [x / total for x in exp]


def decode(
    examples: Sequence[SquadExample],
    features: SquadFeatures,
    start_logits,
    end_logits,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    version_2: bool = False,
) -> SquadPredictions:
    """Span logits → answer text per question (BERT run_squad ``write_predictions``).

    Per feature, the ``n_best_size`` highest start and end logits (over all positions, as
    BERT does) are paired; a pair is kept when both ends are context pieces, the start is the
    piece's max-context window, end >= start and the span has at most ``max_answer_length``
    pieces. Candidates from all of an example's windows are ranked by start + end logit; the
    text is cut from the original context by character offsets. With ``version_2``, the null
    score is ``start[0] + end[0]`` ([CLS]) minimised over the windows; the answer is "" when
    null − best non-null > ``null_score_diff_threshold``.

    ``start_logits`` / ``end_logits``: [num_features, T] with T <= max_seq_length (a
    bucket-trimmed batch is fine), or a list of per-feature 1-D arrays. Returns a
    ``SquadPredictions`` (a dict qid → text with ``.nbest`` and ``.null_score_diff``).
    """
    if n_best_size < 1 or max_answer_length < 1:
        raise ValueError(f"decode: n_best_size ({n_best_size}) and max_answer_length "
                         f"({max_answer_length}) must be >= 1")
    n = len(features)
    if n and int(features.example_index.max()) >= len(examples):
        raise ValueError(f"decode: the features refer to example {features.example_index.max()}"
                         f" but only {len(examples)} examples were given; pass the same list "
                         f"that was featurized")
    L = features.token_offsets.shape[1]
    starts = _logit_rows(start_logits, n, "start_logits", L)
    ends = _logit_rows(end_logits, n, "end_logits", L)
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for f_i, e_i in enumerate(features.example_index):
        by_example[int(e_i)].append(f_i)

    preds = SquadPredictions()
    for e_i, ex in enumerate(examples):
        prelim = []  # (score, start_logit, end_logit, feature, start, end)
        null = None  # (score, start_logit, end_logit)
        for f_i in by_example.get(e_i, []):
            s_log, e_log = starts[f_i], ends[f_i]
            offs, max_ctx = features.token_offsets[f_i], features.token_is_max_context[f_i]
            if version_2 and len(s_log) and len(e_log):
                score = float(s_log[0] + e_log[0])
                if null is None or score < null[0]:
                    null = (score, float(s_log[0]), float(e_log[0]))
            for s in _top(s_log, n_best_size):
                if offs[s, 0] < 0 or not max_ctx[s]:
                    continue
                for e in _top(e_log, n_best_size):
                    if offs[e, 0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((float(s_log[s] + e_log[e]), float(s_log[s]),
                                   float(e_log[e]), f_i, int(s), int(e)))
        candidates = [(p[0], p[1], p[2], ex.context[features.token_offsets[p[3], p[4], 0]:
                                                    features.token_offsets[p[3], p[5], 1]])
                      for p in prelim]
        if null is not None:
            candidates.append((null[0], null[1], null[2], None))
        candidates.sort(key=lambda c: c[0], reverse=True)
        nbest, seen = [], set()
        for score, s_l, e_l, text in candidates:
            if len(nbest) >= n_best_size:
                break
            text = "" if text is None else text
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start_logit": s_l, "end_logit": e_l})
        if null is not None and "" not in seen:
            nbest.append({"text": "", "start_logit": null[1], "end_logit": null[2]})
        if not nbest:
            # BERT's placeholder when no valid span exists in any window.
            nbest.append({"text": "" if version_2 else "empty", "start_logit": 0.0,
                          "end_logit": 0.0})
        for entry, p in zip(nbest, _softmax([x["start_logit"] + x["end_logit"] for x in nbest])):
            entry["probability"] = p
        preds.nbest[ex.qid] = nbest
        if not version_2:
            preds[ex.qid] = nbest[0]["text"]
            continue
        best = next((x for x in nbest if x["text"]), None)
        null_score = null[0] if null is not None else 0.0
        if best is None:
            preds.null_score_diff[ex.qid] = math.inf
            preds[ex.qid] = ""
            continue
        diff = null_score - best["start_logit"] - best["end_logit"]
        preds.null_score_diff[ex.qid] = diff
        preds[ex.qid] = "" if diff > null_score_diff_threshold else best["text"]
    return preds


# --------------------------------------------------------------------------------------------
# Official evaluation (evaluate-v1.1.py / evaluate-v2.0.py)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, remove punctuation, remove the articles a/an/the, collapse whitespace
    (in that order, as the official scripts do)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, ground_truth: str) -> float:
    """1.0 if the normalized strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str, *, version_2: bool = False) -> float:
    """Bag-of-normalized-tokens F1: 2PR/(P+R) with P = common/|pred|, R = common/|gold|.

    When either side normalizes to no tokens: v1.1 gives 0.0; v2.0 (``version_2=True``)
    gives 1.0 if both are empty (a correct no-answer), else 0.0.
    """
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    if version_2 and (not pred or not gold):
        return float(pred == gold)
    common = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def evaluate(
    dataset_examples: Sequence[SquadExample],
    predictions: Mapping[str, str],
    version_2: bool | None = None,
) -> dict[str, float]:
    """The official SQuAD scores in percent: ``{'exact_match', 'f1', 'total'}``.

    v1.1 (``evaluate-v1.1.py``): per question the max EM / F1 over its gold answers.
    v2.0 (``evaluate-v2.0.py``; chosen when ``version_2`` is True, or None and some example is
    impossible): gold answers that normalize to "" are dropped and an unanswerable question's
    only gold is "" (so predicting "" scores 1 there); adds ``HasAns_*`` / ``NoAns_*``
    breakdowns when such questions exist. A question without a prediction scores 0 and counts
    in the totals (v1.1's rule; the v2.0 script would drop it); ``missing`` gives how many.
    Predictions for unknown ids are ignored, as both scripts do.
    """
    if not dataset_examples:
        raise ValueError("evaluate: no examples")
    if version_2 is None:
        version_2 = any(ex.is_impossible for ex in dataset_examples)
    em, f1, has_ans = {}, {}, {}
    missing = 0
    for ex in dataset_examples:
        golds = [a.text for a in ex.answers]
        if version_2:
            golds = [g for g in golds if normalize_answer(g)] or [""]
        elif not golds:
            raise ValueError(f"evaluate: question {ex.qid!r} has no gold answers; SQuAD v1.1 "
                             f"scoring needs at least one (use version_2=True for v2.0 data)")
        has_ans[ex.qid] = bool(ex.answers)
        if ex.qid not in predictions:
            missing += 1
            em[ex.qid] = f1[ex.qid] = 0.0
            continue
        pred = predictions[ex.qid]
        if not isinstance(pred, str):
            raise ValueError(f"evaluate: the prediction for {ex.qid!r} must be a string, got "
                             f"{type(pred).__name__}")
        em[ex.qid] = max(exact_match(pred, g) for g in golds)
        f1[ex.qid] = max(f1_score(pred, g, version_2=version_2) for g in golds)

    def summary(qids: list[str]) -> dict[str, float]:
        return {"exact_match": 100.0 * sum(em[q] for q in qids) / len(qids),
                "f1": 100.0 * sum(f1[q] for q in qids) / len(qids), "total": len(qids)}

    out: dict[str, float] = summary(list(em))
    out["missing"] = missing
    if version_2:
        for prefix, want in (("HasAns", True), ("NoAns", False)):
            qids = [q for q, h in has_ans.items() if h == want]
            if qids:
                out.update({f"{prefix}_{k}": v for k, v in summary(qids).items()})
    return out

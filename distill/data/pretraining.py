"""MLM (+ optional NSP) pre-training data: documents of token ids → instances → masked batches.

Semantics follow google-research/bert ``create_pretraining_data.py`` (defaults: max_seq_length
128, max_predictions_per_seq 20, masked_lm_prob 0.15, dupe_factor 10, short_seq_prob 0.1), with
one deliberate change: **masking is dynamic**. Instances (segment pairs) are created once, in
``dupe_factor`` passes over the corpus with different seeds, as google does; the masks are drawn
when an element is read, from a generator seeded by ``(seed, process_index, epoch, instance)``,
so every epoch sees new masks while any element is reproducible without replaying the stream.

Other choices, all documented where they are made: ids in ``VocabInfo.special_ids`` (for the
flaxbert tokenizers [PAD] [UNK] [CLS] [SEP] [MASK]) are never predicted and never drawn as the
random replacement (google only skips [CLS]/[SEP] and draws from the whole vocabulary); without
NSP, instances are RoBERTa FULL-SENTENCES packs.

Everything here works on token ids only (no strings), so it is the same for WordPiece and
SentencePiece vocabularies; :class:`VocabInfo` carries the few ids it needs.

Example::

    from flaxbert.tokenization import load_tokenizer
    from distill.data.pretraining import text_to_pretraining_dataset

    tok = load_tokenizer(".../all-MiniLM-L6-v2")
    ds = text_to_pretraining_dataset("vader:/root/.cache/flaxbert/assets/vader", tok,
                                     batch_size=32, dupe_factor=2, seed=0)
    it = iter(ds)
    batch = next(it)   # dict of numpy arrays, see make_pretraining_dataset
    state = it.get_state()      # resume later with it.set_state(state)

Checkpointing with orbax (grain ships the handler)::

    import grain, orbax.checkpoint as ocp
    mngr = ocp.CheckpointManager(workdir / "checkpoints")
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(train_state), data=grain.checkpoint.CheckpointSave(it)))
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(it)))   # `it` is now at the saved position
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from typing import Any

import grain
import grain.experimental
import numpy as np

from distill.data import sources

# google-research/bert create_pretraining_data.py defaults.
MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS_PER_SEQ = 20
MASKED_LM_PROB = 0.15
SHORT_SEQ_PROB = 0.1
DUPE_FACTOR = 10

# Salts that separate the random streams derived from one user seed.
_STREAM_INSTANCES, _STREAM_MASKS, _STREAM_SHUFFLE = 0, 1, 2


# --------------------------------------------------------------------------- vocabulary ids


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """The ids the pipeline needs, independent of the tokenizer kind.

    ``word_starts`` is a ``[vocab_size]`` bool table, True where a piece starts a word (for
    whole-word masking); None means every piece starts a word. ``special_ids`` are never
    masked and never drawn as the 10% random replacement.
    """

    vocab_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    special_ids: tuple[int, ...] = ()
    word_starts: np.ndarray | None = None

    def __post_init__(self):
        if self.vocab_size < 1:
            raise ValueError(f"VocabInfo.vocab_size={self.vocab_size}: expected >= 1")
        for name in ("cls_id", "sep_id", "pad_id", "mask_id"):
            value = getattr(self, name)
            if not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"VocabInfo.{name}={value}: expected an id in [0, {self.vocab_size})"
                )
        if self.word_starts is not None and np.shape(self.word_starts) != (self.vocab_size,):
            raise ValueError(
                f"VocabInfo.word_starts has shape {np.shape(self.word_starts)}: expected "
                f"({self.vocab_size},), one flag per vocabulary id"
            )
        all_special = {self.cls_id, self.sep_id, self.pad_id, self.mask_id, *self.special_ids}
        object.__setattr__(self, "special_ids", tuple(sorted(int(i) for i in all_special)))

    @classmethod
    def from_tokenizer(cls, tokenizer) -> VocabInfo:
        """Reads the ids from a ``flaxbert.tokenization`` Tokenizer (WordPiece or SentencePiece).

        The word-start table is ``tokenizer.word_start_mask(arange(vocab_size))``: whether a piece
        starts a word is a property of the piece (``##`` / ``▁``), not of its neighbours.
        """
        vocab_size = int(tokenizer.vocab_size)
        table = np.asarray(
            tokenizer.word_start_mask(np.arange(vocab_size, dtype=np.int32)), dtype=bool
        )
        return cls(
            vocab_size=vocab_size,
            cls_id=int(tokenizer.cls_id),
            sep_id=int(tokenizer.sep_id),
            pad_id=int(tokenizer.pad_id),
            mask_id=int(tokenizer.mask_id),
            special_ids=tuple(int(i) for i in tokenizer.special_ids),
            word_starts=table,
        )


def _vocab_info(tokenizer_or_vocab) -> VocabInfo:
    if isinstance(tokenizer_or_vocab, VocabInfo):
        return tokenizer_or_vocab
    if tokenizer_or_vocab is None:
        raise ValueError("tokenizer=None: pass a flaxbert Tokenizer or a VocabInfo")
    return VocabInfo.from_tokenizer(tokenizer_or_vocab)


# --------------------------------------------------------------------------- instances


class InstanceStore(Sequence):
    """Packed instances ``[CLS] A [SEP] B [SEP]`` (or ``[CLS] text [SEP]``) in flat arrays.

    Compact (one int32 per token) and picklable, so it can back a grain ``MapDataset.source``.
    Item ``i`` is a dict: ``index``, ``tokens`` (int32, unpadded), ``num_type0`` (positions with
    type id 0: ``len(A) + 2``), ``is_random_next`` (0/1, 0 without NSP), ``doc_index``.
    """

    def __init__(self, tokens, offsets, num_type0, is_random_next, doc_index):
        self.tokens = np.asarray(tokens, np.int32)
        self.offsets = np.asarray(offsets, np.int64)
        self.num_type0 = np.asarray(num_type0, np.int32)
        self.is_random_next = np.asarray(is_random_next, np.int8)
        self.doc_index = np.asarray(doc_index, np.int32)

    @classmethod
    def from_lists(cls, instances: list[tuple[list[int], int, int, int]]) -> InstanceStore:
        """From ``(tokens, num_type0, is_random_next, doc_index)`` tuples."""
        lengths = np.fromiter((len(t) for t, *_ in instances), np.int64, len(instances))
        offsets = np.zeros(len(instances) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(
            (tok for t, *_ in instances for tok in t), np.int32, int(offsets[-1])
        )
        return cls(
            flat,
            offsets,
            [x[1] for x in instances],
            [x[2] for x in instances],
            [x[3] for x in instances],
        )

    @classmethod
    def concatenate(cls, stores: Sequence[InstanceStore]) -> InstanceStore:
        offsets, base = [np.zeros(1, np.int64)], 0
        for s in stores:
            offsets.append(s.offsets[1:] + base)
            base += int(s.offsets[-1])
        return cls(
            np.concatenate([s.tokens for s in stores]) if stores else np.zeros(0, np.int32),
            np.concatenate(offsets),
            np.concatenate([s.num_type0 for s in stores]) if stores else [],
            np.concatenate([s.is_random_next for s in stores]) if stores else [],
            np.concatenate([s.doc_index for s in stores]) if stores else [],
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, index):
        if isinstance(index, slice):
            raise TypeError("InstanceStore does not support slicing; index one instance")
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} out of range [0, {len(self)})")
        return {
            "index": index,
            "tokens": self.tokens[self.offsets[index] : self.offsets[index + 1]],
            "num_type0": int(self.num_type0[index]),
            "is_random_next": int(self.is_random_next[index]),
            "doc_index": int(self.doc_index[index]),
        }


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise ValueError("rng=None: pass a numpy Generator or an int seed")
    return np.random.default_rng(rng)


def _truncate_seq_pair(a: list[int], b: list[int], max_num_tokens: int, rng) -> tuple:
    """Removes tokens from the longer segment (b on ties), front or back at random, until fit."""
    excess = len(a) + len(b) - max_num_tokens
    if excess <= 0:
        return a, b
    front = rng.random(excess) < 0.5
    a0, a1, b0, b1 = 0, len(a), 0, len(b)
    for f in front:
        if a1 - a0 > b1 - b0:
            if f:
                a0 += 1
            else:
                a1 -= 1
        elif f:
            b0 += 1
        else:
            b1 -= 1
    return a[a0:a1], b[b0:b1]


def _check_documents(documents) -> None:
    if not isinstance(documents, Sequence) or isinstance(documents, str | bytes):
        raise ValueError(
            f"documents is {type(documents).__name__}: expected a list of documents, each a "
            "list of sentences, each a list of token ids"
        )


def create_instances(
    documents: Sequence[Sequence[Sequence[int]]],
    *,
    cls_id: int,
    sep_id: int,
    max_seq_length: int = MAX_SEQ_LENGTH,
    short_seq_prob: float = SHORT_SEQ_PROB,
    nsp: bool = True,
    rng: np.random.Generator | int,
    cross_documents: bool = True,
) -> InstanceStore:
    """One pass of google's ``create_instances_from_document`` over every document (unmasked).

    ``documents[d][s]`` is the token ids of sentence ``s`` of document ``d`` (no special tokens);
    empty sentences and documents are skipped.

    With ``nsp=True`` (google): per document, the target length is ``max_seq_length - 3``, or with
    probability ``short_seq_prob`` ``randint(2, max_seq_length - 3)``. Sentences are gathered until
    the target is reached; a random prefix of them (at least one) is segment A. With probability
    0.5 (always when only one sentence was gathered) B is a span of a random other document
    starting at a random sentence (label 1, "random next") and the unused sentences are put back;
    otherwise B is the rest of the gathered sentences (label 0). The pair is truncated to fit by
    removing tokens from the longer segment, front or back at random.

    With ``nsp=False`` (RoBERTa FULL-SENTENCES): contiguous sentences are packed into single
    segments ``[CLS] text [SEP]`` of up to ``max_seq_length - 2`` tokens (or, with probability
    ``short_seq_prob`` per instance, a random shorter target), crossing document boundaries with
    a ``[SEP]`` between documents; a sentence longer than the target is split into pieces.
    With ``cross_documents=False`` (DOC-SENTENCES) an instance ends where its document does —
    short documents give short instances, which packing then puts side by side.
    All type ids are 0 and ``is_random_next`` is 0.
    """
    _check_documents(documents)
    rng = _rng(rng)
    specials = 3 if nsp else 2
    if max_seq_length < specials + 2:
        raise ValueError(
            f"max_seq_length={max_seq_length}: expected >= {specials + 2} "
            f"({specials} special tokens plus at least 2 text tokens)"
        )
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob={short_seq_prob}: expected a probability in [0, 1]")
    docs = [[list(s) for s in d if len(s)] for d in documents]
    keep = [i for i, d in enumerate(docs) if d]
    docs = [docs[i] for i in keep]
    if not docs:
        raise ValueError("documents holds no token ids: every document/sentence is empty")
    max_num_tokens = max_seq_length - specials

    def target_length() -> int:
        if rng.random() < short_seq_prob:
            return int(rng.integers(2, max_num_tokens + 1))
        return max_num_tokens

    out: list[tuple[list[int], int, int, int]] = []
    if nsp:
        for d in range(len(docs)):
            _instances_from_document(
                docs, d, target_length(), max_num_tokens, cls_id, sep_id, rng, keep[d], out
            )
    else:
        _pack_full_sentences(docs, keep, target_length, cls_id, sep_id, out, cross_documents)
    return InstanceStore.from_lists(out)


def _instances_from_document(docs, d, target, max_num_tokens, cls_id, sep_id, rng, orig_d, out):
    document = docs[d]
    chunk: list[list[int]] = []
    length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            tokens_a = [t for s in chunk[:a_end] for t in s]
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random_next = 1
                target_b = target - len(tokens_a)
                other = d
                if len(docs) > 1:
                    for _ in range(10):  # as google: give up after 10 tries
                        other = int(rng.integers(0, len(docs)))
                        if other != d:
                            break
                random_doc = docs[other]
                tokens_b = []
                for j in range(int(rng.integers(0, len(random_doc))), len(random_doc)):
                    tokens_b.extend(random_doc[j])
                    if len(tokens_b) >= target_b:
                        break
                i -= len(chunk) - a_end  # put the unused sentences back
            else:
                is_random_next = 0
                tokens_b = [t for s in chunk[a_end:] for t in s]
            tokens_a, tokens_b = _truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            tokens = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
            out.append((tokens, len(tokens_a) + 2, is_random_next, orig_d))
            chunk, length = [], 0
        i += 1


def _pack_full_sentences(docs, keep, target_length, cls_id, sep_id, out, cross_documents=True):
    cur: list[int] = []
    cur_doc = 0
    target = target_length()

    def emit(tokens, doc):
        out.append(([cls_id, *tokens, sep_id], len(tokens) + 2, 0, doc))
        return target_length()

    for d, document in enumerate(docs):
        if cur and not cross_documents:  # DOC-SENTENCES: an instance ends with its document
            target = emit(cur, cur_doc)
            cur = []
        for k, sent in enumerate(document):
            sep = [sep_id] if (cur and k == 0) else []
            if cur and len(cur) + len(sep) + len(sent) > target:
                target = emit(cur, cur_doc)
                cur, sep = [], []
            while len(sent) > target:  # cur is empty here
                target_now = target
                target = emit(sent[:target_now], keep[d])
                sent = sent[target_now:]
            if not cur:
                cur_doc = keep[d]
            cur.extend(sep)
            cur.extend(sent)
    if cur:
        emit(cur, cur_doc)


# --------------------------------------------------------------------------- masking


def num_predictions(
    num_tokens: int,
    masked_lm_prob: float = MASKED_LM_PROB,
    max_predictions_per_seq: int = MAX_PREDICTIONS_PER_SEQ,
) -> int:
    """google's count: ``min(max_predictions, max(1, round(num_tokens * masked_lm_prob)))``.

    ``num_tokens`` counts every non-padding token, [CLS] and [SEP] included (as google does).
    """
    return min(max_predictions_per_seq, max(1, int(round(num_tokens * masked_lm_prob))))


def mask_tokens(
    input_ids,
    special_mask,
    word_starts=None,
    rng: np.random.Generator | int | None = None,
    *,
    vocab_size: int,
    mask_id: int,
    masked_lm_prob: float = MASKED_LM_PROB,
    max_predictions_per_seq: int = MAX_PREDICTIONS_PER_SEQ,
    whole_word: bool = False,
    pad_id: int | None = None,
    random_exclude_ids: Iterable[int] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chooses and corrupts masked-LM targets in one sequence (google's recipe, on ids).

    Args:
      input_ids: ``[T]`` ids, padded or not.
      special_mask: ``[T]`` bool, True where a token must never be predicted ([CLS], [SEP],
        padding, other specials).
      word_starts: ``[T]`` bool, True where a piece starts a word; only used with ``whole_word``.
        A piece that does not start a word joins the previous candidate (a ``##`` piece), so a
        word is masked with all its pieces or not at all.
      rng: a numpy Generator (or an int seed).
      vocab_size, mask_id: the vocabulary size and the [MASK] id.
      masked_lm_prob, max_predictions_per_seq: predictions = ``num_predictions(len)``, where
        len counts the non-padding tokens (``pad_id`` given) or all of ``input_ids``.
      whole_word: whole-word masking; as google, a word that would overshoot the count is
        skipped, so a few sequences get fewer predictions.
      random_exclude_ids: ids never drawn as the random replacement (e.g. the special ids).

    Each chosen token becomes [MASK] with probability 0.8, stays itself 0.1, becomes a uniformly
    random vocabulary id 0.1.

    Returns:
      ``(masked_ids [T] int32, masked_lm_positions [P] int32, masked_lm_ids [P] int32,
      masked_lm_weights [P] float32)`` with ``P = max_predictions_per_seq``, positions sorted
      and zero-padded, weights 1.0 for real predictions and 0.0 for padding.
    """
    ids = np.asarray(input_ids, dtype=np.int32)
    special = np.asarray(special_mask, dtype=bool)
    if ids.ndim != 1 or special.shape != ids.shape:
        raise ValueError(
            f"mask_tokens: input_ids shape {ids.shape} and special_mask shape {special.shape}: "
            "expected two [T] arrays of the same length"
        )
    if not 0.0 < masked_lm_prob <= 1.0:
        raise ValueError(f"masked_lm_prob={masked_lm_prob}: expected a probability in (0, 1]")
    if max_predictions_per_seq < 1:
        raise ValueError(f"max_predictions_per_seq={max_predictions_per_seq}: expected >= 1")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id}: expected an id in [0, vocab_size={vocab_size})")
    rng = _rng(rng)
    real = ids != pad_id if pad_id is not None else np.ones(ids.shape, bool)
    candidate = real & ~special
    cand = np.flatnonzero(candidate)
    count = min(num_predictions(int(real.sum()), masked_lm_prob, max_predictions_per_seq),
                len(cand))

    if whole_word and len(cand):
        if word_starts is None:
            raise ValueError("mask_tokens(whole_word=True) needs word_starts ([T] bool)")
        starts = np.asarray(word_starts, dtype=bool)
        if starts.shape != ids.shape:
            raise ValueError(
                f"word_starts shape {starts.shape}: expected {ids.shape}, like input_ids"
            )
        prev_is_cand = np.concatenate([[False], candidate[:-1]])[cand]
        group_start = starts[cand] | ~prev_is_cand
        group_of = np.cumsum(group_start) - 1
        bounds = np.flatnonzero(np.concatenate([group_start, [True]]))
        chosen, total = [], 0
        for g in rng.permutation(len(bounds) - 1):
            if total >= count:
                break
            size = int(bounds[g + 1] - bounds[g])
            if total + size > count:
                continue
            chosen.append(g)
            total += size
        positions = np.sort(cand[np.isin(group_of, chosen)]) if chosen else cand[:0]
    else:
        positions = np.sort(rng.permutation(cand)[:count])

    k = len(positions)
    masked = ids.copy()
    labels = ids[positions]
    r = rng.random(k)
    replace_mask = r < 0.8
    replace_random = r >= 0.9
    masked[positions[replace_mask]] = mask_id
    n_random = int(replace_random.sum())
    if n_random:
        masked[positions[replace_random]] = _random_ids(
            rng, n_random, vocab_size, random_exclude_ids
        )

    out_pos = np.zeros(max_predictions_per_seq, np.int32)
    out_ids = np.zeros(max_predictions_per_seq, np.int32)
    out_w = np.zeros(max_predictions_per_seq, np.float32)
    out_pos[:k], out_ids[:k], out_w[:k] = positions, labels, 1.0
    return masked, out_pos, out_ids, out_w


def _random_ids(rng, n: int, vocab_size: int, exclude) -> np.ndarray:
    exclude = np.asarray(sorted(set(int(i) for i in exclude)), np.int64)
    if len(exclude) >= vocab_size:
        raise ValueError(f"random_exclude_ids excludes all {vocab_size} vocabulary ids")
    # Draw from the allowed ids directly: rank r among allowed -> id (no rejection loop).
    r = rng.integers(0, vocab_size - len(exclude), n)
    if len(exclude):
        # id = r + number of excluded ids <= id; solve by shifting past each excluded id in order.
        for e in exclude:
            r = r + (r >= e)
    return r.astype(np.int32)


# --------------------------------------------------------------------------- the grain pipeline


class _MaskAndPad(grain.transforms.MapWithIndex):
    """Dynamic masking + padding; element ``i`` of the repeated dataset is in epoch ``i // n``."""

    def __init__(self, *, vocab: VocabInfo, num_instances: int, max_seq_length: int,
                 max_predictions_per_seq: int, masked_lm_prob: float, whole_word: bool,
                 nsp: bool, seed: int, process_index: int, pack: bool = False):
        self.vocab = vocab
        self.pack = pack
        self.num_instances = num_instances
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.masked_lm_prob = masked_lm_prob
        self.whole_word = whole_word
        self.nsp = nsp
        self.seed = seed
        self.process_index = process_index
        self._is_special = np.zeros(vocab.vocab_size, bool)
        self._is_special[list(vocab.special_ids)] = True

    def map_with_index(self, index: int, element: dict[str, Any]) -> dict[str, np.ndarray]:
        epoch = index // self.num_instances
        rng = np.random.default_rng(
            [self.seed, _STREAM_MASKS, self.process_index, epoch, element["index"]]
        )
        tokens = element["tokens"]
        v = self.vocab
        word_starts = v.word_starts[tokens] if v.word_starts is not None else None
        masked, pos, ids, w = mask_tokens(
            tokens,
            self._is_special[tokens],
            word_starts if self.whole_word else None,
            rng,
            vocab_size=v.vocab_size,
            mask_id=v.mask_id,
            masked_lm_prob=self.masked_lm_prob,
            max_predictions_per_seq=self.max_predictions_per_seq,
            whole_word=self.whole_word,
            random_exclude_ids=v.special_ids,
        )
        n, t = len(tokens), self.max_seq_length
        if self.pack:  # unpadded: tokens and predictions as long as they are (for the packer)
            real = w > 0
            types = (np.arange(n) >= element["num_type0"]).astype(np.int32)
            return {"input_word_ids": masked.astype(np.int32), "input_type_ids": types,
                    "masked_lm_positions": pos[real].astype(np.int32),
                    "masked_lm_ids": ids[real].astype(np.int32)}
        word_ids = np.full(t, v.pad_id, np.int32)
        word_ids[:n] = masked
        mask = np.zeros(t, np.int32)
        mask[:n] = 1
        types = np.zeros(t, np.int32)
        types[element["num_type0"] : n] = 1
        out = {
            "input_word_ids": word_ids,
            "input_mask": mask,
            "input_type_ids": types,
            "masked_lm_positions": pos,
            "masked_lm_ids": ids,
            "masked_lm_weights": w,
        }
        if self.nsp:
            out["next_sentence_labels"] = np.int32(element["is_random_next"])
        return out


def tokenize_documents(
    documents: Iterable[Sequence[str]], tokenizer, *, batch_size: int = 4096
) -> list[list[list[int]]]:
    """Sentences → token ids with ``tokenizer.encode_batch``, ``batch_size`` sentences a call.

    Empty sentences (no ids) and empty documents are dropped, as google does.
    """
    docs = [list(d) for d in documents]
    flat = [s for d in docs for s in d]
    ids: list[list[int]] = []
    for start in range(0, len(flat), batch_size):
        ids.extend(list(x) for x in tokenizer.encode_batch(flat[start : start + batch_size]))
    out, k = [], 0
    for d in docs:
        doc = [s for s in ids[k : k + len(d)] if s]
        k += len(d)
        if doc:
            out.append(doc)
    return out


def build_instances(
    documents: Sequence[Sequence[Sequence[int]]],
    vocab: VocabInfo,
    *,
    max_seq_length: int = MAX_SEQ_LENGTH,
    short_seq_prob: float = SHORT_SEQ_PROB,
    nsp: bool = True,
    dupe_factor: int = DUPE_FACTOR,
    seed: int = 12345,
    process_index: int = 0,
    cross_documents: bool = True,
) -> InstanceStore:
    """``dupe_factor`` passes of :func:`create_instances`, each with its own derived seed."""
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor={dupe_factor}: expected >= 1")
    stores = [
        create_instances(
            documents,
            cls_id=vocab.cls_id,
            sep_id=vocab.sep_id,
            max_seq_length=max_seq_length,
            short_seq_prob=short_seq_prob,
            nsp=nsp,
            rng=np.random.default_rng([seed, _STREAM_INSTANCES, process_index, dupe]),
            cross_documents=cross_documents,
        )
        for dupe in range(dupe_factor)
    ]
    return InstanceStore.concatenate(stores)


def make_pretraining_dataset(
    documents: Sequence[Sequence[Sequence[int]]] | str,
    tokenizer=None,
    *,
    batch_size: int,
    max_seq_length: int = MAX_SEQ_LENGTH,
    max_predictions_per_seq: int = MAX_PREDICTIONS_PER_SEQ,
    masked_lm_prob: float = MASKED_LM_PROB,
    short_seq_prob: float = SHORT_SEQ_PROB,
    nsp: bool = True,
    whole_word_masking: bool = False,
    dupe_factor: int = DUPE_FACTOR,
    seed: int = 12345,
    shuffle: bool = True,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    drop_remainder: bool = True,
    pack: bool = False,
    cross_documents: bool | None = None,
    read_options: grain.ReadOptions | None = None,
    source_kwargs: dict | None = None,
) -> grain.IterDataset:
    """A grain ``IterDataset`` of masked pre-training batches for this host.

    Args:
      documents: the whole corpus as token ids (``documents[d][s]`` = ids of sentence s of
        document d, no special tokens), or a source spec string (see
        :mod:`distill.data.sources`), which is read (this host's shard only) and tokenized.
      tokenizer: a ``flaxbert.tokenization`` Tokenizer or a :class:`VocabInfo` (ids only; enough
        for id documents).
      batch_size: per host.
      process_index, process_count: host sharding by document,
        ``documents[process_index::process_count]``. Instances and masks use seeds folded with
        ``process_index``. Hosts can hold different numbers of instances: train by steps
        (``num_epochs=None``, the default) so every host always has a next batch.
      num_epochs: None repeats forever; each epoch is reshuffled and re-masked.
      drop_remainder: drop a last partial batch (only reachable with finite ``num_epochs``).
      pack: several instances per row (needs ``nsp=False``): ``input_mask`` then holds segment
        numbers 1, 2, ... (0 = padding) and ``input_positions`` the position within each segment;
        shapes are those of padded batches.
      cross_documents: without NSP, whether an instance may run on into the next document
        (FULL-SENTENCES) or ends with its own (DOC-SENTENCES). Default: ``not pack`` — packing
        fills rows with whole documents instead.
      read_options: grain ``ReadOptions`` for ``to_iter_dataset`` (default 2 threads, 8 batches
        prefetched; with ``pack``, 64 instances, which packing takes one at a time). For more throughput use processes: ``ds.mp_prefetch(...)``
        (grain needs absl flags parsed, i.e. run under ``absl.app.run``).
      source_kwargs: extra arguments for :func:`distill.data.sources.read_documents` when
        ``documents`` is a spec (``text_field``, ``sentences_per_document``, ...).
      The rest: as in google's ``create_pretraining_data.py`` (see :func:`create_instances`,
      :func:`mask_tokens`).

    Returns:
      An ``IterDataset``; ``iter(ds)`` gives a checkpointable ``DatasetIterator``
      (``get_state``/``set_state``, or ``grain.checkpoint.CheckpointSave/Restore`` with orbax)
      whose batches are dicts of numpy arrays: ``input_word_ids``, ``input_mask``,
      ``input_type_ids`` [B, T] int32; ``masked_lm_positions``, ``masked_lm_ids`` [B, P] int32;
      ``masked_lm_weights`` [B, P] float32; with ``nsp``, ``next_sentence_labels`` [B] int32
      (1 = B is a random next segment, as in BERT).
    """
    sources._check_shard(process_index, process_count)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected >= 1")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs={num_epochs}: expected >= 1 or None (repeat forever)")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed}: expected an integer in [0, 2**32)")
    if whole_word_masking and isinstance(tokenizer, VocabInfo) and tokenizer.word_starts is None:
        raise ValueError(
            "whole_word_masking=True needs word starts: VocabInfo.word_starts is None"
        )
    if isinstance(documents, str) and not hasattr(tokenizer, "encode_batch"):
        raise ValueError(
            f"documents={documents!r} is a source spec, so tokenizer must be a flaxbert "
            f"Tokenizer (with encode_batch), got {type(tokenizer).__name__}"
        )
    if pack and nsp:
        raise ValueError("pack=True needs nsp=False: next-sentence prediction reads one [CLS] per row")
    vocab = _vocab_info(tokenizer)
    if isinstance(documents, str):
        docs = sources.read_documents(
            documents, process_index=process_index, process_count=process_count,
            **(source_kwargs or {}),
        )
        shard_docs = tokenize_documents(docs, tokenizer)
        if not shard_docs:
            raise ValueError(f"source {documents!r} tokenized to no ids (every sentence is empty)")
    else:
        _check_documents(documents)
        shard_docs = list(sources.shard(documents, process_index, process_count))
        if not shard_docs:
            raise ValueError(
                f"documents: shard {process_index} of {process_count} is empty "
                f"({len(documents)} documents in all)"
            )
    store = build_instances(
        shard_docs,
        vocab,
        max_seq_length=max_seq_length,
        short_seq_prob=short_seq_prob,
        nsp=nsp,
        dupe_factor=dupe_factor,
        seed=seed,
        process_index=process_index,
        cross_documents=not pack if cross_documents is None else cross_documents,
    )
    ds = grain.MapDataset.source(store)
    if shuffle:
        shuffle_seed = int(
            np.random.default_rng([seed, _STREAM_SHUFFLE, process_index]).integers(2**32)
        )
        ds = ds.shuffle(seed=shuffle_seed)
    ds = ds.repeat(num_epochs)
    ds = ds.map_with_index(
        _MaskAndPad(
            vocab=vocab,
            num_instances=len(store),
            max_seq_length=max_seq_length,
            max_predictions_per_seq=max_predictions_per_seq,
            masked_lm_prob=masked_lm_prob,
            whole_word=whole_word_masking,
            nsp=nsp,
            seed=seed,
            process_index=process_index,
            pack=pack,
        )
    )
    # A couple of threads overlap batch production with the train step; more only fight over the
    # GIL (measured: 16 threads halve throughput on 2 cores). grain's prefetch rescans its whole
    # buffer for every element it hands out, so whole batches are prefetched where they can be
    # (measured on 2 cores behind a 50 ms step: 13.8 → 7 ms of CPU per batch of 32 rows); packing
    # needs single instances, so there a small buffer keeps the rescans short (≈ 38 → 28 ms).
    if not pack:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        return ds.to_iter_dataset(read_options or grain.ReadOptions(num_threads=2,
                                                                    prefetch_buffer_size=8))
    ds = ds.to_iter_dataset(read_options or grain.ReadOptions(num_threads=2, prefetch_buffer_size=64))
    # A row closes when its tokens or its masked predictions would overflow, so packed rows
    # have the padded batches' shapes: [B, max_seq_length] and [B, max_predictions_per_seq].
    lengths = {"input_word_ids": max_seq_length, "input_type_ids": max_seq_length,
               "masked_lm_positions": max_predictions_per_seq,
               "masked_lm_ids": max_predictions_per_seq}
    ds = grain.experimental.FirstFitPackIterDataset(
        ds, length_struct=lengths, num_packing_bins=batch_size, seed=seed,
        max_sequences_per_bin=MAX_SEGMENTS_PER_ROW)
    ds = ds.map(functools.partial(_packed_row, pad_id=vocab.pad_id))
    return ds.batch(batch_size, drop_remainder=drop_remainder)


# Packing (RoBERTa-style MLM without NSP): short instances share a row; attention stays within a
# segment (flaxbert.bert.attention_mask) and positions restart in each one, so a packed row gives
# each instance exactly the outputs it would get alone, with less padding computed.
MAX_SEGMENTS_PER_ROW = 8


def _packed_row(row: dict[str, np.ndarray], *, pad_id: int) -> dict[str, np.ndarray]:
    """grain's packed features → the model's batch: segment numbers as `input_mask`,
    `input_positions`, and each prediction's position moved by its segment's start."""
    segments = row["input_word_ids_segment_ids"].astype(np.int32)
    starts = np.zeros(MAX_SEGMENTS_PER_ROW + 1, np.int32)
    numbers, first = np.unique(segments, return_index=True)
    starts[numbers] = first
    owner = row["masked_lm_positions_segment_ids"].astype(np.int32)
    real = owner > 0
    positions = np.where(real, row["masked_lm_positions"] + starts[owner], 0).astype(np.int32)
    return {"input_word_ids": np.where(segments > 0, row["input_word_ids"], pad_id).astype(np.int32),
            "input_mask": segments,
            "input_type_ids": row["input_type_ids"].astype(np.int32),
            "input_positions": row["input_word_ids_positions"].astype(np.int32),
            "masked_lm_positions": positions,
            "masked_lm_ids": np.where(real, row["masked_lm_ids"], 0).astype(np.int32),
            "masked_lm_weights": real.astype(np.float32)}


def text_to_pretraining_dataset(spec: str, tokenizer, **kwargs) -> grain.IterDataset:
    """Spec → documents (this host's shard) → ids, batched → :func:`make_pretraining_dataset`.

    Keyword arguments meant for the source (``text_field``, ``sentence_split``,
    ``sentences_per_document``, ``split``, ``tfds_data_dir``) are routed to it; the rest go to
    the dataset.
    """
    if not isinstance(spec, str):
        raise ValueError(f"spec={spec!r}: expected a source spec string such as 'text:PATH'")
    source_keys = ("text_field", "sentence_split", "sentences_per_document", "split",
                   "tfds_data_dir")
    source_kwargs = {k: kwargs.pop(k) for k in source_keys if k in kwargs}
    return make_pretraining_dataset(spec, tokenizer, source_kwargs=source_kwargs, **kwargs)

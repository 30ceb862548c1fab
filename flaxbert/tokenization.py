"""Tokenizers (WordPiece, SentencePiece) and the TF Hub BERT preprocessor (trim + pack).

WordPiece runs on HF's Rust `tokenizers` with BERT's basic tokenizer (BertNormalizer +
BertPreTokenizer), so ids equal google-research/bert's and `transformers.BertTokenizer`'s;
SentencePiece runs on `sentencepiece` with ALBERT's special-token layout. Both give the same
`Tokenizer` interface; `Preprocessor` turns raw text into the `input_word_ids` / `input_mask` /
`input_type_ids` arrays of TF Hub's `bert_en_uncased_preprocess`:

    >>> tok = load_tokenizer("path/to/all-MiniLM-L6-v2")
    >>> batch = Preprocessor(tok, seq_length=16)(["a sentence"], ["its pair"])
    >>> batch["input_word_ids"].shape
    (1, 16)
"""

from __future__ import annotations

import abc
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
from tokenizers import Tokenizer as _RustTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import WordPiece as _WordPieceModel

from flaxbert.textfiles import read_utf8

CONFIG_FILE = "tokenizer_config.json"
VOCAB_FILE = "vocab.txt"
SPM_FILE = "spiece.model"
TOKENIZER_JSON = "tokenizer.json"

# BERT's specials, in the order train_wordpiece writes them ([PAD] = 0 as in google's vocabs).
BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# ALBERT's spiece.model layout: <pad>=0, <unk>=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPM_SPECIALS = {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


class Tokenizer(abc.ABC):
    """Common interface of `WordPieceTokenizer` and `SentencePieceTokenizer`.

    Attributes: `vocab_size`, `cls_id`, `sep_id`, `pad_id`, `mask_id`, `unk_id`, `special_ids`
    (a frozenset of those ids), `lowercase`. `encode*` never adds [CLS]/[SEP]: packing does.
    """

    vocab_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    unk_id: int
    special_ids: frozenset[int]
    lowercase: bool
    _word_start: np.ndarray  # bool [vocab_size], per-id answer of word_start_mask

    def _set_specials(self, ids: dict[str, int]) -> None:
        self.pad_id, self.unk_id = ids["pad"], ids["unk"]
        self.cls_id, self.sep_id, self.mask_id = ids["cls"], ids["sep"], ids["mask"]
        self.special_ids = frozenset(ids.values())

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[str]:
        """The pieces of `text` (no [CLS]/[SEP])."""

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """The piece ids of `text` (no [CLS]/[SEP])."""

    @abc.abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` over many texts at once, multi-threaded in native code."""

    @abc.abstractmethod
    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Piece ids and, per piece, `(start, end)` character offsets into `text`.

        Offsets cover the piece's own characters (never the whitespace before it), so
        `text[start:end]` is the span a SQuAD answer is mapped to.
        """

    @abc.abstractmethod
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`; `skip_special_tokens` drops [CLS]/[SEP]/[PAD]/[MASK]/[UNK]."""

    @abc.abstractmethod
    def token_to_id(self, token: str) -> int:
        """Id of `token`; ValueError if it is not in the vocabulary."""

    @abc.abstractmethod
    def id_to_token(self, i: int) -> str:
        """Token of id `i`; ValueError if out of range."""

    @abc.abstractmethod
    def save(self, directory: str | os.PathLike) -> None:
        """Writes the vocabulary/model and `tokenizer_config.json` into `directory`."""

    def word_start_mask(self, ids: Sequence[int]) -> np.ndarray:
        """Bool array, True where a piece starts a new word (for whole-word masking).

        WordPiece: the piece does not start with '##'. SentencePiece: it starts with '▁'.
        Special tokens count as words of their own.
        """
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"word_start_mask: ids must lie in [0, {self.vocab_size}), got "
                             f"min {arr.min()} max {arr.max()}")
        return self._word_start[arr]

    def _check_id(self, i: int) -> int:
        if not 0 <= int(i) < self.vocab_size:
            raise ValueError(f"id {i} is outside the vocabulary [0, {self.vocab_size})")
        return int(i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"


# --------------------------------------------------------------------------------------------
# WordPiece


def _read_vocab(vocab_file: Path) -> list[str]:
    if not vocab_file.is_file():
        raise FileNotFoundError(f"vocabulary file {vocab_file} does not exist")
    text = read_utf8(vocab_file, "vocabulary file")
    # Split on '\n' only: str.splitlines() would also split on U+2028, U+0085 etc., which can
    # be tokens in real vocabularies.
    tokens = [line.rstrip("\r") for line in text.split("\n")]
    if tokens and tokens[-1] == "":
        tokens.pop()
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in seen:
            raise ValueError(f"{vocab_file}: token {tok!r} appears twice (lines {seen[tok] + 1} "
                             f"and {i + 1}); each line must hold a distinct token")
        seen[tok] = i
    if not tokens:
        raise ValueError(f"{vocab_file} is empty; expected one WordPiece token per line")
    return tokens


def _find_specials(vocab: dict[str, int], names: dict[str, str], source: str) -> dict[str, int]:
    missing = [tok for tok in names.values() if tok not in vocab]
    if missing:
        raise ValueError(f"{source}: the vocabulary lacks the special token(s) {missing}; "
                         f"it must contain {sorted(names.values())}")
    return {key: vocab[tok] for key, tok in names.items()}


def _is_cased_token(tok: str) -> bool:
    return tok != tok.lower()


class WordPieceTokenizer(Tokenizer):
    """BERT WordPiece: basic tokenizer (clean, CJK split, optional lower-case + accent strip,
    whitespace/punctuation split) then greedy longest-match-first WordPiece, on Rust."""

    def __init__(self, tokenizer: _RustTokenizer, *, lowercase: bool, strip_accents: bool | None,
                 tokenize_chinese_chars: bool, source: str):
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tok = tokenizer
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._id_to_token = [""] * self.vocab_size
        for tok, i in vocab.items():
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{source}: token {tok!r} has id {i}, outside [0, "
                                 f"{self.vocab_size}); ids must be contiguous from 0")
            self._id_to_token[i] = tok
        self._set_specials(_find_specials(vocab, BERT_SPECIALS, source))
        self._word_start = np.array([not t.startswith("##") for t in self._id_to_token])

    @classmethod
    def from_vocab(cls, vocab_file: str | os.PathLike, lowercase: bool = True,
                   strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True) -> WordPieceTokenizer:
        """A BERT tokenizer over `vocab_file` (one token per line, id = line number).

        `lowercase=True` (uncased) also strips accents unless `strip_accents` says otherwise;
        `lowercase=False` (cased) does neither. `tokenize_chinese_chars` splits CJK ideographs
        into single characters, as google's BasicTokenizer does.
        """
        vocab_file = Path(vocab_file)
        tokens = _read_vocab(vocab_file)
        vocab = {tok: i for i, tok in enumerate(tokens)}
        _find_specials(vocab, BERT_SPECIALS, str(vocab_file))
        tok = _RustTokenizer(_WordPieceModel(vocab, unk_token=BERT_SPECIALS["unk"],
                                             max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents, lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        # Registering the specials makes "[MASK]" in raw text one token (as in transformers).
        tok.add_special_tokens(list(BERT_SPECIALS.values()))
        return cls(tok, lowercase=lowercase, strip_accents=strip_accents,
                   tokenize_chinese_chars=tokenize_chinese_chars, source=str(vocab_file))

    @classmethod
    def from_tokenizer_json(cls, path: str | os.PathLike,
                            lowercase: bool | None = None) -> WordPieceTokenizer:
        """A tokenizer from HF's `tokenizer.json` (WordPiece model only).

        Padding and truncation stored in the file are switched off; `lowercase`, when given,
        overrides the file's BertNormalizer setting.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist")
        data = json.loads(path.read_text(encoding="utf-8"))
        model_type = (data.get("model") or {}).get("type")
        if model_type != "WordPiece":
            raise ValueError(f"{path}: model.type is {model_type!r}; only 'WordPiece' "
                             f"tokenizer.json files are supported (use a *.model file for "
                             f"SentencePiece)")
        norm = data.get("normalizer") or {}
        if norm.get("type") != "BertNormalizer":
            raise ValueError(f"{path}: normalizer.type is {norm.get('type')!r}; expected "
                             f"'BertNormalizer' (BERT's basic tokenizer)")
        if lowercase is not None:
            norm["lowercase"] = lowercase
        tok = _RustTokenizer.from_str(json.dumps(data))
        return cls(tok, lowercase=bool(norm.get("lowercase", True)),
                   strip_accents=norm.get("strip_accents"),
                   tokenize_chinese_chars=bool(norm.get("handle_chinese_chars", True)),
                   source=str(path))

    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # encode_batch_fast skips offset tracking: the pre-training pipeline needs ids only.
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return enc.ids, [tuple(o) for o in enc.offsets]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode([self._check_id(i) for i in ids],
                                skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return i

    def id_to_token(self, i: int) -> str:
        return self._id_to_token[self._check_id(i)]

    def save(self, directory: str | os.PathLike) -> None:
        """Writes `vocab.txt` and a `tokenizer_config.json` that transformers also reads."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCAB_FILE).write_text("".join(t + "\n" for t in self._id_to_token),
                                            encoding="utf-8")
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase,
                  "strip_accents": self.strip_accents,
                  "tokenize_chinese_chars": self.tokenize_chinese_chars,
                  **{f"{k}_token": v for k, v in BERT_SPECIALS.items()}}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# SentencePiece


def _lower_keep_length(text: str) -> str:
    """`text.lower()`, except characters whose lower case is longer (e.g. 'İ') stay as they
    are, so character offsets into the lowered text are offsets into `text`."""
    low = text.lower()
    if len(low) == len(text):  # lower() never shortens, so equal length means aligned
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece (unigram or BPE) with ALBERT's special tokens.

    The model must hold [CLS], [SEP], [MASK] and a pad and unk piece (`<pad>`/`[PAD]`,
    `<unk>`/`[UNK]`). `lowercase` lower-cases text in Python before encoding, as ALBERT does.
    """

    def __init__(self, model_proto: bytes, lowercase: bool = False, source: str = "<memory>"):
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{source} is not a valid SentencePiece model: {e}") from e
        self._proto = model_proto
        self.lowercase = lowercase
        self.vocab_size = self._sp.get_piece_size()
        pieces = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
        vocab = {p: i for i, p in enumerate(pieces)}
        names = dict(SPM_SPECIALS)
        for key, alt in (("pad", "[PAD]"), ("unk", "[UNK]")):
            if names[key] not in vocab and alt in vocab:
                names[key] = alt
        self._set_specials(_find_specials(vocab, names, source))
        # Pieces the model treats as control symbols (e.g. <s>, </s>) are specials too.
        controls = {i for i in range(self.vocab_size) if self._sp.is_control(i)}
        self.special_ids = self.special_ids | frozenset(controls)
        self._word_start = np.array([p.startswith("▁") for p in pieces])
        self._word_start[list(self.special_ids)] = True

    @classmethod
    def from_model(cls, model_file: str | os.PathLike,
                   lowercase: bool = False) -> SentencePieceTokenizer:
        """Loads a `*.model` file (e.g. ALBERT's `spiece.model`)."""
        model_file = Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"SentencePiece model {model_file} does not exist")
        return cls(model_file.read_bytes(), lowercase=lowercase, source=str(model_file))

    def _prep(self, text: str) -> str:
        return _lower_keep_length(text) if self.lowercase else text

    def tokenize(self, text: str) -> list[str]:
        return self._sp.encode(self._prep(text), out_type=str)

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(self._prep(text), out_type=int)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode([self._prep(t) for t in texts], out_type=int, num_threads=-1)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        out = self._sp.encode(self._prep(text), out_type="offset_mapping")
        offsets = []
        for start, end in out["offsets"]:
            # sentencepiece counts the whitespace before a '▁' piece as part of it; drop it.
            while start < end and text[start].isspace():
                start += 1
            offsets.append((start, end))
        return list(out["ids"]), offsets

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = [self._check_id(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        return self._sp.decode(ids)

    def token_to_id(self, token: str) -> int:
        i = self._sp.piece_to_id(token)
        # piece_to_id answers unk_id for unknown pieces; only the unk piece itself maps there.
        if i == self._sp.unk_id() and token != self._sp.id_to_piece(i):
            raise ValueError(f"token {token!r} is not in the vocabulary")
        return i

    def id_to_token(self, i: int) -> str:
        return self._sp.id_to_piece(self._check_id(i))

    def save(self, directory: str | os.PathLike) -> None:
        """Writes `spiece.model` and `tokenizer_config.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SPM_FILE).write_bytes(self._proto)
        config = {"tokenizer_class": "AlbertTokenizer", "do_lower_case": self.lowercase,
                  "keep_accents": True,
                  **{f"{k}_token": self.id_to_token(getattr(self, f"{k}_id"))
                     for k in SPM_SPECIALS}}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Loading


def _read_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def _spm_files(directory: Path) -> list[Path]:
    if (directory / SPM_FILE).is_file():
        return [directory / SPM_FILE]
    return sorted(directory.glob("*.model"))


def load_tokenizer(path: str | os.PathLike, lowercase: bool | None = None) -> Tokenizer:
    """Loads a tokenizer from a file or from a directory holding one.

    Files: `*.txt` (WordPiece vocabulary), `*.json` (HF tokenizer.json, WordPiece), `*.model`
    (SentencePiece). A directory is searched in the order vocab.txt, spiece.model (or exactly
    one *.model), tokenizer.json. `lowercase=None` infers: `do_lower_case` from a
    `tokenizer_config.json` beside the file, else the tokenizer.json normalizer; for a bare
    vocab.txt, True when no token has upper-case letters; for SentencePiece, False.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / VOCAB_FILE] if (path / VOCAB_FILE).is_file() else []
        if not candidates:
            models = _spm_files(path)
            if len(models) > 1:
                raise ValueError(f"{path} holds several SentencePiece models "
                                 f"{[m.name for m in models]}; pass the file itself")
            candidates = models
        if not candidates and (path / TOKENIZER_JSON).is_file():
            candidates = [path / TOKENIZER_JSON]
        if not candidates:
            raise FileNotFoundError(f"no tokenizer in {path}: looked for {VOCAB_FILE}, "
                                    f"{SPM_FILE} (or another *.model) and {TOKENIZER_JSON}")
        path = candidates[0]
    elif not path.is_file():
        raise FileNotFoundError(f"tokenizer path {path} does not exist; expected a vocab.txt, "
                                f"tokenizer.json or *.model file, or a directory holding one")
    config = _read_config(path.parent)
    if lowercase is None and "do_lower_case" in config:
        lowercase = bool(config["do_lower_case"])
    if path.suffix == ".model":
        return SentencePieceTokenizer.from_model(path, lowercase=bool(lowercase))
    if path.suffix == ".json":
        return WordPieceTokenizer.from_tokenizer_json(path, lowercase=lowercase)
    if lowercase is None:
        lowercase = not any(_is_cased_token(t) for t in _read_vocab(path)
                            if not (t.startswith("[") and t.endswith("]")))
    return WordPieceTokenizer.from_vocab(
        path, lowercase=lowercase, strip_accents=config.get("strip_accents"),
        tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)))


# --------------------------------------------------------------------------------------------
# Trimming and packing (TF Hub bert_pack_inputs)


def round_robin_trim(segments: list[list[int]], budget: int) -> list[list[int]]:
    """Keeps a prefix of each segment so their total length is at most `budget`.

    tf_text.RoundRobinTrimmer: the budget is handed out one token at a time to each segment
    in turn (left to right, repeatedly); a segment that runs out leaves its share to the
    others. E.g. lengths [3, 4, 2] with budget 5 keep [2, 2, 1]; budget 1 keeps [1, 0, 0].
    Computed in closed form as tensorflow_text/core/kernels/round_robin_trimmer.h does:
    fill the short segments whole, split the rest evenly, hand the remainder out in order.
    """
    if budget < 0:
        raise ValueError(f"round_robin_trim: budget must be >= 0, got {budget}")
    sizes = [len(s) for s in segments]
    used = list(sizes)
    if sum(sizes) > budget:
        left, open_ = budget, len(sizes)
        order = sorted(range(len(sizes)), key=sizes.__getitem__)
        filled = 0
        for i in order:  # fill whole, smallest first, while an even share would cover it
            if sizes[i] * open_ > left:
                break
            left -= sizes[i]
            open_ -= 1
            filled += 1
        share = left // open_
        for i in order[filled:]:
            used[i] = share
            left -= share
        for i in range(len(sizes)):  # remainder (< open_) in segment order
            if left == 0:
                break
            if used[i] < sizes[i]:
                used[i] += 1
                left -= 1
    return [list(s[:n]) for s, n in zip(segments, used)]


def pack_inputs(segments: Sequence[Sequence[Sequence[int]]], seq_length: int, cls_id: int,
                sep_id: int, pad_id: int = 0) -> dict[str, np.ndarray]:
    """TF Hub `bert_pack_inputs`: `[CLS] a [SEP] b [SEP] ...`, trimmed and padded.

    Args:
      segments: `segments[k][i]` = piece ids of segment k of example i (no specials).
      seq_length: output length; segments are trimmed round-robin to
        `seq_length - (num_segments + 1)` tokens in total, keeping each one's prefix.
    Returns:
      int32 arrays of shape [batch, seq_length]: `input_word_ids`, `input_mask` (1 on real
      tokens), `input_type_ids` (k on segment k and its [SEP], 0 on [CLS] and padding).
    """
    num_segments = len(segments)
    if num_segments == 0:
        raise ValueError("pack_inputs: need at least one segment")
    batch = len(segments[0])
    for k, seg in enumerate(segments):
        if len(seg) != batch:
            raise ValueError(f"pack_inputs: segment 0 has {batch} examples but segment {k} has "
                             f"{len(seg)}; every segment needs one entry per example")
    budget = seq_length - (num_segments + 1)
    if budget < 0:
        raise ValueError(f"pack_inputs: seq_length={seq_length} cannot hold [CLS] and "
                         f"{num_segments} [SEP]; use seq_length >= {num_segments + 1}")
    word_ids = np.full((batch, seq_length), pad_id, np.int32)
    mask = np.zeros((batch, seq_length), np.int32)
    type_ids = np.zeros((batch, seq_length), np.int32)
    for i in range(batch):
        trimmed = round_robin_trim([list(seg[i]) for seg in segments], budget)
        word_ids[i, 0] = cls_id
        pos = 1
        for k, piece_ids in enumerate(trimmed):
            n = len(piece_ids)
            word_ids[i, pos:pos + n] = piece_ids
            word_ids[i, pos + n] = sep_id
            type_ids[i, pos:pos + n + 1] = k
            pos += n + 1
        mask[i, :pos] = 1
    return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}


class Preprocessor:
    """Raw text → packed BERT inputs, like TF Hub's `bert_*_preprocess` model.

        >>> pre = Preprocessor(tokenizer, seq_length=128)
        >>> pre(["a premise", "another"], ["its hypothesis", "..."])["input_word_ids"].shape
        (2, 128)
    """

    def __init__(self, tokenizer: Tokenizer, seq_length: int = 128):
        if seq_length < 2:
            raise ValueError(f"Preprocessor: seq_length must be >= 2 ([CLS] and [SEP]), "
                             f"got {seq_length}")
        self.tokenizer = tokenizer
        self.seq_length = seq_length

    def __call__(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None,
                 seq_length: int | None = None) -> dict[str, np.ndarray]:
        """Packs single texts (`texts_b=None`) or pairs; returns int32 [batch, seq_length]."""
        # A bare string would otherwise be packed character by character.
        texts_a = [texts_a] if isinstance(texts_a, str) else list(texts_a)
        segments = [self.tokenizer.encode_batch(texts_a)]
        if texts_b is not None:
            texts_b = [texts_b] if isinstance(texts_b, str) else list(texts_b)
            if len(texts_b) != len(texts_a):
                raise ValueError(f"Preprocessor: {len(texts_a)} texts_a but {len(texts_b)} "
                                 f"texts_b; pairs need one of each")
            segments.append(self.tokenizer.encode_batch(texts_b))
        tok = self.tokenizer
        seq_length = self.seq_length if seq_length is None else seq_length
        return pack_inputs(segments, seq_length, tok.cls_id, tok.sep_id, tok.pad_id)


# --------------------------------------------------------------------------------------------
# Training


def train_wordpiece(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike,
                    lowercase: bool = True, min_frequency: int = 2) -> WordPieceTokenizer:
    """Learns a BERT WordPiece vocabulary with `tokenizers`' WordPiece trainer.

    Writes `out_dir/vocab.txt` ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then the learned
    pieces) and `tokenizer_config.json`; returns the tokenizer over it. The vocabulary can be
    smaller than `vocab_size` when the corpus has fewer distinct pieces.
    """
    if vocab_size <= len(BERT_SPECIALS):
        raise ValueError(f"train_wordpiece: vocab_size must exceed the {len(BERT_SPECIALS)} "
                         f"special tokens, got {vocab_size}")
    tok = _RustTokenizer(_WordPieceModel(unk_token=BERT_SPECIALS["unk"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(BERT_SPECIALS.values()),
                                        continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator(texts, trainer)
    vocab = tok.get_vocab()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = sorted(vocab, key=vocab.__getitem__)
    (out_dir / VOCAB_FILE).write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    result = WordPieceTokenizer.from_vocab(out_dir / VOCAB_FILE, lowercase=lowercase)
    result.save(out_dir)
    return result


def train_sentencepiece(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike,
                        model_type: str = "unigram",
                        lowercase: bool = False) -> SentencePieceTokenizer:
    """Learns a SentencePiece model (`unigram` or `bpe`) with ALBERT's specials.

    Writes `out_dir/spiece.model` (<pad>=0, <unk>=1, [CLS]=2, [SEP]=3, [MASK]=4; [CLS]/[SEP]/
    [MASK] are user symbols, so they are recognised in raw text) and `tokenizer_config.json`.
    Every character of the corpus is kept (character_coverage 1.0) and unseen ones fall back
    to UTF-8 byte pieces, so decoding is lossless up to NFKC and whitespace normalisation.
    Single-threaded, so the same corpus always gives the same model.
    """
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"train_sentencepiece: model_type must be 'unigram' or 'bpe', "
                         f"got {model_type!r}")
    prep = _lower_keep_length if lowercase else (lambda t: t)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=(prep(t) for t in texts), model_writer=model,
            vocab_size=vocab_size, model_type=model_type, character_coverage=1.0,
            byte_fallback=True, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
            pad_piece=SPM_SPECIALS["pad"], unk_piece=SPM_SPECIALS["unk"],
            user_defined_symbols=[SPM_SPECIALS[k] for k in ("cls", "sep", "mask")],
            num_threads=1, minloglevel=2)
    except RuntimeError as e:  # e.g. vocab_size below 256 byte pieces + characters + specials
        raise ValueError(f"train_sentencepiece(vocab_size={vocab_size}, "
                         f"model_type={model_type!r}) failed: {e}") from e
    result = SentencePieceTokenizer(model.getvalue(), lowercase=lowercase,
                                    source=f"{out_dir}/{SPM_FILE}")
    result.save(out_dir)
    return result

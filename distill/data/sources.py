"""Text sources for pre-training: every source yields *documents*, a document being a list of
sentence strings (the unit google-research/bert's ``create_pretraining_data.py`` works on).

Spec strings understood by :func:`read_documents` / :func:`iter_documents`:

==========================  ==================================================================
``text:PATH`` or ``PATH``   google-research format: one sentence per line, a blank line between
                            documents. PATH is a ``.txt`` file, a folder (its ``*.txt`` files,
                            sorted) or a glob (``data/wiki-*.txt``). Several comma-separated.
``jsonl:PATH`` or ``*.jsonl`` one JSON object per line; ``text_field`` (default ``"text"``) holds
                            a document, split into sentences by :func:`split_sentences`.
``vader:PATH``              the VADER ``*_GroundTruth.txt`` files (TSV ``id<TAB>rating<TAB>text``),
                            a folder, a file or a glob. Consecutive lines of one file are grouped
                            into pseudo-documents of ``sentences_per_document`` (default 8)
                            sentences, so NSP and multi-sentence segments have material.
``tfds:NAME[:SPLIT][#FIELD]`` a prepared TensorFlow Datasets corpus, e.g.
                            ``tfds:wikipedia/20230601.en:train[:99%]#text``; SPLIT and FIELD
                            default to the ``split`` and ``text_field`` arguments (``"train"``,
                            ``"text"``), the data folder to ``tfds_data_dir`` / ``$TFDS_DATA_DIR``
                            (see :mod:`distill.data.tfds_source`); each example's field is a
                            document, split by :func:`split_sentences` (default ``"both"``).
                            Needs the ``tfds`` extra (``pip install 'flaxbert[tfds]'``).
==========================  ==================================================================

Example::

    docs = read_documents("vader:/root/.cache/flaxbert/assets/vader", sentences_per_document=8)
    docs[0][:2]   # ['Somehow I was blessed ...', 'Yay. Another good phone interview.']

Host sharding is by document, ``documents[process_index::process_count]``: deterministic, the
shards of all hosts are disjoint and together cover the corpus. A TFDS corpus is sharded by
record (``records[process_index::process_count]``, so a host reads only its own records); a
record whose text holds no sentence is dropped after sharding.
"""

from __future__ import annotations

import glob as _glob
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from distill.data import tfds_source
from flaxbert.textfiles import utf8_lines

Document = list[str]

SENTENCE_SPLIT_MODES = ("auto", "lines", "regex", "both")

# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets) and whitespace.
# Deliberately simple: it will split after "e.g. " or "Mr. "; feed pre-split text (one sentence
# per line) where that matters.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+")


def split_sentences(text: str, mode: str = "auto") -> list[str]:
    """Splits a document's text into sentences (stripped, empty ones dropped).

    Modes: ``"lines"`` splits on line breaks; ``"regex"`` on sentence ends (``. ! ?`` followed by
    whitespace); ``"both"`` on line breaks and then on sentence ends within each line; ``"auto"``
    (default) uses ``"lines"`` when the text has a line break and ``"regex"`` otherwise.
    """
    if mode not in SENTENCE_SPLIT_MODES:
        raise ValueError(f"sentence_split={mode!r}: expected one of {SENTENCE_SPLIT_MODES}")
    if mode == "auto":
        mode = "lines" if ("\n" in text or "\r" in text) else "regex"
    pieces = text.splitlines() if mode in ("lines", "both") else [text]
    if mode in ("regex", "both"):
        pieces = [s for p in pieces for s in _split_regex(p)]
    return [p.strip() for p in pieces if p.strip()]


def _split_regex(text: str) -> list[str]:
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[start : m.start()] + m.group(0).strip())
        start = m.end()
    out.append(text[start:])
    return out


# --------------------------------------------------------------------------- path handling


def resolve_files(path_spec: str, *, suffix: str = ".txt", pattern: str = "*.txt") -> list[Path]:
    """Expands a comma-separated list of files, folders (their ``pattern`` files) and globs."""
    files: list[Path] = []
    for part in [p.strip() for p in str(path_spec).split(",") if p.strip()]:
        part = os.path.expanduser(part)
        if any(ch in part for ch in "*?["):
            matched = sorted(Path(p) for p in _glob.glob(part) if Path(p).is_file())
            if not matched:
                raise FileNotFoundError(f"glob {part!r} matched no files")
            files.extend(matched)
        elif Path(part).is_dir():
            matched = sorted(p for p in Path(part).glob(pattern) if p.is_file())
            if not matched:
                raise FileNotFoundError(f"folder {part!r} has no {pattern} files")
            files.extend(matched)
        elif Path(part).is_file():
            files.append(Path(part))
        else:
            raise FileNotFoundError(
                f"text source {part!r} does not exist "
                f"(expected a {suffix} file, a folder or a glob)"
            )
    if not files:
        raise FileNotFoundError(f"text source {path_spec!r} names no files")
    return files


# --------------------------------------------------------------------------- sources


def iter_text_documents(path_spec: str) -> Iterator[Document]:
    """google-research format: one sentence per line, blank lines between documents.

    Every file also ends the current document (documents never span files).
    """
    for path in resolve_files(path_spec):
        doc: Document = []
        for line in utf8_lines(path, "text file"):
            line = line.strip()
            if line:
                doc.append(line)
            elif doc:
                yield doc
                doc = []
        if doc:
            yield doc


def iter_jsonl_documents(
    path_spec: str, *, text_field: str = "text", sentence_split: str = "auto"
) -> Iterator[Document]:
    """JSON Lines: each record's ``text_field`` is one document, split by :func:`split_sentences`.

    Blank lines are skipped. A record that is not a JSON object, lacks the field or holds a
    non-string there raises ValueError naming the file and line.
    """
    if sentence_split not in SENTENCE_SPLIT_MODES:
        raise ValueError(
            f"sentence_split={sentence_split!r}: expected one of {SENTENCE_SPLIT_MODES}"
        )
    for path in resolve_files(path_spec, suffix=".jsonl", pattern="*.jsonl"):
        for lineno, line in enumerate(utf8_lines(path, "JSON Lines file"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(
                    f"{path}:{lineno}: record has no text field {text_field!r} (has {keys}); "
                    "set text_field= to the field holding the document text"
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise ValueError(
                    f"{path}:{lineno}: field {text_field!r} is {type(text).__name__}, "
                    "expected a string"
                )
            doc = split_sentences(text, sentence_split)
            if doc:
                yield doc


def iter_vader_documents(path_spec: str, *, sentences_per_document: int = 8) -> Iterator[Document]:
    """VADER ``*_GroundTruth.txt`` (TSV ``id<TAB>rating<TAB>text``, CRLF) as pseudo-documents.

    The sentences are independent snippets, so there are no real documents: consecutive lines of
    one file are grouped into pseudo-documents of ``sentences_per_document`` sentences (the last
    group of a file may be shorter). Neighbouring lines are usually from the same domain (movie
    reviews, tweets, ...), which is the best NSP material this corpus offers.
    """
    if int(sentences_per_document) < 1:
        raise ValueError(f"sentences_per_document={sentences_per_document}: expected >= 1")
    k = int(sentences_per_document)
    for path in resolve_files(path_spec, pattern="*_GroundTruth.txt"):
        doc: Document = []
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) < 3:
                    raise ValueError(
                        f"{path}:{lineno}: expected 'id<TAB>rating<TAB>text', got {line[:80]!r}"
                    )
                text = "\t".join(parts[2:]).strip()
                if not text:
                    continue
                doc.append(text)
                if len(doc) == k:
                    yield doc
                    doc = []
        if doc:
            yield doc


def iter_tfds_documents(
    target: str, *, split: str = "train", text_field: str = "text",
    sentence_split: str = "both", data_dir: str | None = None, process_index: int = 0,
    process_count: int = 1,
) -> Iterator[Document]:
    """A TFDS corpus, ``NAME[:SPLIT][#FIELD]`` (e.g. ``wikipedia/20230601.en``): each example's
    text field is a document, this host's records only (see the module docstring).

    Wikipedia articles keep one paragraph per line, hence the default ``sentence_split="both"``
    (lines, then sentence ends). Needs ``tensorflow_datasets`` (the ``tfds`` extra).
    """
    spec = tfds_source.parse_spec(target)
    if spec.fields is not None and len(spec.fields) != 1:
        raise ValueError(f"tfds:{target}: a text source reads one field, got {list(spec.fields)}")
    field = spec.fields[0] if spec.fields else text_field
    source = tfds_source.TfdsSplit(spec.dataset, spec.split or split, data_dir)
    for row in source.rows([field], process_index, process_count):
        text = row[field]
        if not isinstance(text, str):
            raise ValueError(f"tfds:{target}: field {field!r} holds {type(text).__name__}, "
                             f"expected text")
        doc = split_sentences(text, sentence_split)
        if doc:
            yield doc


# --------------------------------------------------------------------------- dispatch


def shard(items: Iterable, process_index: int = 0, process_count: int = 1) -> Iterator:
    """``items[process_index::process_count]`` for any iterable (deterministic host sharding)."""
    _check_shard(process_index, process_count)
    return itertools.islice(items, process_index, None, process_count)


def _check_shard(process_index: int, process_count: int) -> None:
    if int(process_count) < 1:
        raise ValueError(f"process_count={process_count}: expected >= 1")
    if not 0 <= int(process_index) < int(process_count):
        raise ValueError(
            f"process_index={process_index}: expected 0 <= process_index < "
            f"process_count={process_count}"
        )


def iter_documents(
    spec: str,
    *,
    text_field: str = "text",
    sentence_split: str | None = None,
    sentences_per_document: int = 8,
    split: str = "train",
    tfds_data_dir: str | None = None,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[Document]:
    """Streams the documents named by ``spec`` (see the module docstring), this host's shard only.

    ``sentence_split`` defaults to ``"auto"`` for JSONL and ``"both"`` for TFDS; ``split``,
    ``text_field`` and ``tfds_data_dir`` are a TFDS corpus's defaults where its spec names none.
    """
    _check_shard(process_index, process_count)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"source spec {spec!r}: expected a non-empty string such as 'text:PATH'")
    kind, target = parse_spec(spec)
    if kind == "text":
        docs = iter_text_documents(target)
    elif kind == "jsonl":
        docs = iter_jsonl_documents(
            target, text_field=text_field, sentence_split=sentence_split or "auto"
        )
    elif kind == "vader":
        docs = iter_vader_documents(target, sentences_per_document=sentences_per_document)
    else:  # sharded by record as it reads
        return iter_tfds_documents(
            target, split=split, text_field=text_field, sentence_split=sentence_split or "both",
            data_dir=tfds_data_dir, process_index=process_index, process_count=process_count,
        )
    return shard(docs, process_index, process_count)


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, target)``: the prefix (text, jsonl, vader, tfds) and the paths or dataset name."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("text", "jsonl", "vader", "tfds"):
        return kind, rest
    # no (known) prefix: infer from the path (keeps Windows drive letters working)
    return _infer_kind(spec), spec


def _infer_kind(spec: str) -> str:
    first = spec.split(",")[0].strip()
    if first.endswith((".jsonl", ".json")):
        return "jsonl"
    if first.endswith("_GroundTruth.txt"):
        return "vader"
    return "text"


def read_documents(spec: str, **kwargs) -> list[Document]:
    """Like :func:`iter_documents`, materialised; an empty corpus (or shard) raises ValueError."""
    docs = list(iter_documents(spec, **kwargs))
    if not docs:
        pi, pc = kwargs.get("process_index", 0), kwargs.get("process_count", 1)
        where = f" (shard {pi} of {pc})" if pc != 1 else ""
        raise ValueError(
            f"source {spec!r}{where} holds no non-empty documents (expected sentences of text)"
        )
    return docs

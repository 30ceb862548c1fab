"""Sentence(-pair) classification / regression data: GLUE TSVs, named-column files, VADER demo.

Everything here turns files into lists of :class:`Example` (text in, label id out); the
tokenizer and pipeline come later. Errors name the file, the 1-based line number, the column or
value and what was expected.

GLUE (the official download: ``download_glue_data.py`` of nyu-mll/GLUE-baselines, the files
google-research/bert's ``run_classifier.py`` and HF transformers v4
``data/processors/glue.py`` read):

=======  ==============  ================================================  =====================
task     folder          columns used (header names)                       labels (id order)
=======  ==============  ================================================  =====================
cola     CoLA            train/dev: NO header, 4 cols (source, label,      "0", "1"
                         original mark, sentence); test: index, sentence
sst2     SST-2           sentence, label; test: index, sentence            "0", "1"
mrpc     MRPC            Quality, #1 ID, #2 ID, #1 String, #2 String;      "0", "1"
                         test: index, #1 ID, #2 ID, #1 String, #2 String
stsb     STS-B           10 cols: sentence1 (7), sentence2 (8), score      None (float 0..5)
                         (9); test has 9 (no score)
qqp      QQP             id, qid1, qid2, question1, question2,             "0", "1"
                         is_duplicate; test: id, question1, question2
mnli     MNLI            sentence1 (8), sentence2 (9), gold_label (last:   "contradiction",
                         11 in train, 15 in dev); test: 10 cols            "entailment",
                                                                           "neutral"
qnli     QNLI            index, question, sentence, label                  "entailment",
                                                                           "not_entailment"
rte      RTE             index, sentence1, sentence2, label                "entailment",
                                                                           "not_entailment"
wnli     WNLI            index, sentence1, sentence2, label                "0", "1"
=======  ==============  ================================================  =====================

Columns are found by their header name (the CoLA train/dev files, which have no header, get
the names above by position), so a file of the wrong task or split fails on its header line.
Files are read as UTF-8 (a leading BOM is dropped: MRPC's header starts with one), lines split
on ``\\n`` with a trailing ``\\r`` removed, fields split on TAB with no quoting
(``csv.QUOTE_NONE``: quote characters are literal text, which the GLUE sentences need). Every
row must have exactly the header's number of fields, except in QQP, whose train split is known
to hold malformed rows (a question with an embedded newline; GLUE-baselines issue #5): QQP rows
with the wrong field count are skipped, counted and reported in one ``UserWarning``, as the HF
processors (IndexError → skip) and GLUE-baselines (any error → skip) do.

Label ids follow ``TaskSpec.labels``, which is google-research/bert's order (also HF
transformers' processors). **MNLI trap**: BERT orders MNLI as contradiction=0, entailment=1,
neutral=2; HF ``datasets`` "glue/mnli" uses entailment=0, neutral=1, contradiction=2, and
pretrained MNLI heads on the HF hub (roberta-large-mnli, bart-large-mnli, ...) use
contradiction=0, neutral=1, entailment=2 (read their ``config.json`` ``id2label``). To reuse a
foreign head, permute its logits with ``[foreign_labels.index(name) for name in spec.labels]``
-- never assume the orders agree. Likewise RTE/QNLI here are entailment=0, not_entailment=1.

Test splits carry no labels: their examples have ``label=None``.

**From TensorFlow Datasets**: a task named ``tfds:glue/<task>`` (``tfds:glue/mnli``, optionally
``tfds:glue/rte:2.0.0``) is the same task read from TFDS's prepared ``glue/<task>`` dataset
(:mod:`distill.data.tfds_source`; ``data_dir`` is then the TFDS data folder, '' for
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). TFDS's feature names
(``TaskSpec.tfds_features``: sentence1/sentence2, premise/hypothesis, question/sentence,
question1/question2, sentence) and its splits (dev → validation, dev_matched →
validation_matched, test_matched, ...) are mapped, its class names put in this module's label
order (``TaskSpec.tfds_labels``) and its -1 labels of the test splits become None. TFDS's GLUE
builder reads the same TSV files (MRPC excepted: it reads the MSR paraphrase files), numbering
the data rows from 0 (``idx``): the examples come in file order with the same texts and labels
as :func:`read_glue` on those files (so test predictions line up with the submission indices),
and the guid holds ``idx``.

Example::

    from distill.data import tasks
    dev = tasks.read_glue("mnli", "glue_data", "dev_matched")    # glue_data/MNLI/dev_matched.tsv
    spec = tasks.GLUE_TASKS["mnli"]
    spec.labels[dev[0].label]                                     # 'neutral', say
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.data import tfds_source

__all__ = [
    "Example",
    "TaskSpec",
    "GLUE_TASKS",
    "SENTIMENT",
    "num_labels",
    "get_task",
    "read_glue",
    "read_columns",
    "vader_sentiment",
    "vader_transfer_texts",
    "VADER_MOVIE_FILE",
    "VADER_TRANSFER_FILES",
]


@dataclass(frozen=True)
class Example:
    """One example. ``label`` is an index into ``TaskSpec.labels`` (classification), a float
    (regression), or None (unlabeled / test split)."""

    guid: str
    text_a: str
    text_b: str | None
    label: int | float | None


@dataclass(frozen=True)
class TaskSpec:
    """How one task's files look.

    Attributes:
        name: registry key (``"mnli"``).
        labels: label strings in id order (``labels[i]`` is the string of id ``i``); None for
            regression (STS-B).
        text_columns: header names of text_a and text_b (text_b None for single sentences).
        splits: split name -> file name inside the task folder.
        folder: the official GLUE folder name (``"MNLI"``).
        label_column: header name of the label (absent from test files).
        id_column: header name used in ``Example.guid``; None -> the 1-based line number.
        headerless_columns: names given by position to the columns of train/dev files that
            have no header row (only CoLA); test files always have a header.
        skip_malformed: skip (and count) rows whose field count differs from the header's.
        tfds_features: TFDS's feature names of text_a and text_b in its ``glue/<name>`` config.
        tfds_labels: TFDS's class names in the order of ``labels`` (TFDS names the 0/1 classes
            of the files: SST-2's "0" is its "negative"; MNLI's classes come in another order).
    """

    name: str
    labels: tuple[str, ...] | None
    text_columns: tuple[str, str | None]
    splits: dict[str, str] = field(hash=False)
    folder: str = ""
    label_column: str | None = "label"
    id_column: str | None = None
    headerless_columns: tuple[str, ...] | None = None
    skip_malformed: bool = False
    tfds_features: tuple[str, str | None] | None = None
    tfds_labels: tuple[str, ...] | None = None


def num_labels(spec: TaskSpec) -> int:
    """Output width of the task's head: number of classes, or 1 for regression."""
    return 1 if spec.labels is None else len(spec.labels)


_STD = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}

GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec(
        "cola", ("0", "1"), ("sentence", None), dict(_STD), "CoLA",
        label_column="label", id_column="index",
        headerless_columns=("source", "label", "original_label", "sentence"),
        tfds_features=("sentence", None), tfds_labels=("unacceptable", "acceptable"),
    ),
    "sst2": TaskSpec(
        "sst2", ("0", "1"), ("sentence", None), dict(_STD), "SST-2", id_column="index",
        tfds_features=("sentence", None), tfds_labels=("negative", "positive"),
    ),
    "mrpc": TaskSpec(
        "mrpc", ("0", "1"), ("#1 String", "#2 String"), dict(_STD), "MRPC",
        label_column="Quality", id_column="index",
        tfds_features=("sentence1", "sentence2"), tfds_labels=("not_equivalent", "equivalent"),
    ),
    "stsb": TaskSpec(
        "stsb", None, ("sentence1", "sentence2"), dict(_STD), "STS-B",
        label_column="score", id_column="index", tfds_features=("sentence1", "sentence2"),
    ),
    "qqp": TaskSpec(
        "qqp", ("0", "1"), ("question1", "question2"), dict(_STD), "QQP",
        label_column="is_duplicate", id_column="id", skip_malformed=True,
        tfds_features=("question1", "question2"), tfds_labels=("not_duplicate", "duplicate"),
    ),
    "mnli": TaskSpec(
        "mnli", ("contradiction", "entailment", "neutral"), ("sentence1", "sentence2"),
        {
            "train": "train.tsv",
            "dev_matched": "dev_matched.tsv",
            "dev_mismatched": "dev_mismatched.tsv",
            "test_matched": "test_matched.tsv",
            "test_mismatched": "test_mismatched.tsv",
        },
        "MNLI", label_column="gold_label", id_column="index",
        tfds_features=("premise", "hypothesis"),
        tfds_labels=("contradiction", "entailment", "neutral"),
    ),
    "qnli": TaskSpec(
        "qnli", ("entailment", "not_entailment"), ("question", "sentence"), dict(_STD), "QNLI",
        id_column="index", tfds_features=("question", "sentence"),
        tfds_labels=("entailment", "not_entailment"),
    ),
    "rte": TaskSpec(
        "rte", ("entailment", "not_entailment"), ("sentence1", "sentence2"), dict(_STD), "RTE",
        id_column="index", tfds_features=("sentence1", "sentence2"),
        tfds_labels=("entailment", "not_entailment"),
    ),
    "wnli": TaskSpec(
        "wnli", ("0", "1"), ("sentence1", "sentence2"), dict(_STD), "WNLI", id_column="index",
        tfds_features=("sentence1", "sentence2"), tfds_labels=("not_entailment", "entailment"),
    ),
}

#: The demo's binary sentiment task built from VADER's movie snippets (see vader_sentiment).
SENTIMENT = TaskSpec(
    "sentiment", ("negative", "positive"), ("text", None),
    {"train": "movieReviewSnippets_GroundTruth.txt", "dev": "movieReviewSnippets_GroundTruth.txt",
     "test": "movieReviewSnippets_GroundTruth.txt"},
    folder="", label_column="rating", id_column="id",
)

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli-mm": "mnli"}


def get_task(task: str) -> TaskSpec:
    """The spec of a task by name (GLUE names, their aliases sst-2/sts-b, 'sentiment', or a GLUE
    task from TFDS: ``tfds:glue/<task>``)."""
    if task.strip().startswith("tfds:"):
        return GLUE_TASKS[_tfds_glue(task)[1]]
    key = task.strip().lower()
    key = _ALIASES.get(key, key)
    if key == "sentiment":
        return SENTIMENT
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(GLUE_TASKS)} or "
                         f"'sentiment'")
    return GLUE_TASKS[key]


def _tfds_glue(task: str) -> tuple[tfds_source.TfdsSpec, str]:
    """``tfds:glue/<task>[:VERSION]`` → its parsed spec and the GLUE task key."""
    spec = tfds_source.parse_spec(task.strip().removeprefix("tfds:"))
    dataset, _, config = spec.name.partition("/")
    if dataset != "glue" or config not in GLUE_TASKS or spec.split or spec.fields:
        raise ValueError(f"task {task!r}: a task from TFDS is tfds:glue/<task>[:VERSION] with "
                         f"<task> one of {sorted(GLUE_TASKS)} (its splits and fields are the "
                         f"task's own)")
    return spec, config


# ----------------------------------------------------------------------------- file helpers


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file: BOM dropped, LF or CRLF ends, trailing empty lines dropped.

    Splits on '\\n' only (str.splitlines would also split on U+2028, form feeds, ... that can
    appear inside sentences).
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x} at offset {e.start}); "
            f"GLUE and the column readers expect UTF-8 text"
        ) from None
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _label_id(value: str, labels: Sequence[str] | None, where: str, column: str) -> int | float:
    if labels is None:
        try:
            return float(value)
        except ValueError:
            raise ValueError(
                f"{where}: column {column!r} = {value!r} is not a number; this is a regression "
                f"task, the label must be a float"
            ) from None
    try:
        return list(labels).index(value)
    except ValueError:
        raise ValueError(
            f"{where}: column {column!r} has unknown label {value!r}; allowed labels: "
            f"{list(labels)}"
        ) from None


# ----------------------------------------------------------------------------- GLUE


def _resolve(spec: TaskSpec, data_dir: Path, filename: str) -> Path:
    candidates = [data_dir / spec.folder / filename, data_dir / spec.name / filename,
                  data_dir / filename]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"GLUE {spec.name} file {filename!r} not found; looked for "
        f"{', '.join(str(c) for c in candidates)}. Expected the official GLUE layout "
        f"(download_glue_data.py): {data_dir}/{spec.folder}/{filename}, or data_dir pointing "
        f"at the {spec.folder} folder itself"
    )


def read_glue(task: str, data_dir: str | Path, split: str) -> list[Example]:
    """Read one split of a GLUE task from the official TSV files.

    Args:
        task: cola, sst2 (sst-2), mrpc, stsb (sts-b), qqp, mnli, qnli, rte, wnli.
        data_dir: the folder holding the task folders (``glue_data/``, so the file is
            ``glue_data/MNLI/dev_matched.tsv``), or the task folder itself; for a task from
            TFDS (``tfds:glue/mnli``) the TFDS data folder ('' for TFDS's default).
        split: a key of ``GLUE_TASKS[task].splits``: train, dev, test; for MNLI train,
            dev_matched, dev_mismatched, test_matched, test_mismatched.

    Returns:
        Examples in file order, ``guid = f"{task}-{split}-{id}"`` (id: the file's index/id
        column, else the line number); labels are ids into ``spec.labels`` (float for STS-B,
        None in test splits).
    """
    spec = get_task(task)
    if spec is SENTIMENT:
        raise ValueError("task 'sentiment' is not a GLUE task; use vader_sentiment(vader_dir)")
    if split not in spec.splits:
        raise ValueError(
            f"unknown split {split!r} for GLUE task {spec.name!r}; expected one of "
            f"{list(spec.splits)}"
        )
    if task.strip().startswith("tfds:"):
        return _read_glue_tfds(task, str(data_dir), split)
    path = _resolve(spec, Path(data_dir), spec.splits[split])
    is_test = split.startswith("test")
    lines = _read_lines(path)

    if spec.headerless_columns is not None and not is_test:
        header = list(spec.headerless_columns)
        first = 0  # data starts on line 1
    else:
        if not lines:
            raise ValueError(f"{path}: file is empty; expected a header line and examples")
        header = lines[0].split("\t")
        first = 1

    def col(name: str | None) -> int | None:
        if name is None:
            return None
        if name not in header:
            where = f"{path}:1: header" if first == 1 else f"{path}: columns"
            raise ValueError(
                f"{where} {header} has no column {name!r}, needed for GLUE {spec.name} "
                f"{split}; is this the right file for this task and split?"
            )
        return header.index(name)

    ia, ib = col(spec.text_columns[0]), col(spec.text_columns[1])
    il = None if is_test or spec.label_column is None else col(spec.label_column)
    iid = header.index(spec.id_column) if spec.id_column in header else None
    ncols = len(header)

    examples: list[Example] = []
    skipped: list[int] = []
    for lineno, line in enumerate(lines[first:], start=first + 1):
        fields = line.split("\t")
        if len(fields) != ncols:
            if spec.skip_malformed:
                skipped.append(lineno)
                continue
            raise ValueError(
                f"{path}:{lineno}: expected {ncols} tab-separated fields ({header}), found "
                f"{len(fields)}: {line[:120]!r}"
            )
        where = f"{path}:{lineno}"
        label = None if il is None else _label_id(fields[il], spec.labels, where, header[il])
        ident = fields[iid] if iid is not None else str(lineno)
        examples.append(
            Example(
                guid=f"{spec.name}-{split}-{ident}",
                text_a=fields[ia],
                text_b=None if ib is None else fields[ib],
                label=label,
            )
        )
    if skipped:
        warnings.warn(
            f"{path}: skipped {len(skipped)} malformed row(s) (field count != {ncols}), lines "
            f"{skipped[:10]}{' ...' if len(skipped) > 10 else ''}",
            stacklevel=2,
        )
    if not examples:
        raise ValueError(f"{path}: split {split!r} of GLUE {spec.name} has no examples")
    return examples


def tfds_split(split: str) -> str:
    """TFDS's name of a GLUE split: dev → validation, dev_matched → validation_matched, ..."""
    return split.replace("dev", "validation")


def _read_glue_tfds(task: str, data_dir: str, split: str) -> list[Example]:
    """:func:`read_glue` of a ``tfds:glue/<task>`` task (see the module docstring)."""
    tfds_spec, key = _tfds_glue(task)
    spec = GLUE_TASKS[key]
    source = tfds_source.TfdsSplit(tfds_spec.dataset, tfds_split(split), data_dir or None)
    text_a, text_b = spec.tfds_features
    is_test = split.startswith("test")
    fields = [text_a, *([text_b] if text_b else []), "idx", *([] if is_test else ["label"])]
    source.check_fields(fields)
    to_id = None
    if spec.labels is not None and not is_test:
        names = list(source.features["label"].names)
        unknown = [n for n in names if n not in spec.tfds_labels]
        if unknown:
            raise ValueError(f"{task} split {tfds_split(split)!r}: label classes {names} are not "
                             f"TFDS GLUE {key}'s {list(spec.tfds_labels)}")
        to_id = [spec.tfds_labels.index(n) for n in names]
    examples = []
    # TFDS stores rows in the order of its keys' hashes; idx (the data row) restores file order
    for row in sorted(source.rows(fields), key=lambda r: r["idx"]):
        if is_test:
            label = None
        elif to_id is None:  # regression: TFDS keeps float32; its shortest repr is the file's text
            label = float(str(np.float32(row["label"])))
        elif 0 <= row["label"] < len(to_id):
            label = to_id[row["label"]]
        else:
            raise ValueError(f"{task} split {tfds_split(split)!r}: row idx {row['idx']} has label "
                             f"{row['label']}, expected a class id 0..{len(to_id) - 1}")
        examples.append(Example(f"{spec.name}-{split}-{row['idx']}", row[text_a],
                                row[text_b] if text_b else None, label))
    if not examples:
        raise ValueError(f"{task} split {tfds_split(split)!r} has no examples")
    return examples


# ----------------------------------------------------------------------------- named columns


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") \
                from None
        if not isinstance(row, dict):
            raise ValueError(
                f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}"
            )
        yield lineno, row


def _delimited_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    lines = _read_lines(path)
    if not lines:
        raise ValueError(f"{path}: file is empty; expected a header line naming the columns")
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # csv handles quoted CSV fields spanning lines; track the physical line of each record.
    reader = csv.reader(
        (ln + "\n" for ln in lines), delimiter=delimiter, quoting=quoting, strict=True
    )
    try:
        header = next(reader)
        for record in reader:
            lineno = reader.line_num
            if len(record) != len(header):
                raise ValueError(
                    f"{path}:{lineno}: expected {len(header)} fields ({header}), found "
                    f"{len(record)}"
                )
            yield lineno, dict(zip(header, record, strict=True))
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: malformed {path.suffix} record: {e}") \
            from None


def read_columns(
    path: str | Path,
    text_a: str,
    text_b: str | None = None,
    label: str | None = None,
    labels: Sequence[str] | None = None,
) -> list[Example]:
    """Read a file with named columns: ``.jsonl`` (one JSON object a line), ``.csv`` (comma,
    standard double-quote quoting) or ``.tsv`` (tab, no quoting, like GLUE).

    Args:
        path: the file; the format comes from its extension.
        text_a, text_b: names of the text columns (text_b None for single sentences).
        label: name of the label column, or None for unlabeled data (label=None).
        labels: label strings in id order: a value ``v`` becomes ``labels.index(str(v))``.
            None with a label column means regression: the value is parsed as a float.

    Returns:
        Examples in file order with ``guid = f"{stem}-{line}"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a .jsonl, .csv or .tsv file)")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
    elif suffix == ".csv":
        rows = _delimited_rows(path, ",")
    elif suffix == ".tsv":
        rows = _delimited_rows(path, "\t")
    else:
        raise ValueError(f"{path}: unknown extension {path.suffix!r}; expected .jsonl, .csv or "
                         f".tsv")
    label_strs = None if labels is None else [str(v) for v in labels]
    examples = []
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        texts = []
        for name in (text_a, text_b):
            if name is None:
                texts.append(None)
                continue
            if name not in row:
                raise ValueError(f"{where}: no column {name!r}; columns are {list(row)}")
            value = row[name]
            if not isinstance(value, str):
                raise ValueError(
                    f"{where}: column {name!r} must be a string, got {type(value).__name__} "
                    f"{value!r}"
                )
            texts.append(value)
        y = None
        if label is not None:
            if label not in row:
                raise ValueError(f"{where}: no label column {label!r}; columns are {list(row)}")
            value = row[label]
            if value is None or isinstance(value, (list, dict)):
                raise ValueError(f"{where}: label column {label!r} = {value!r} is not a label")
            if label_strs is None:
                y = _label_id(str(value), None, where, label)
            else:
                y = _label_id(str(value), label_strs, where, label)
        examples.append(Example(f"{path.stem}-{lineno}", texts[0], texts[1], y))
    if not examples:
        raise ValueError(f"{path}: no examples (only a header or blank lines)")
    return examples


# ----------------------------------------------------------------------------- VADER demo

VADER_MOVIE_FILE = "movieReviewSnippets_GroundTruth.txt"
VADER_TRANSFER_FILES = (
    "tweets_GroundTruth.txt",
    "nytEditorialSnippets_GroundTruth.txt",
    "amazonReviewSnippets_GroundTruth.txt",
)


def _read_vader(path: Path) -> list[tuple[str, float, str]]:
    """(id, mean rating, text) rows of a VADER ``*_GroundTruth.txt`` file.

    The files are UTF-8 (checked byte by byte: every file decodes cleanly; the movie snippets
    hold accented names and U+2019/U+2013, the tweets a £), TAB-separated with CRLF ends; they
    are read with ``errors="replace"`` so a damaged copy still loads.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: VADER ground-truth file missing; expected the *_GroundTruth.txt files of "
            f"vaderSentiment 3.3.2's additional_resources/hutto_ICWSM_2014.tar.gz in "
            f"{path.parent} (run `make assets`)"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(
                f"{path}:{lineno}: expected 3 tab-separated fields (id, mean rating, text), "
                f"found {len(parts)}: {line[:80]!r}"
            )
        try:
            rating = float(parts[1])
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: mean rating {parts[1]!r} is not a number"
            ) from None
        rows.append((parts[0], rating, parts[2]))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def vader_sentiment(vader_dir: str | Path, seed: int = 0) -> dict[str, list[Example]]:
    """The demo's SST-2-like binary sentiment task from VADER's Rotten Tomatoes snippets.

    Rule (exact): read ``movieReviewSnippets_GroundTruth.txt`` (10,605 rows); drop rows whose
    mean rating is exactly 0 (37 rows) -> N = 10,568; label = 1 ("positive") iff rating > 0,
    else 0 ("negative"). ``p = np.random.default_rng(seed).permutation(N)``; with
    ``k = N // 10`` (1,056), dev = p[:k], test = p[k:2k], train = p[2k:] (8,456). Each split
    lists its rows in file order. Sizes: train 8,456 / dev 1,056 / test 1,056; about half of
    each split is positive (5,242 positive, 5,326 negative overall).

    Caveat: two snippets occur twice in the file, so a duplicate text may land in two splits.

    Returns ``{"train", "dev", "test"}`` -> examples with ``guid = "vader-movie-{id}"``,
    ``text_b = None`` and ``label`` in {0, 1}; the spec is :data:`SENTIMENT`.
    """
    rows = [r for r in _read_vader(Path(vader_dir) / VADER_MOVIE_FILE) if r[1] != 0.0]
    n = len(rows)
    k = n // 10
    perm = np.random.default_rng(seed).permutation(n)
    parts = {"train": perm[2 * k :], "dev": perm[:k], "test": perm[k : 2 * k]}
    out = {}
    for split, idx in parts.items():
        out[split] = [
            Example(f"vader-movie-{rows[i][0]}", rows[i][2], None, int(rows[i][1] > 0))
            for i in np.sort(idx)
        ]
    return out


def vader_transfer_texts(vader_dir: str | Path) -> list[str]:
    """The unlabeled transfer set for distillation: every text of tweets (4,200),
    nytEditorialSnippets (5,190) and amazonReviewSnippets (3,708), in that order (13,098
    texts, zero-rated ones included; ratings are ignored)."""
    texts: list[str] = []
    for name in VADER_TRANSFER_FILES:
        texts.extend(text for _, _, text in _read_vader(Path(vader_dir) / name))
    return texts

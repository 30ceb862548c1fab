"""The transfer set of task distillation: unlabelled sentences or sentence pairs.

``data.transfer`` names it:

===============  =============================================================================
``vader``        the VADER texts (single sentences; see ``tasks.vader_transfer_texts``)
``PATH.tsv``     sentence pairs: two TAB-separated texts a line (no header, no quoting)
``PATH.jsonl``   sentence pairs: one JSON object a line, ``{"text_a": ..., "text_b": ...}``
any other file   single sentences, one a line
===============  =============================================================================

A pair task (MNLI, RTE, QQP, ...: two text columns) is distilled on pairs, which teacher and
student see as fine-tuning packs them (``[CLS] a [SEP] b [SEP]``, type ids 0 then 1:
``features.encode_examples``); a single-sentence task on single sentences. A transfer set of the
other kind is refused before anything is built.

NLI* (Turc et al., 2019, Table 1: the transfer set of MNLI and RTE, "NLI*", about 1.3 M pairs):
:func:`nli_pairs` pools the training pairs of the NLI-style sets TFDS holds, labels dropped,
duplicates removed, and no pair of the task's dev or test splits (compared as normalised text:
lower case, runs of whitespace as one space). ``distill transfer-pairs`` writes it to a file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from distill.data import tasks as task_data
from distill.data import tfds_source
from flaxbert.textfiles import read_utf8

log = logging.getLogger(__name__)

Pair = tuple[str, str]

#: The default NLI* composition: the training pairs of MultiNLI, SNLI and QQP (392,702 + 550,152
#: + 363,846 ≈ 1.31 M: our reading of the 1.3 M pairs the paper gives NLI*) and of GLUE's other
#: entailment sets with training data worth the name, QNLI and RTE. Any list can be passed.
NLI_STAR = ("glue/mnli", "snli", "glue/qqp", "glue/qnli", "glue/rte")
#: The two text fields of pair datasets outside GLUE (GLUE's: ``TaskSpec.tfds_features``).
PAIR_FIELDS = {"snli": ("premise", "hypothesis"), "multi_nli": ("premise", "hypothesis"),
               "esnli": ("premise", "hypothesis"), "anli": ("context", "hypothesis")}


def transfer_examples(config, task: task_data.TaskSpec | None = None) -> list[task_data.Example]:
    """The unlabelled transfer set ``config.data.transfer`` names (see the module docstring);
    with ``task``, refused unless it holds pairs exactly when the task does."""
    d = config.data
    if d.transfer == "vader":
        texts = [(t, None) for t in task_data.vader_transfer_texts(d.vader_dir)]
    else:
        path = Path(d.transfer)
        if not path.is_file():
            raise FileNotFoundError(f"data.transfer={d.transfer!r}: no such file (expected "
                                    f"'vader', a text file with one example per line, or pairs: "
                                    f"a .tsv of two columns or a .jsonl with text_a and text_b)")
        if path.suffix.lower() in (".tsv", ".jsonl"):
            texts = read_pairs(path)
        else:
            texts = [(line.strip(), None) for line in read_utf8(path, "data.transfer").splitlines()
                     if line.strip()]
    if not texts:
        raise ValueError(f"data.transfer={d.transfer!r} holds no texts")
    if task is not None:
        check_fits(task, pairs=texts[0][1] is not None, source=f"data.transfer={d.transfer!r}")
    return [task_data.Example(f"transfer-{i}", a, b, None) for i, (a, b) in enumerate(texts)]


def check_fits(task: task_data.TaskSpec, *, pairs: bool, source: str) -> None:
    """Refuses a transfer set of single sentences for a pair task, and pairs for the others."""
    task_pairs = task.text_columns[1] is not None
    if pairs != task_pairs:
        kind = {True: "sentence pairs", False: "single sentences"}
        fix = ("a transfer set of pairs (a .tsv of two columns or a .jsonl with text_a and "
               "text_b; `distill transfer-pairs` builds NLI*)" if task_pairs
               else "a text file of single sentences")
        raise ValueError(f"{source} holds {kind[pairs]}, but task {task.name!r} takes "
                         f"{kind[task_pairs]}; use {fix}")


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a ``.tsv`` (two TAB-separated texts a line) or ``.jsonl`` (text_a, text_b)
    file; blank lines are skipped, anything else malformed is an error naming the line."""
    pairs = []
    jsonl = path.suffix.lower() == ".jsonl"
    for lineno, line in enumerate(read_utf8(path, "data.transfer").split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if jsonl:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            fields = (record.get("text_a"), record.get("text_b")) if isinstance(record, dict) \
                else (None, None)
            if not all(isinstance(t, str) for t in fields):
                raise ValueError(f"{path}:{lineno}: expected an object with string fields text_a "
                                 f"and text_b, got {line[:80]!r}")
        else:
            fields = tuple(line.split("\t"))
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected two TAB-separated texts, found "
                                 f"{len(fields)} field(s): {line[:80]!r}")
        pairs.append(fields)
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[Pair]) -> int:
    """Writes pairs as ``.tsv`` (each run of whitespace in a text, tabs and line breaks
    included, as one space) or ``.jsonl`` (texts as they are); returns how many."""
    path = Path(path)
    if path.suffix.lower() not in (".tsv", ".jsonl"):
        raise ValueError(f"{path}: a pair transfer file ends in .tsv or .jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for a, b in pairs:
            if path.suffix.lower() == ".jsonl":
                f.write(json.dumps({"text_a": a, "text_b": b}, ensure_ascii=False) + "\n")
            else:
                f.write(f"{' '.join(a.split())}\t{' '.join(b.split())}\n")
            n += 1
    return n


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def pair_fields(spec: tfds_source.TfdsSpec) -> tuple[str, str]:
    """The two text fields of a pair dataset: the spec's ``#a,b``, GLUE's, or PAIR_FIELDS'."""
    if spec.fields:
        if len(spec.fields) != 2:
            raise ValueError(f"tfds:{spec.name}: a pair set names two fields, got "
                             f"{list(spec.fields)}")
        return spec.fields
    dataset, _, config = spec.name.partition("/")
    glue = task_data.GLUE_TASKS.get(config) if dataset == "glue" else None
    if glue is not None and glue.tfds_features[1] is not None:
        return glue.tfds_features
    if dataset in PAIR_FIELDS:
        return PAIR_FIELDS[dataset]
    raise ValueError(f"tfds:{spec.name}: unknown pair fields; name them: "
                     f"tfds:{spec.name}#FIELD_A,FIELD_B")


def nli_pairs(sources: Sequence[str] = NLI_STAR, *, data_dir: str | None = None,
              exclude: Iterable[task_data.Example] = ()) -> list[Pair]:
    """NLI*: the pairs of every source (``NAME[:VERSION][:SPLIT][#A,B]``, split ``train`` by
    default) in order, labels dropped, each normalised pair once, none of ``exclude``'s (a task's
    dev and test). A source not prepared in the TFDS data folder is skipped with a log line."""
    dev_test = {(normalise(e.text_a), normalise(e.text_b or "")) for e in exclude}
    seen: set[Pair] = set()
    pairs: list[Pair] = []
    for name in sources:
        spec = tfds_source.parse_spec(name.removeprefix("tfds:"))
        a, b = pair_fields(spec)
        try:
            split = tfds_source.TfdsSplit(spec.dataset, spec.split or "train", data_dir)
        except FileNotFoundError as e:
            log.warning("NLI*: skipped %s: %s", name, e)
            continue
        counts = {"read": 0, "duplicate": 0, "dev/test": 0}
        for row in split.rows([a, b]):
            counts["read"] += 1
            key = (normalise(row[a]), normalise(row[b]))
            if key in dev_test:
                counts["dev/test"] += 1
            elif key in seen:
                counts["duplicate"] += 1
            else:
                seen.add(key)
                pairs.append((row[a], row[b]))
        log.info("NLI*: %s (%s, %s): %d pairs read, %d kept, %d duplicates and %d of the task's "
                 "dev/test dropped", name, a, b, counts["read"],
                 counts["read"] - counts["duplicate"] - counts["dev/test"], counts["duplicate"],
                 counts["dev/test"])
    if not pairs:
        raise ValueError(f"NLI*: none of {list(sources)} is prepared in "
                         f"{tfds_source.data_dir_or_default(data_dir)} (or they hold no pairs)")
    return pairs

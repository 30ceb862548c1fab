"""distill.data.tasks: GLUE TSVs in the official layouts, named-column files, the VADER task.

The GLUE files below are hand-written in the formats of the official download
(nyu-mll/GLUE-baselines download_glue_data.py; the columns google-research/bert
run_classifier.py and HF transformers v4 data/processors/glue.py read).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from distill.data import tasks
from distill.data.tasks import GLUE_TASKS, Example, num_labels, read_columns, read_glue

T = "\t"


def _write(path: Path, rows: list[list[str]] | list[str], *, bom=False, crlf=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else T.join(r) for r in rows]
    nl = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + nl.join(lines) + nl
    path.write_bytes(text.encode("utf-8"))
    return path


MNLI_TRAIN_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                     "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                     "sentence2", "label1", "gold_label"]
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:11] + ["label2", "label3", "label4", "label5", "gold_label"]
MNLI_TEST_HEADER = MNLI_TRAIN_HEADER[:10]
STSB_HEADER = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
               "sentence1", "sentence2", "score"]


def _mnli_row(i, genre, s1, s2, *labels):
    return [str(i), str(1000 + i), f"{1000 + i}e", genre, "( ( A b ) )", "( c )", "(ROOT (S))",
            "(ROOT (NP))", s1, s2, *labels]


@pytest.fixture
def glue_dir(tmp_path) -> Path:
    """A glue_data/ folder with a few rows of every task, in the official formats."""
    g = tmp_path / "glue_data"
    # CoLA: train/dev have NO header: source, label, original mark, sentence.
    _write(g / "CoLA/train.tsv", [
        ["gj04", "1", "", "Our friends won't buy this analysis, let alone the next one."],
        ["gj04", "0", "*", "They drank the pub."],
        ["clc95", "1", "", 'He said "hi" to me.'],
    ])
    _write(g / "CoLA/dev.tsv", [["gj04", "0", "*", "The more we study verbs, the crazier."]])
    _write(g / "CoLA/test.tsv", [["index", "sentence"], ["0", "Bill whistled past the house."],
                                 ["1", "The car honked its way down the road."]])
    # SST-2: header sentence, label (sentences end in a space in the real files).
    _write(g / "SST-2/train.tsv", [["sentence", "label"],
                                   ["hide new secretions from the parental units ", "0"],
                                   ['the film \'s " twist " ending works ', "1"]])
    _write(g / "SST-2/dev.tsv", [["sentence", "label"], ["it 's a charming journey . ", "1"]])
    _write(g / "SST-2/test.tsv", [["index", "sentence"], ["0", "uneasy mishmash of styles . "]])
    # MRPC: train/dev header copied from msr_paraphrase_train.txt, which starts with a BOM.
    mrpc_header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    _write(g / "MRPC/train.tsv", [
        mrpc_header,
        ["1", "702876", "702977", 'Amrozi called him " the witness " .',
         'Referring to him as only " the witness " , Amrozi spoke .'],
        ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .", "Yucaipa bought it ."],
    ], bom=True)
    _write(g / "MRPC/dev.tsv", [mrpc_header, ["1", "1", "2", "a b", "b a"]], bom=True)
    _write(g / "MRPC/test.tsv", [["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                                 ["0", "1089874", "1089925", "PCCW 's chief quit .",
                                  "The chief of PCCW quit ."]])
    # STS-B: 10 columns, score last (float); test has 9.
    _write(g / "STS-B/train.tsv", [
        STSB_HEADER,
        ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
         "A plane is taking off.", "An air plane is taking off.", "5.000"],
        ["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
         'A man says "no".', "A man is playing a flute.", "0.400"],
    ])
    _write(g / "STS-B/dev.tsv", [STSB_HEADER, ["0", "main-forums", "f", "2015", "1", "n", "n",
                                               "x y", "y x", "3.8"]])
    _write(g / "STS-B/test.tsv", [STSB_HEADER[:9], ["0", "main-news", "f", "2016", "1", "n",
                                                    "n", "Kids play.", "Children play."]])
    # QQP: id qid1 qid2 question1 question2 is_duplicate; test: id question1 question2.
    _write(g / "QQP/train.tsv", [
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["133273", "213221", "213222", "How is the life of a math student?",
         "Which level of preparation is enough?", "0"],
        ["402555", "536040", "536041", 'What does "lol" mean?', "What is lol?", "1"],
    ])
    _write(g / "QQP/dev.tsv", [["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                               ["1", "2", "3", "Why?", "Why not?", "0"]])
    _write(g / "QQP/test.tsv", [["id", "question1", "question2"],
                                ["0", "Why do rockets look white?", "Why are rockets white?"]])
    # MNLI: sentence1 at 8, sentence2 at 9, gold_label last (11 in train, 15 in dev).
    _write(g / "MNLI/train.tsv", [
        MNLI_TRAIN_HEADER,
        _mnli_row(0, "government", "Conceptually cream skimming has two dimensions.",
                  "Product and geography are what make it work.", "neutral", "neutral"),
        _mnli_row(1, "telephone", 'you know "during the season" i guess', "I know.",
                  "entailment", "entailment"),
        _mnli_row(2, "fiction", "One of our number will carry out your instructions.",
                  "Nobody will do it.", "contradiction", "contradiction"),
    ])
    _write(g / "MNLI/dev_matched.tsv", [
        MNLI_DEV_HEADER,
        # label1 differs from gold_label: the gold label (last column) must win.
        _mnli_row(10, "fiction", "The new rights are nice enough", "Everyone likes them.",
                  "entailment", "entailment", "neutral", "neutral", "neutral", "neutral"),
    ])
    _write(g / "MNLI/dev_mismatched.tsv", [
        MNLI_DEV_HEADER,
        _mnli_row(20, "letters", "Your gift is appreciated.", "Hundreds got it.",
                  "contradiction", "contradiction", "neutral", "contradiction", "contradiction",
                  "contradiction"),
    ])
    _write(g / "MNLI/test_matched.tsv", [MNLI_TEST_HEADER, _mnli_row(0, "fiction", "a", "b")])
    _write(g / "MNLI/test_mismatched.tsv", [MNLI_TEST_HEADER,
                                            _mnli_row(0, "letters", "c", "d")])
    # QNLI / RTE: index, two sentences, entailment / not_entailment. WNLI: same with 0/1.
    _write(g / "QNLI/train.tsv", [["index", "question", "sentence", "label"],
                                  ["0", "When did the third Digimon series begin?",
                                   "Unlike the two seasons before it, it is darker.",
                                   "not_entailment"],
                                  ["1", "What came into force?", 'The "new" constitution did.',
                                   "entailment"]])
    _write(g / "QNLI/test.tsv", [["index", "question", "sentence"], ["0", "Who?", "Him."]])
    _write(g / "RTE/train.tsv", [["index", "sentence1", "sentence2", "label"],
                                 ["0", "No Weapons of Mass Destruction Found in Iraq Yet.",
                                  "Weapons of Mass Destruction Found in Iraq.", "not_entailment"],
                                 ["1", "A place of sorrow.", "Sorrow is there.", "entailment"]])
    _write(g / "RTE/test.tsv", [["index", "sentence1", "sentence2"], ["0", "x", "y"]])
    _write(g / "WNLI/train.tsv", [["index", "sentence1", "sentence2", "label"],
                                  ["0", "I stuck a pin through a carrot.",
                                   "The carrot had a hole.", "1"],
                                  ["1", "John couldn't see the stage.", "John is short.", "0"]])
    _write(g / "WNLI/test.tsv", [["index", "sentence1", "sentence2"], ["0", "a", "b"]])
    return g


def test_registry():
    assert sorted(GLUE_TASKS) == sorted(
        ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"])
    # The original BERT order for MNLI (run_classifier.py MnliProcessor.get_labels).
    assert GLUE_TASKS["mnli"].labels == ("contradiction", "entailment", "neutral")
    assert GLUE_TASKS["qnli"].labels == ("entailment", "not_entailment")
    assert GLUE_TASKS["stsb"].labels is None
    assert num_labels(GLUE_TASKS["stsb"]) == 1
    assert num_labels(GLUE_TASKS["mnli"]) == 3
    assert num_labels(GLUE_TASKS["cola"]) == 2
    assert list(GLUE_TASKS["mnli"].splits) == [
        "train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched"]
    assert tasks.get_task("SST-2") is GLUE_TASKS["sst2"]
    assert num_labels(tasks.SENTIMENT) == 2


def test_cola(glue_dir):
    train = read_glue("cola", glue_dir, "train")
    assert train == [
        Example("cola-train-1", "Our friends won't buy this analysis, let alone the next one.",
                None, 1),
        Example("cola-train-2", "They drank the pub.", None, 0),
        Example("cola-train-3", 'He said "hi" to me.', None, 1),
    ]
    assert read_glue("cola", glue_dir, "dev")[0].label == 0
    test = read_glue("cola", glue_dir, "test")
    assert test == [Example("cola-test-0", "Bill whistled past the house.", None, None),
                    Example("cola-test-1", "The car honked its way down the road.", None, None)]


def test_sst2(glue_dir):
    train = read_glue("sst-2", glue_dir, "train")
    assert [e.text_a for e in train] == ["hide new secretions from the parental units ",
                                         'the film \'s " twist " ending works ']
    assert [e.label for e in train] == [0, 1]
    assert all(e.text_b is None for e in train)
    assert read_glue("sst2", glue_dir, "dev")[0].label == 1
    assert read_glue("sst2", glue_dir, "test") == [
        Example("sst2-test-0", "uneasy mishmash of styles . ", None, None)]


def test_mrpc_with_bom(glue_dir):
    train = read_glue("mrpc", glue_dir, "train")
    assert train[0] == Example("mrpc-train-2", 'Amrozi called him " the witness " .',
                               'Referring to him as only " the witness " , Amrozi spoke .', 1)
    assert train[1].label == 0 and train[1].text_b == "Yucaipa bought it ."
    assert read_glue("mrpc", glue_dir, "test") == [
        Example("mrpc-test-0", "PCCW 's chief quit .", "The chief of PCCW quit .", None)]


def test_stsb_regression(glue_dir):
    train = read_glue("sts-b", glue_dir, "train")
    assert train[0] == Example("stsb-train-0", "A plane is taking off.",
                               "An air plane is taking off.", 5.0)
    assert train[1].text_a == 'A man says "no".'
    assert isinstance(train[1].label, float) and train[1].label == pytest.approx(0.4)
    assert read_glue("stsb", glue_dir, "dev")[0].label == pytest.approx(3.8)
    test = read_glue("stsb", glue_dir, "test")
    assert test == [Example("stsb-test-0", "Kids play.", "Children play.", None)]


def test_qqp(glue_dir):
    train = read_glue("qqp", glue_dir, "train")
    assert train[0] == Example("qqp-train-133273", "How is the life of a math student?",
                               "Which level of preparation is enough?", 0)
    assert train[1].text_a == 'What does "lol" mean?' and train[1].label == 1
    assert read_glue("qqp", glue_dir, "test") == [
        Example("qqp-test-0", "Why do rockets look white?", "Why are rockets white?", None)]


def test_qqp_skips_malformed_rows_with_a_count(glue_dir):
    path = glue_dir / "QQP/train.tsv"
    # A question with an embedded newline breaks one record into two short lines.
    with path.open("a", encoding="utf-8") as f:
        f.write("7\t8\t9\tWas Muhammad\n\ta real figure?\t0\n")
        f.write("10\t11\t12\tIs it ok?\tIs it fine?\t1\n")
    with pytest.warns(UserWarning, match=r"skipped 2 malformed row\(s\).*lines \[4, 5\]"):
        train = read_glue("qqp", glue_dir, "train")
    assert [e.guid for e in train] == ["qqp-train-133273", "qqp-train-402555", "qqp-train-10"]


def test_mnli_matched_mismatched_and_label_order(glue_dir):
    train = read_glue("mnli", glue_dir, "train")
    labels = GLUE_TASKS["mnli"].labels
    assert [labels[e.label] for e in train] == ["neutral", "entailment", "contradiction"]
    assert [e.label for e in train] == [2, 1, 0]
    assert train[1].text_a == 'you know "during the season" i guess'
    assert train[1].text_b == "I know."
    m = read_glue("mnli", glue_dir, "dev_matched")
    mm = read_glue("mnli", glue_dir, "dev_mismatched")
    assert m == [Example("mnli-dev_matched-10", "The new rights are nice enough",
                         "Everyone likes them.", 2)]  # gold_label, not label1
    assert mm == [Example("mnli-dev_mismatched-20", "Your gift is appreciated.",
                          "Hundreds got it.", 0)]
    assert read_glue("mnli", glue_dir, "test_matched") == [
        Example("mnli-test_matched-0", "a", "b", None)]
    assert read_glue("mnli", glue_dir, "test_mismatched")[0].text_a == "c"
    with pytest.raises(ValueError, match="dev_matched"):
        read_glue("mnli", glue_dir, "dev")


def test_qnli_rte_wnli(glue_dir):
    qnli = read_glue("qnli", glue_dir, "train")
    assert qnli[0] == Example("qnli-train-0", "When did the third Digimon series begin?",
                              "Unlike the two seasons before it, it is darker.", 1)
    assert qnli[1].text_b == 'The "new" constitution did.' and qnli[1].label == 0
    assert read_glue("qnli", glue_dir, "test") == [Example("qnli-test-0", "Who?", "Him.", None)]
    rte = read_glue("rte", glue_dir, "train")
    assert [(e.guid, e.label) for e in rte] == [("rte-train-0", 1), ("rte-train-1", 0)]
    assert rte[0].text_a == "No Weapons of Mass Destruction Found in Iraq Yet."
    assert read_glue("rte", glue_dir, "test")[0].label is None
    wnli = read_glue("wnli", glue_dir, "train")
    assert wnli == [
        Example("wnli-train-0", "I stuck a pin through a carrot.", "The carrot had a hole.", 1),
        Example("wnli-train-1", "John couldn't see the stage.", "John is short.", 0)]
    assert read_glue("wnli", glue_dir, "test")[0].text_b == "b"


def test_layouts_and_crlf(tmp_path, glue_dir):
    # data_dir may be the task folder itself; CRLF line ends are handled.
    rte = tmp_path / "my_rte"
    _write(rte / "dev.tsv", [["index", "sentence1", "sentence2", "label"],
                             ["5", "It rains.", "It is wet.", "entailment"]], crlf=True)
    assert read_glue("rte", rte, "dev") == [Example("rte-dev-5", "It rains.", "It is wet.", 0)]


def test_glue_errors(glue_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RTE/dev\.tsv"):
        read_glue("rte", glue_dir, "dev")
    with pytest.raises(ValueError, match="unknown task 'squad'"):
        read_glue("squad", glue_dir, "train")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        read_glue("sst2", glue_dir, "validation")
    # Wrong column count: file and line number.
    _write(glue_dir / "RTE/dev.tsv", [["index", "sentence1", "sentence2", "label"],
                                      ["0", "a", "b", "entailment"], ["1", "a b", "entailment"]])
    with pytest.raises(ValueError, match=r"RTE/dev\.tsv:3: expected 4 tab-separated fields"):
        read_glue("rte", glue_dir, "dev")
    # Unknown label: file, line, value and the allowed labels.
    _write(glue_dir / "RTE/dev.tsv", [["index", "sentence1", "sentence2", "label"],
                                      ["0", "a", "b", "Entailment"]])
    with pytest.raises(ValueError, match=r"dev\.tsv:2: column 'label' has unknown label "
                                         r"'Entailment'; allowed labels: \['entailment', "
                                         r"'not_entailment'\]"):
        read_glue("rte", glue_dir, "dev")
    # Missing column: a file of another task under this name.
    _write(glue_dir / "QNLI/dev.tsv", [["index", "sentence1", "sentence2", "label"],
                                       ["0", "a", "b", "entailment"]])
    with pytest.raises(ValueError, match=r"QNLI/dev\.tsv:1: header .* no column 'question'"):
        read_glue("qnli", glue_dir, "dev")
    # CoLA train/dev have no header: 4 fields a line.
    _write(glue_dir / "CoLA/dev.tsv", [["gj04", "1", "just a sentence"]])
    with pytest.raises(ValueError, match=r"CoLA/dev\.tsv:1: expected 4"):
        read_glue("cola", glue_dir, "dev")
    # Non-numeric STS-B score.
    _write(glue_dir / "STS-B/dev.tsv", [STSB_HEADER, ["0", "g", "f", "y", "1", "n", "n", "a",
                                                      "b", "high"]])
    with pytest.raises(ValueError, match=r"STS-B/dev\.tsv:2: column 'score' = 'high'"):
        read_glue("stsb", glue_dir, "dev")
    # Empty split: header only, and a completely empty file.
    _write(glue_dir / "WNLI/dev.tsv", [["index", "sentence1", "sentence2", "label"]])
    with pytest.raises(ValueError, match=r"WNLI/dev\.tsv: split 'dev' of GLUE wnli has no"):
        read_glue("wnli", glue_dir, "dev")
    (glue_dir / "WNLI/dev.tsv").write_bytes(b"")
    with pytest.raises(ValueError, match="file is empty"):
        read_glue("wnli", glue_dir, "dev")
    # Invalid UTF-8 names the line.
    (glue_dir / "SST-2/dev.tsv").write_bytes(b"sentence\tlabel\nok\t1\nbad \xff\t0\n")
    with pytest.raises(ValueError, match=r"SST-2/dev\.tsv:3: not valid UTF-8"):
        read_glue("sst2", glue_dir, "dev")


# ----------------------------------------------------------------------------- read_columns


def test_read_columns_formats(tmp_path):
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [
        {"premise": "A cat.", "hypothesis": 'A "pet".', "y": "yes"},
        {"premise": "A dog.", "hypothesis": "Nothing.", "y": "no"},
    ]) + "\n", encoding="utf-8")
    assert read_columns(jl, "premise", "hypothesis", "y", ["no", "yes"]) == [
        Example("d-1", "A cat.", 'A "pet".', 1), Example("d-2", "A dog.", "Nothing.", 0)]
    csv_path = tmp_path / "s.csv"
    csv_path.write_text('text,score\n"Hello, ""world""",1.5\nplain,2\n', encoding="utf-8")
    assert read_columns(csv_path, "text", label="score") == [
        Example("s-2", 'Hello, "world"', None, 1.5), Example("s-3", "plain", None, 2.0)]
    tsv = tmp_path / "u.tsv"
    _write(tsv, [["id", "text"], ["1", 'a "quoted" word'], ["2", "b"]], crlf=True)
    assert read_columns(tsv, "text") == [Example("u-2", 'a "quoted" word', None, None),
                                         Example("u-3", "b", None, None)]
    # Integer JSON labels match their string form.
    ji = tmp_path / "i.jsonl"
    ji.write_text('{"t": "x", "l": 1}\n', encoding="utf-8")
    assert read_columns(ji, "t", label="l", labels=("0", "1"))[0].label == 1


def test_read_columns_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_columns(tmp_path / "nope.jsonl", "t")
    p = tmp_path / "x.txt"
    p.write_text("t\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown extension '.txt'"):
        read_columns(p, "t")
    jl = tmp_path / "e.jsonl"
    jl.write_text('{"t": "a", "l": "pos"}\n{"t": "b", "l": "meh"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"e\.jsonl:2: column 'l' has unknown label 'meh'; "
                                         r"allowed labels: \['neg', 'pos'\]"):
        read_columns(jl, "t", label="l", labels=["neg", "pos"])
    with pytest.raises(ValueError, match=r"e\.jsonl:1: no column 'text'; columns are"):
        read_columns(jl, "text")
    with pytest.raises(ValueError, match=r"e\.jsonl:1: no label column 'y'"):
        read_columns(jl, "t", label="y")
    jl.write_text('{"t": "a"}\n{"t": oops}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"e\.jsonl:2: invalid JSON"):
        read_columns(jl, "t")
    jl.write_text('{"t": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"e\.jsonl:1: column 't' must be a string"):
        read_columns(jl, "t")
    c = tmp_path / "c.csv"
    c.write_text("a,b\n1,2\n3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.csv:3: expected 2 fields"):
        read_columns(c, "a")
    c.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no examples"):
        read_columns(c, "a")
    c.write_text("a,b\nx,high\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.csv:2: column 'b' = 'high' is not a number"):
        read_columns(c, "a", label="b")


# ----------------------------------------------------------------------------- VADER


def test_vader_sentiment_splits(vader_dir):
    d = tasks.vader_sentiment(vader_dir)
    assert {k: len(v) for k, v in d.items()} == {"train": 8456, "dev": 1056, "test": 1056}
    guids = {k: {e.guid for e in v} for k, v in d.items()}
    assert sum(len(g) for g in guids.values()) == 10568  # 10,605 rows - 37 rated exactly 0
    assert not (guids["train"] & guids["dev"] or guids["train"] & guids["test"]
                or guids["dev"] & guids["test"])
    for split, exs in d.items():
        pos = np.mean([e.label for e in exs])
        assert 0.45 < pos < 0.55, (split, pos)
        assert all(e.label in (0, 1) and e.text_b is None and e.text_a for e in exs)
    # Label rule on the first file row: id 1, rating 2.2667 -> positive.
    first = next(e for e in d["train"] + d["dev"] + d["test"] if e.guid == "vader-movie-1")
    assert first.label == 1 and first.text_a.startswith("The Rock is destined")
    # Non-ASCII text decodes as UTF-8 (no replacement characters).
    texts = [e.text_a for v in d.values() for e in v]
    assert any("clichés" in t for t in texts)
    assert not any("\ufffd" in t for t in texts)
    assert not any(t.endswith("\r") for t in texts)


def test_vader_sentiment_deterministic(vader_dir, movie_sentences):
    a = tasks.vader_sentiment(vader_dir, seed=0)
    b = tasks.vader_sentiment(vader_dir, seed=0)
    c = tasks.vader_sentiment(vader_dir, seed=1)
    assert a == b
    assert [e.guid for e in a["dev"]] != [e.guid for e in c["dev"]]
    assert {k: len(v) for k, v in c.items()} == {k: len(v) for k, v in a.items()}
    # Texts agree with the conftest reader, and each split keeps file order.
    assert set(e.text_a for v in a.values() for e in v) <= set(movie_sentences)
    ids = [int(e.guid.rsplit("-", 1)[1]) for e in a["test"]]
    assert ids == sorted(ids)


def test_vader_transfer_texts(vader_dir):
    texts = tasks.vader_transfer_texts(vader_dir)
    assert len(texts) == 4200 + 5190 + 3708
    assert texts[0].startswith("Somehow I was blessed")  # tweets first
    assert texts[-1].startswith("it did lock up on me a couple of times, and then")  # amazon
    assert not any(t.endswith("\r") or "\t" in t for t in texts)


def test_vader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="movieReviewSnippets_GroundTruth.txt"):
        tasks.vader_sentiment(tmp_path)
    (tmp_path / "movieReviewSnippets_GroundTruth.txt").write_text("1\t2.0\tok\r\n2\tx\tbad\r\n")
    with pytest.raises(ValueError, match=r"GroundTruth\.txt:2: mean rating 'x'"):
        tasks.vader_sentiment(tmp_path)


def test_no_warnings_on_clean_files(glue_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, spec in GLUE_TASKS.items():
            for split in spec.splits:
                if (glue_dir / spec.folder / spec.splits[split]).exists():
                    assert read_glue(name, glue_dir, split)


# ----------------------------------------------------------------------------- GLUE from TFDS


def test_glue_from_tfds_equals_the_files(glue_dir, tmp_path, minilm_dir):
    """Every GLUE task TFDS builds from the GLUE TSVs (all but MRPC, which TFDS builds from the
    MSR paraphrase files), prepared by TFDS's own GLUE builder from the same files, reads as the
    same examples and features as the files, split for split."""
    from tfds_builders import prepare_glue

    from distill.data.features import encode_examples
    from flaxbert.tokenization import load_tokenizer

    for task in ("qnli", "rte", "wnli"):  # the fixture has no dev split of these
        header = ["index", *GLUE_TASKS[task].text_columns, "label"]
        label = GLUE_TASKS[task].labels[1]
        _write(glue_dir / GLUE_TASKS[task].folder / "dev.tsv",
               [header, ["0", "A dev 'text'.", "Another.", label], ["1", "b", "c", label]])
    data_dir = tmp_path / "tensorflow_datasets"
    tokenizer = load_tokenizer(str(minilm_dir / "vocab.txt"))
    for task, spec in GLUE_TASKS.items():
        if task == "mrpc":
            continue
        prepare_glue(glue_dir, task, data_dir)
        for split in spec.splits:
            files = read_glue(task, glue_dir, split)
            from_tfds = read_glue(f"tfds:glue/{task}", data_dir, split)
            assert [(e.text_a, e.text_b, e.label) for e in from_tfds] == \
                [(e.text_a, e.text_b, e.label) for e in files], (task, split)
            a = encode_examples(files, tokenizer, 32, regression=spec.labels is None)
            b = encode_examples(from_tfds, tokenizer, 32, regression=spec.labels is None)
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # the guid holds TFDS's idx, the data row: RTE's index column
    assert read_glue("tfds:glue/rte", data_dir, "train") == read_glue("rte", glue_dir, "train")
    assert tasks.get_task("tfds:glue/mnli:2.0.0") is GLUE_TASKS["mnli"]
    # MNLI: TFDS's classes come in another order (entailment, neutral, contradiction)
    assert [e.label for e in read_glue("tfds:glue/mnli", data_dir, "train")] == [2, 1, 0]


def test_glue_from_tfds_errors(glue_dir, tmp_path):
    from tfds_builders import prepare_glue

    data_dir = tmp_path / "tensorflow_datasets"
    with pytest.raises(FileNotFoundError, match=r"tfds:glue/sst2 split 'train'.* not prepared in "
                                                 rf"{data_dir}"):
        read_glue("tfds:glue/sst2", data_dir, "train")
    prepare_glue(glue_dir, "sst2", data_dir)
    with pytest.raises(ValueError, match=r"unknown split 'validation' for GLUE task 'sst2'"):
        read_glue("tfds:glue/sst2", data_dir, "validation")
    for bad in ("tfds:glue/squad", "tfds:super_glue/rte", "tfds:glue/rte:train",
                "tfds:glue/rte#premise"):
        with pytest.raises(ValueError, match=r"tfds:glue/<task>\[:VERSION\]"):
            read_glue(bad, data_dir, "train")

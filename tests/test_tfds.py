"""distill.data.tfds_source and the `tfds:` text source, on real TFDS datasets prepared in the test
by TFDS's own writer (tests/tfds_builders.py); GLUE tasks from TFDS are in test_tasks.py."""

import json
import sys

import pytest
from tfds_builders import prepare_text

from distill.data import sources, tfds_source

ARTICLES = [
    ("Anarchism", "Anarchism is a political philosophy. It is sceptical of authority!\n"
                  "Second paragraph here.\nThird one? Yes."),
    ("Autism", "Autism is a developmental disorder."),
    ("Empty", "  \n "),  # no sentence: dropped, as the file readers drop it
    ("Albedo", "Albedo is the fraction of sunlight that is reflected. \"Quoted.\" Done"),
    ("A", "Only line."),
]


@pytest.fixture
def wiki(tmp_path):
    data_dir = tmp_path / "tensorflow_datasets"
    prepare_text("20230601.en", ARTICLES, data_dir)
    return data_dir


def _as_jsonl(tmp_path):
    path = tmp_path / "wiki.jsonl"
    path.write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in ARTICLES),
                    encoding="utf-8")
    return path


def test_parse_spec():
    parse = tfds_source.parse_spec
    assert parse("wikipedia/20230601.en") == tfds_source.TfdsSpec("wikipedia/20230601.en")
    assert parse("wikipedia/20230601.en:train[:99%]#text") == tfds_source.TfdsSpec(
        "wikipedia/20230601.en", None, "train[:99%]", ("text",))
    spec = parse("glue/mnli:2.0.0:validation_matched#premise,hypothesis")
    assert spec == tfds_source.TfdsSpec("glue/mnli", "2.0.0", "validation_matched",
                                        ("premise", "hypothesis"))
    assert spec.dataset == "glue/mnli:2.0.0"
    for bad in ("", ":train", "snli#", "snli#a,"):
        with pytest.raises(ValueError, match="tfds:"):
            parse(bad)


def test_tfds_documents_equal_the_file_readers(wiki, tmp_path, monkeypatch):
    """The same articles as a TFDS dataset and as JSON Lines: the same documents (TFDS stores
    records in the order of its keys' hashes, so compared as sorted lists), through data_source
    — TensorFlow is never imported."""
    jsonl = str(_as_jsonl(tmp_path))
    want = sorted(sources.read_documents(jsonl, sentence_split="both"))
    for spec in ("tfds:wikipedia/20230601.en", "tfds:wikipedia/20230601.en:train#text"):
        got = sources.read_documents(spec, tfds_data_dir=str(wiki))
        assert sorted(got) == want
    assert len(want) == 4 and ["Anarchism is a political philosophy.", "It is sceptical of "
                               "authority!", "Second paragraph here.", "Third one?", "Yes."] in want
    # the data folder from $TFDS_DATA_DIR; the field and split as arguments
    monkeypatch.setenv("TFDS_DATA_DIR", str(wiki))
    titles = sources.read_documents("tfds:wikipedia/20230601.en", text_field="title")
    assert sorted(d[0] for d in titles) == sorted(t for t, _ in ARTICLES)
    sliced = sources.read_documents("tfds:wikipedia/20230601.en:train[:2]#title")
    assert len(sliced) == 2
    # host shards: disjoint, together the corpus
    shards = [sources.read_documents("tfds:wikipedia/20230601.en", process_index=i,
                                     process_count=2) for i in range(2)]
    assert sorted(shards[0] + shards[1]) == want and all(shards)
    assert "tensorflow" not in sys.modules


def test_tfds_errors_name_dataset_split_and_fields(wiki):
    def read(spec):
        return sources.read_documents(spec, tfds_data_dir=str(wiki))

    with pytest.raises(FileNotFoundError, match=r"tfds:no_such_corpus split 'train': dataset "
                                                 rf"'no_such_corpus' is not prepared in {wiki}"):
        read("tfds:no_such_corpus")
    with pytest.raises(FileNotFoundError, match=r"tfds:wikipedia/20230601.de split 'train': "
                                                 r"dataset .* is not prepared in"):
        read("tfds:wikipedia/20230601.de")
    with pytest.raises(ValueError, match=r"tfds:wikipedia/20230601.en split 'validation': "
                                         r"dataset .* has no split 'validation'; its splits: "
                                         r"\['train'\], its fields: \['text', 'title'\]"):
        read("tfds:wikipedia/20230601.en:validation")
    with pytest.raises(ValueError, match=r"tfds:wikipedia/20230601.en split 'train': no field "
                                         r"'body'; its fields: \['text', 'title'\]"):
        read("tfds:wikipedia/20230601.en#body")
    with pytest.raises(ValueError, match="reads one field"):
        read("tfds:wikipedia/20230601.en#title,text")


def test_tfrecord_needs_tensorflow(wiki, monkeypatch):
    """A dataset prepared as TFRecord (TFDS's default) is read with tf.data; without TensorFlow
    the error says what to install or how to prepare it instead. TensorFlow is not installed
    here, so TFDS cannot write TFRecord: the prepared set's own record of its format (what routes
    the read) is changed, and TensorFlow hidden in case an environment has it."""
    info = next(wiki.glob("wikipedia/20230601.en/*/dataset_info.json"))
    record = json.loads(info.read_text())
    record["fileFormat"] = "tfrecord"
    info.write_text(json.dumps(record))
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"prepared as tfrecord in .*, which only tf.data reads: "
                                          r"install TensorFlow .*--file_format=array_record"):
        sources.read_documents("tfds:wikipedia/20230601.en", tfds_data_dir=str(wiki))


def test_tfds_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"flaxbert\[tfds\]"):
        sources.read_documents("tfds:wikipedia/20230601.en")


def test_pretraining_reads_a_tfds_corpus_from_its_config_folder(wiki, minilm_dir, tmp_path,
                                                                monkeypatch):
    """`pretrain.data.tfds_data_dir` names the prepared data (a pod's bucket) without
    $TFDS_DATA_DIR: pre-training and general distillation read their text through it."""
    from distill.experiments import pretrain as pretrain_configs
    from distill.tasks import pretrain
    from flaxbert.tokenization import load_tokenizer

    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/tensorflow_datasets to fall back on
    config = pretrain_configs.get_config("tiny")
    config.data.update(dict(train="tfds:wikipedia/20230601.en", eval="tfds:wikipedia/20230601.en",
                            max_seq_length=16, max_predictions_per_seq=2, dupe_factor=1,
                            tfds_data_dir=str(wiki)))
    config.trainer.batch_size = 2
    _, held_out = pretrain.datasets(config, load_tokenizer(minilm_dir / "vocab.txt"))
    batch = next(iter(held_out))
    assert batch["input_word_ids"].shape == (2, 16)
    config.data.tfds_data_dir = ""
    with pytest.raises(FileNotFoundError, match="is not prepared in"):
        next(iter(pretrain.held_out_dataset(config, load_tokenizer(minilm_dir / "vocab.txt"))))

"""Sentence-pair transfer sets: files of pairs, NLI* from real prepared TFDS sets, a pair task
(RTE from TFDS) distilled on pairs, and a transfer set of the wrong kind refused at start."""

import json
import logging

import ml_collections
import numpy as np
import pytest
from tfds_builders import prepare_glue, prepare_snli

from distill import cli, defaults
from distill.data import tasks, transfer
from distill.data.features import encode_examples
from distill.tasks import distill as kd
from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.pretrained import save_pretrained
from flaxbert.tokenization import load_tokenizer

RTE_DEV = [("It rains in Paris.", "Paris is wet."), ("A cat sat.", "An animal sat.")]
SNLI = [("A man plays a guitar.", "A man makes music."),
        ("a  CAT sat.", "An animal sat."),       # RTE dev's second pair, normalised: left out
        ("Two dogs run.", "Animals move."),
        ("Two dogs   run.", "animals move."),     # a duplicate within the pool
        ("A woman reads.", "Someone reads a book.")]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """Real prepared glue/rte and snli (TFDS's own builders over RTE and SNLI TSVs)."""
    root = tmp_path_factory.mktemp("tfds_pairs")
    rte = root / "glue_data" / "RTE"
    rte.mkdir(parents=True)
    header = "index\tsentence1\tsentence2\tlabel\n"
    labels = ("entailment", "not_entailment")
    train = [(f"Premise number {i} is here.", f"Hypothesis {i}.") for i in range(24)]
    (rte / "train.tsv").write_text(header + "".join(
        f"{i}\t{a}\t{b}\t{labels[i % 2]}\n" for i, (a, b) in enumerate(train)))
    (rte / "dev.tsv").write_text(header + "".join(
        f"{i}\t{a}\t{b}\t{labels[i % 2]}\n" for i, (a, b) in enumerate(RTE_DEV)))
    (rte / "test.tsv").write_text("index\tsentence1\tsentence2\n0\tA test premise.\tA test.\n")
    data_dir = root / "tensorflow_datasets"
    prepare_glue(root / "glue_data", "rte", data_dir)
    prepare_snli(SNLI, root / "snli", data_dir)
    return data_dir


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp("pair_teacher")
    model = Model(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=64), heads=("classifier",), num_labels=2)
    save_pretrained(path, model, init_params(model, 3), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


def _config(teacher, transfer_file, task, data_dir):
    config = ml_collections.ConfigDict()
    config.teacher = ml_collections.ConfigDict(dict(name=str(teacher), dtype="float32",
                                                    scan_layers=False))
    config.model = defaults.model("tiny", overrides=dict(hidden_size=16, num_hidden_layers=1,
                                                         num_attention_heads=2,
                                                         intermediate_size=32,
                                                         max_position_embeddings=64))
    config.task = ml_collections.ConfigDict(dict(name=task, data_dir=str(data_dir), seed=0))
    config.data = ml_collections.ConfigDict(dict(transfer=str(transfer_file), vader_dir="",
                                                 max_seq_length=32, buckets=(32,), vocab="",
                                                 group_by_length=False))
    config.distill = ml_collections.ConfigDict(dict(
        terms=[dict(feature="logits", loss="soft_ce", weight=1.0, temperature=1.0,
                    t_squared=False)],
        alpha=1.0, student_init="model", include_train_texts=True, cache="", held_out=0))
    config.trainer = defaults.trainer(batch_size=4, num_steps=3, log_every=1, eval_every=3,
                                      checkpoint_every=100)
    config.optimizer = defaults.optimizer(lr=1e-3, warmup_fraction=0.0)
    config.mesh = defaults.mesh()
    return config


def test_nli_star_from_tfds(tfds_dir, tmp_path, caplog):
    dev_test = [e for split in ("dev", "test")
                for e in tasks.read_glue("tfds:glue/rte", tfds_dir, split)]
    with caplog.at_level(logging.INFO, logger="distill.data.transfer"):
        pairs = transfer.nli_pairs(("glue/mnli", "snli", "glue/rte"), data_dir=str(tfds_dir),
                                   exclude=dev_test)
    assert "skipped glue/mnli" in caplog.text  # not prepared here
    # in TFDS's order; RTE dev's pair and one of the duplicates dropped
    def norm(pairs):
        return sorted((transfer.normalise(a), transfer.normalise(b)) for a, b in pairs)

    assert norm(pairs[:3]) == norm([SNLI[0], SNLI[2], SNLI[4]])
    assert len(pairs) == 3 + 24 and ("Premise number 3 is here.", "Hypothesis 3.") in pairs
    for name in ("nli.tsv", "nli.jsonl"):
        assert transfer.write_pairs(tmp_path / name, pairs) == len(pairs)
    assert transfer.read_pairs(tmp_path / "nli.jsonl") == pairs
    # TSV: each run of whitespace (tabs, line breaks) as one space
    assert transfer.read_pairs(tmp_path / "nli.tsv") == [
        (" ".join(a.split()), " ".join(b.split())) for a, b in pairs]
    # the CLI writes the same set, leaving out the task's dev and test pairs
    out = tmp_path / "cli.tsv"
    cli.main(["distill", "transfer-pairs", "--out", str(out), "--tfds", "glue/mnli,snli,glue/rte",
              "--data-dir", str(tfds_dir), "--task", "tfds:glue/rte"])
    assert transfer.read_pairs(out) == transfer.read_pairs(tmp_path / "nli.tsv")
    with pytest.raises(SystemExit, match="unknown pair fields; name them: tfds:wikipedia#"):
        cli.main(["distill", "transfer-pairs", "--out", str(out), "--tfds", "wikipedia",
                  "--data-dir", str(tfds_dir)])


def test_pair_files_errors(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nonly one\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected two TAB-separated texts, found 1"):
        transfer.read_pairs(bad)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text_a": "x", "text_b": "y"}\n{"premise": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected an object with string fields "
                                         r"text_a and text_b"):
        transfer.read_pairs(bad)


@pytest.mark.slow
def test_pair_task_distils_on_pairs(tfds_dir, teacher_dir, tmp_path):
    """RTE from TFDS, distilled on NLI* pairs (plus its labelled pairs): teacher and student
    read [CLS] a [SEP] b [SEP] with type ids 0 / 1, as fine-tuning packs them."""
    transfer_file = tmp_path / "nli.tsv"
    transfer.write_pairs(transfer_file, transfer.nli_pairs(("snli", "glue/rte"),
                                                           data_dir=str(tfds_dir)))
    config = _config(teacher_dir, transfer_file, "tfds:glue/rte", tfds_dir)
    examples = transfer.transfer_examples(config, tasks.get_task("tfds:glue/rte"))
    assert (examples[0].text_a, examples[0].text_b) == transfer.read_pairs(transfer_file)[0]
    tokenizer = load_tokenizer(teacher_dir / "vocab.txt")
    features = encode_examples(examples, tokenizer, 32)
    a = tokenizer.encode_batch([examples[0].text_a])[0]
    assert features["input_word_ids"][0, 1:len(a) + 1].tolist() == a
    assert features["input_type_ids"][0, len(a) + 2] == 1  # b's first token
    result = kd.run(config, tmp_path / "run")
    assert result["steps"] == 3 and 0.0 <= result["dev"]["acc"] <= 1.0
    assert result["final"]["dev_acc"] == result["dev"]["acc"]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run/metrics.jsonl").open()
              if '"loss"' in line]
    assert len(losses) == 3 and np.all(np.isfinite(losses))


def test_wrong_kind_of_transfer_set_is_refused_at_start(tfds_dir, tmp_path, glue_sst2):
    """Refused before the teacher is loaded (the teacher named here does not exist)."""
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("One sentence.\nAnother one.\n")
    with pytest.raises(ValueError, match=r"data.transfer='.*sentences.txt' holds single "
                                         r"sentences, but task 'rte' takes sentence pairs; use a "
                                         r"transfer set of pairs"):
        kd.run(_config(tmp_path / "no_teacher", sentences, "tfds:glue/rte", tfds_dir),
               tmp_path / "a")
    pairs = tmp_path / "pairs.jsonl"
    transfer.write_pairs(pairs, [("a", "b"), ("c", "d")])
    with pytest.raises(ValueError, match=r"holds sentence pairs, but task 'sst2' takes single "
                                         r"sentences"):
        kd.run(_config(tmp_path / "no_teacher", pairs, "sst2", glue_sst2), tmp_path / "b")


@pytest.fixture
def glue_sst2(tmp_path):
    folder = tmp_path / "glue_data" / "SST-2"
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("sentence\tlabel\ngood film \t1\nbad film \t0\n")
    (folder / "test.tsv").write_text("index\tsentence\n0\tok film \n")
    return folder.parent

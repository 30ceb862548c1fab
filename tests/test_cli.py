"""The `flaxbert` command: info, embed (equal to transformers' mean pooling, input order kept,
few compiles), convert, the nearest-neighbour demo, and one-line errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from flaxbert.cli import Embedder, demo_neighbours, main, read_vader_sentences
from flaxbert.pretrained import from_pretrained


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return from_pretrained(minilm_dir, heads=())


def test_info(minilm_dir, capsys):
    main(["info", str(minilm_dir)])
    out = capsys.readouterr().out
    assert "family            bert" in out and "layers            6" in out
    assert "hidden            384" in out and "heads             12" in out
    assert "intermediate      1536" in out and "vocab             30522" in out
    assert "model heads       (none)" in out
    # all-MiniLM-L6-v2 with its pooler; embeddings are (30522 + 512 + 2) × 384 + a LayerNorm
    assert "parameters        22,713,216 (10,794,624 without embeddings)" in out


def test_embed_matches_transformers_mean_pooling(tmp_path, minilm_dir, movie_sentences):
    texts = movie_sentences[:50]
    (tmp_path / "texts.txt").write_text("\n".join(texts))
    main(["embed", "--model", str(minilm_dir), "--input", str(tmp_path / "texts.txt"),
          "--batch-size", "16"])
    ours = np.load(tmp_path / "texts.npy")
    tok = transformers.BertTokenizerFast(str(minilm_dir / "vocab.txt"))
    hf = transformers.BertModel.from_pretrained(minilm_dir).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = hf(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    assert ours.dtype == np.float32 and ours.shape == (50, 384)
    # The texts have different lengths, so sorting by length reorders them: equality row by
    # row also proves the input order is kept.
    lengths = batch["attention_mask"].sum(1).numpy()
    assert not np.all(np.diff(lengths) >= 0)
    assert np.max(np.abs(ours - expected)) <= 1e-4


def test_embedder_keeps_order_and_compiles_few_shapes(minilm, movie_sentences):
    model, params, tokenizer = minilm
    texts = movie_sentences[100:170]  # 70 texts: 4 batches of 20, the last one padded
    embedder = Embedder(model, params, tokenizer, "mean", batch_size=20, seq_length=64)
    forward = embedder(texts)
    backward = embedder(texts[::-1])
    np.testing.assert_allclose(backward, forward[::-1], atol=1e-5)
    one = embedder([texts[5]])
    np.testing.assert_allclose(one[0], forward[5], atol=1e-5)  # padding rows change nothing
    # batch rows fixed at 20 (1 for the single text); lengths from the buckets 16, 32, 64
    assert {rows for rows, _ in embedder.shapes} == {20, 1}
    assert {length for _, length in embedder.shapes} <= {16, 32, 64}
    assert len(embedder.shapes) <= 4
    cls = Embedder(model, params, tokenizer, "cls", batch_size=32, seq_length=64)(texts[:3])
    assert cls.shape == (3, 384) and not np.allclose(cls, forward[:3], atol=1e-3)


def test_demo_neighbours_finds_a_sentence_itself(minilm, vader_dir):
    model, params, tokenizer = minilm
    corpus = read_vader_sentences(vader_dir, limit=120)
    assert len(corpus) == 120 and all(corpus)
    queries = [corpus[17], "A gripping thriller with superb performances."]
    result = demo_neighbours(model, params, tokenizer, corpus, queries, k=3, batch_size=64)
    assert [q for q, _ in result] == queries
    (score, text), *_ = result[0][1]
    assert text == corpus[17] and score == pytest.approx(1.0, abs=1e-4)
    for _, hits in result:
        scores = [s for s, _ in hits]
        assert len(hits) == 3 and scores == sorted(scores, reverse=True)
        assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in scores)


def test_demo_command(minilm_dir, vader_dir, capsys):
    main(["demo", "--model", str(minilm_dir), "--data", str(vader_dir), "--sentences", "64"])
    out = capsys.readouterr().out
    assert out.startswith("64 movie-review sentences")
    assert out.count("\nquery: ") == 5 and "wall time" in out
    assert len([line for line in out.splitlines() if line.startswith("  0.")]) >= 10


def test_convert_to_hf_and_back(tmp_path, minilm_dir, capsys):
    main(["convert", str(minilm_dir), str(tmp_path / "copy"), "--to", "hf"])
    assert (tmp_path / "copy" / "model.safetensors").is_file()
    main(["info", str(tmp_path / "copy")])
    assert "parameters        22,713,216" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="copy exists and is not empty"):
        main(["convert", str(minilm_dir), str(tmp_path / "copy"), "--to", "hf"])


def test_errors_are_one_line(tmp_path, minilm_dir, vader_dir):
    texts = tmp_path / "texts.txt"
    texts.write_text("a sentence\n")
    with pytest.raises(SystemExit, match="input file .*missing.txt does not exist"):
        main(["embed", "--model", str(minilm_dir), "--input", str(tmp_path / "missing.txt")])
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(SystemExit, match="empty.txt has no text"):
        main(["embed", "--model", str(minilm_dir), "--input", str(tmp_path / "empty.txt")])
    with pytest.raises(SystemExit, match="model folder .*nope does not exist"):
        main(["embed", "--model", str(tmp_path / "nope"), "--input", str(texts)])
    with pytest.raises(SystemExit, match="model folder .*nope does not exist"):
        main(["info", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="output folder .*nodir does not exist"):
        main(["embed", "--model", str(minilm_dir), "--input", str(texts),
              "--output", str(tmp_path / "nodir" / "x.npy")])
    with pytest.raises(SystemExit, match="batch_size=0"):
        main(["embed", "--model", str(minilm_dir), "--input", str(texts), "--batch-size", "0"])
    with pytest.raises(SystemExit, match="seq_length=1000; expected 2..512"):
        main(["embed", "--model", str(minilm_dir), "--input", str(texts), "--seq-length", "1000"])
    with pytest.raises(SystemExit, match="model folder .*nope does not exist"):
        main(["convert", str(tmp_path / "nope"), str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="movieReviewSnippets_GroundTruth.txt does not exist"):
        main(["demo", "--model", str(minilm_dir), "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match="data folder .*nope does not exist"):
        main(["demo", "--model", str(minilm_dir), "--data", str(tmp_path / "nope")])
    for argv in (["info", str(tmp_path / "nope")],
                 ["embed", "--model", str(minilm_dir), "--input", str(tmp_path / "empty.txt")]):
        proc = subprocess.run([sys.executable, "-m", "flaxbert.cli", *argv],
                              capture_output=True, text=True)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("flaxbert ")

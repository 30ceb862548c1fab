"""The `flaxbert` command: info, embed (equal to transformers' mean pooling), errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from flaxbert.cli import main


def test_info(minilm_dir, capsys):
    main(["info", str(minilm_dir)])
    out = capsys.readouterr().out
    assert "layers            6" in out and "hidden            384" in out
    assert "parameters        22,713,216" in out  # all-MiniLM-L6-v2 with its pooler


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
    assert ours.shape == (50, 384)
    assert np.max(np.abs(ours - expected)) <= 1e-4  # also proves the input order is kept


def test_errors_are_one_line(tmp_path, minilm_dir):
    with pytest.raises(SystemExit, match="input file .*missing.txt does not exist"):
        main(["embed", "--model", str(minilm_dir), "--input", str(tmp_path / "missing.txt")])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SystemExit, match="has no text"):
        main(["embed", "--model", str(minilm_dir), "--input", str(tmp_path / "empty.txt")])
    with pytest.raises(SystemExit, match="model folder .*nope does not exist"):
        main(["info", str(tmp_path / "nope")])
    proc = subprocess.run([sys.executable, "-m", "flaxbert.cli", "info", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr

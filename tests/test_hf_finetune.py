"""tools/hf_finetune.py: transformers-PyTorch fine-tuning of an export on the project's split."""

import json

import numpy as np
import pytest
from helpers import load_tool

from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.pretrained import from_pretrained, save_pretrained
from flaxbert.tokenization import load_tokenizer

hf_finetune = load_tool("hf_finetune")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp("export")
    model = Model(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64), heads=())
    save_pretrained(path, model, init_params(model, 0), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


def test_finetunes_an_export_and_reports_dev_and_test_accuracy(tiny_export, capsys):
    best = hf_finetune.main([str(tiny_export), "--lr", "1e-3", "3e-4", "--epochs", "1",
                             "--limit", "96", "--max-length", "32"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["lr"] for line in lines[:2]] == [1e-3, 3e-4]
    assert lines[2]["picked_on_dev"] == best
    assert best["dev_acc"] == max(line["dev_acc"] for line in lines[:2])
    for line in lines[:2]:  # 96 examples / batch 32 = 3 steps; the full 1,056 dev and test
        assert line["steps"] == line["best_step"] == 3 and line["train_examples"] == 96
        assert 0.3 < line["dev_acc"] < 0.7 and 0.3 < line["test_acc"] < 0.7  # near chance
    # the export's weights are what PyTorch fine-tunes; random: draws a fresh encoder
    ours = from_pretrained(tiny_export).params["backbone"]["embeddings"]["word_embeddings"]
    loaded, _ = hf_finetune.load_model(str(tiny_export))
    fresh, _ = hf_finetune.load_model(f"random:{tiny_export}")
    for model, same in ((loaded, True), (fresh, False)):
        theirs = model.bert.embeddings.word_embeddings.weight.detach().numpy()
        assert np.allclose(theirs, ours["embedding"], atol=1e-6) == same

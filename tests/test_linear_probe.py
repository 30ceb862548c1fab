"""tools/linear_probe.py: the frozen features it reads and the probe it fits."""

import numpy as np
from helpers import load_tool

from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.tokenization import load_tokenizer, pack_inputs

linear_probe = load_tool("linear_probe")


def test_features_average_real_tokens_only_and_a_separable_task_probes_perfectly(minilm_dir):
    tokenizer = load_tokenizer(minilm_dir / "vocab.txt")
    model = Model(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64), heads=())
    params = init_params(model, 0)
    texts = [f"{word} " * n for n in range(1, 11) for word in ("wonderful", "dreadful")]
    features = linear_probe.frozen_features(model, params, tokenizer, texts, seq_length=16,
                                            batch_size=8)
    assert all(features[name].shape == (20, 32) for name in linear_probe.FEATURES)
    # the mean covers [CLS] … [SEP] of each text, not its padding: a text alone gives the same
    alone = linear_probe.frozen_features(model, params, tokenizer, texts[:1], seq_length=16)
    np.testing.assert_allclose(features["mean"][0], alone["mean"][0], atol=1e-5)
    padded = model.apply({"params": params}, **{k: v[:1] for k, v in pack_inputs(
        [[tokenizer.encode(texts[0])]], 16, tokenizer.cls_id, tokenizer.sep_id,
        tokenizer.pad_id).items()})["sequence_output"]
    assert not np.allclose(features["mean"][0], np.asarray(padded)[0].mean(0), atol=1e-4)
    labels = np.arange(20) % 2
    accuracy = linear_probe.probe(features, labels, features, labels)
    assert set(accuracy) == set(linear_probe.FEATURES) and accuracy["mean"] == 1.0

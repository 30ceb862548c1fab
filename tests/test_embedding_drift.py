"""tools/embedding_drift.py: the shared-direction measure and the partial re-draw of an export."""

import jax
import numpy as np
import pytest
from helpers import load_tool

from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.pretrained import from_pretrained, save_pretrained
from flaxbert.tokenization import load_tokenizer

embedding_drift = load_tool("embedding_drift")


@pytest.fixture(scope="module")
def drifted_export(tmp_path_factory, minilm_dir):
    """A small export whose word embeddings all share one direction, 20× their init scale."""
    path = tmp_path_factory.mktemp("drifted")
    model = Model(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64), heads=())
    params = init_params(model, 7)
    table = params["backbone"]["embeddings"]["word_embeddings"]["embedding"]
    shared = np.random.default_rng(0).choice([-0.4, 0.4], size=table.shape[1])
    params["backbone"]["embeddings"]["word_embeddings"]["embedding"] = table + shared
    save_pretrained(path, model, params, load_tokenizer(minilm_dir / "vocab.txt"))
    return path


def test_drift_is_near_one_for_shared_rows_and_near_zero_for_a_fresh_init(drifted_export):
    report = embedding_drift.main([str(drifted_export)])
    assert report["mean_unit_norm"] > 0.95
    assert all(cosine > 0.95 for _, cosine in report["task_bins"].values())
    fresh = init_params(from_pretrained(drifted_export).model, 0)
    table = np.asarray(fresh["backbone"]["embeddings"]["word_embeddings"]["embedding"])
    counts = np.ones(table.shape[0])
    assert embedding_drift.drift(table, counts)["mean_unit_norm"] < 0.05
    # the bins count the demo task's training tokens: every bin is populated
    assert sum(n for n, _ in report["task_bins"].values()) > 5000


def test_reset_redraws_only_the_chosen_part(drifted_export, tmp_path):
    out = tmp_path / "reset"
    embedding_drift.main([str(drifted_export), "--reset", "word_embeddings", "--out", str(out),
                          "--seed", "3"])
    before, after = from_pretrained(drifted_export), from_pretrained(out)
    fresh = init_params(before.model, 3)
    for (path, old), new, init in zip(jax.tree_util.tree_flatten_with_path(before.params)[0],
                                      jax.tree_util.tree_leaves(after.params),
                                      jax.tree_util.tree_leaves(fresh)):
        expected = init if "word_embeddings" in jax.tree_util.keystr(path) else old
        np.testing.assert_array_equal(np.asarray(new), np.asarray(expected))
    assert embedding_drift.main([str(out)])["mean_unit_norm"] < 0.05

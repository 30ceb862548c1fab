"""ELECTRA's replaced-token detection (distill/electra.py, `distill pretrain` objective=electra)."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import transformers

from distill import electra, experiments
from distill.cli import main
from distill.experiments import pretrain as pretrain_configs
from distill.tasks import pretrain
from flaxbert.pretrained import from_pretrained
from flaxbert.tokenization import load_tokenizer

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def sigmoid_cross_entropy(z, y):
    """−[y log σ(z) + (1 − y) log(1 − σ(z))], written out in float64."""
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_rtd_terms_equal_a_hand_computation():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (3, 7)).astype(np.float32)
    replaced = rng.random((3, 7)) < 0.3
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    nll, correct, weights = electra.replaced_token_detection_terms(jnp.asarray(z), replaced, mask)
    expected = sigmoid_cross_entropy(z, replaced) * mask
    np.testing.assert_allclose(np.asarray(nll), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(correct), ((z > 0) == replaced) * mask)
    np.testing.assert_array_equal(np.asarray(weights), mask)


def test_samples_replace_exactly_the_masked_positions():
    ids = jnp.array([[101, 11, 103, 13, 103, 102, 0, 0],
                     [101, 21, 22, 103, 102, 0, 0, 0]])
    # row 0: slots 2 and 4 masked (originals 12, 14), a padding slot (weight 0, position 0);
    # row 1: slot 3 masked (original 23) and slot 1 unmasked-but-predicted (original 21)
    positions = jnp.array([[2, 4, 0], [3, 1, 0]])
    weights = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    originals = jnp.array([[12, 14, 0], [23, 21, 0]])
    sampled = jnp.array([[500, 14, 777], [600, 21, 888]])  # 14 and 21 = the original tokens
    corrupted, replaced = electra.replace_masked(ids, positions, weights, originals, sampled)
    np.testing.assert_array_equal(corrupted, [[101, 11, 500, 13, 14, 102, 0, 0],
                                              [101, 21, 22, 600, 102, 0, 0, 0]])
    expected = np.zeros((2, 8), bool)
    expected[0, 2] = expected[1, 3] = True  # a sample equal to the original counts as original
    np.testing.assert_array_equal(replaced, expected)


def small_config(tmp_path, text):
    config = pretrain_configs.get_config("tiny")
    config.objective = "electra"
    config.model.overrides = SMALL
    config.electra.generator_width = 0.5
    config.data.train = config.data.eval = f"text:{text}"
    config.data.max_seq_length = 32
    config.data.max_predictions_per_seq = 5
    config.data.dupe_factor = 1
    config.trainer.batch_size = 4
    return config


@pytest.fixture
def text(tmp_path, movie_sentences):
    path = tmp_path / "train.txt"
    path.write_text("\n\n".join("\n".join(movie_sentences[i:i + 4]) for i in range(0, 400, 4)) + "\n")
    return path


def test_electra_loss_is_generator_mlm_plus_50_times_rtd_by_hand(tmp_path, text):
    """The task's loss on a real batch against numpy: the generator's NLL at the masked
    positions + 50 × the discriminator's sigmoid cross-entropy over every real token, whose
    labels mark exactly the masked positions where the generator's sample differs."""
    config = small_config(tmp_path, text)
    tokenizer = load_tokenizer(config.data.vocab)
    task = pretrain.make_task(config, tokenizer)
    assert task.rtd_weight == 50.0
    params = nn.unbox(task.init_params(jax.random.PRNGKey(0)))
    batch = jax.tree_util.tree_map(jnp.asarray, next(iter(pretrain.datasets(config, tokenizer)[0])))
    rng = jax.random.PRNGKey(3)
    loss, metrics = task.loss(params, {}, batch, rng, task.denominators(batch))

    corrupt_rng, dropout_rng = jax.random.split(rng)  # as the task splits its step's key
    gen_logits, corrupted, replaced = electra.corrupt(task.model, params, batch, corrupt_rng, False)
    rtd_logits = electra.discriminate(task.model, params, batch, corrupted, dropout_rng, False)
    ids, mask = np.asarray(batch["input_word_ids"]), np.asarray(batch["input_mask"]) > 0
    corrupted, replaced = np.asarray(corrupted), np.asarray(replaced)
    masked = np.zeros_like(mask)
    w = np.asarray(batch["masked_lm_weights"]) > 0
    for b, p in zip(*np.nonzero(w)):
        masked[b, batch["masked_lm_positions"][b, p]] = True
    assert (corrupted[~masked] == ids[~masked]).all()  # only masked positions change
    original = ids.copy()
    original[np.nonzero(w)[0], np.asarray(batch["masked_lm_positions"])[w]] = \
        np.asarray(batch["masked_lm_ids"])[w]
    np.testing.assert_array_equal(replaced, corrupted != original)
    assert replaced.any() and (replaced <= masked).all()

    logits = np.asarray(gen_logits, np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    target = np.take_along_axis(logp, np.asarray(batch["masked_lm_ids"])[..., None], -1)[..., 0]
    mlm = -(target * w).sum() / w.sum()
    rtd = (sigmoid_cross_entropy(np.asarray(rtd_logits), replaced) * mask).sum() / mask.sum()
    assert float(metrics["mlm_loss"]) == pytest.approx(mlm, rel=1e-5)
    assert float(metrics["rtd_loss"]) == pytest.approx(rtd, rel=1e-5)
    assert float(loss) == pytest.approx(mlm + 50 * rtd, rel=1e-5)


def test_held_out_recall_and_precision_of_the_discriminator_by_hand(tmp_path, text):
    """The evaluation's recall (replaced tokens flagged) and precision (flagged tokens that were
    replaced) as (hits, count) pairs, against the flags counted in numpy over the real tokens."""
    config = small_config(tmp_path, text)
    tokenizer = load_tokenizer(config.data.vocab)
    task = pretrain.make_task(config, tokenizer)
    params = nn.unbox(task.init_params(jax.random.PRNGKey(0)))
    batch = jax.tree_util.tree_map(jnp.asarray, next(iter(pretrain.datasets(config, tokenizer)[0])))
    sums = task.eval_metrics(params, {}, batch)

    corrupt_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(0))  # the evaluation's key
    _, corrupted, replaced = electra.corrupt(task.model, params, batch, corrupt_rng, True)
    logits = electra.discriminate(task.model, params, batch, corrupted, dropout_rng, True)
    real = np.asarray(batch["input_mask"]) > 0
    flagged, replaced = (np.asarray(logits) > 0) & real, np.asarray(replaced) & real
    assert 0 < flagged.sum() < real.sum() and replaced.any()  # a random init flags some
    hits = (flagged & replaced).sum()
    assert [float(x) for x in sums["rtd_recall"]] == [hits, replaced.sum()]
    assert [float(x) for x in sums["rtd_precision"]] == [hits, flagged.sum()]


def test_generator_and_discriminator_share_the_embeddings(tmp_path, text):
    config = small_config(tmp_path, text)
    task = pretrain.make_task(config, load_tokenizer(config.data.vocab))
    params = nn.unbox(task.init_params(jax.random.PRNGKey(0)))
    assert "embeddings" not in params["generator"]  # one embedding block, the discriminator's
    assert params["generator"]["embeddings_project"]["kernel"].shape == (32, 16)  # width 0.5
    grads = jax.grad(lambda p: jnp.sum(task.model.apply(
        {"params": p}, jnp.ones((1, 6), jnp.int32), jnp.ones((1, 6), jnp.int32),
        jnp.zeros((1, 6), jnp.int32), jnp.array([[2]]), method=electra.Electra.generate)))(params)
    # the generator's output reaches the shared word embeddings (input and tied output)
    assert np.abs(grads["discriminator"]["backbone"]["embeddings"]["word_embeddings"]
                  ["embedding"]).sum() > 0


@pytest.mark.slow
def test_electra_export_is_a_plain_bert_transformers_loads_and_finetunes(tmp_path, text):
    """`distill pretrain` with objective=electra exports the discriminator alone: transformers'
    BertModel loads it with no missing or unexpected weights and its hidden states equal ours;
    `distill finetune` starts from it."""
    run = tmp_path / "run"
    main(["distill", "pretrain", f"--config={experiments.DIR / 'pretrain.py:tiny'}",
          f"--workdir={run}", "--config.objective=electra", "--config.trainer.num_steps=3",
          "--config.trainer.batch_size=4", "--config.trainer.eval_every=3",
          f"--config.model.overrides={SMALL}", f"--config.data.train=text:{text}",
          f"--config.data.eval=text:{text}", "--config.data.max_seq_length=32",
          "--config.data.max_predictions_per_seq=5", "--config.data.dupe_factor=1"])
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 3 and 0 <= result["eval_rtd_accuracy"] <= 1
    assert 0 <= result["eval_rtd_recall"] <= 1 and 0 <= result["eval_rtd_precision"] <= 1
    assert result["parameters"] < result["trained_parameters"]  # generator + RTD head dropped
    ours = from_pretrained(run / "export")
    assert ours.model.heads == ()
    hf, info = transformers.BertModel.from_pretrained(run / "export", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = np.array([[101, 2023, 3185, 2001, 2307, 102, 0, 0], [101, 6659, 999, 102, 0, 0, 0, 0]])
    mask = (ids > 0).astype(np.int32)
    with torch.no_grad():
        theirs = hf.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    mine = ours.model.apply({"params": ours.params}, jnp.asarray(ids), jnp.asarray(mask),
                            jnp.zeros_like(ids))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(mine["sequence_output"])[real],
                               theirs.last_hidden_state.numpy()[real], atol=1e-4)
    finetuned = tmp_path / "finetune"
    main(["distill", "finetune", f"--config={experiments.DIR / 'finetune.py:sentiment'}",
          f"--workdir={finetuned}", f"--config.model.name={run / 'export'}",
          "--config.trainer.num_steps=3", "--config.trainer.batch_size=8"])
    assert json.loads((finetuned / "result.json").read_text())["steps"] == 3


def test_electra_needs_a_random_init_and_no_nsp(tmp_path, text):
    config = small_config(tmp_path, text)
    config.data.nsp = True
    with pytest.raises(ValueError, match="objective=electra with data.nsp=True"):
        pretrain.make_task(config, load_tokenizer(config.data.vocab))
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.nsp = False
    config.electra.generator_width = 0.78  # 25 wide, 2 heads
    with pytest.raises(ValueError, match="generator_width=0.78.*not divisible"):
        pretrain.make_task(config, load_tokenizer(config.data.vocab))


def test_batch_rows_gradient_updates_only_the_batchs_embedding_rows(tmp_path, text):
    """MLM with embedding_gradient=batch_rows: the same loss; word-embedding rows of tokens
    in the batch (inputs or masked targets) get exactly the dense gradient, every other row
    none (the dense gradient moves them all through the tied softmax)."""
    config = small_config(tmp_path, text)
    config.objective = "mlm"
    tokenizer = load_tokenizer(config.data.vocab)
    dense = pretrain.make_task(config, tokenizer)
    config.embedding_gradient = "batch_rows"
    sparse = pretrain.make_task(config, tokenizer)
    params = nn.unbox(dense.init_params(jax.random.PRNGKey(0)))
    batch = jax.tree_util.tree_map(jnp.asarray, next(iter(pretrain.datasets(config, tokenizer)[0])))

    def grads(task):
        return jax.grad(lambda p: task.loss(p, {}, batch, None, task.denominators(batch))[0])(params)

    g_dense, g_sparse = grads(dense), grads(sparse)
    table = lambda g: np.asarray(g["backbone"]["embeddings"]["word_embeddings"]["embedding"])  # noqa: E731
    present = np.zeros(tokenizer.vocab_size, bool)
    present[np.asarray(batch["input_word_ids"]).ravel()] = True
    present[np.asarray(batch["masked_lm_ids"]).ravel()] = True
    assert 0 < present.sum() < tokenizer.vocab_size // 10
    assert (np.abs(table(g_dense)[~present]).sum(1) > 0).all()  # dense: every row moves
    assert not table(g_sparse)[~present].any()
    np.testing.assert_array_equal(table(g_sparse)[present], table(g_dense)[present])
    for a, b in zip(jax.tree_util.tree_leaves(g_sparse["backbone"]["layer_0"]),
                    jax.tree_util.tree_leaves(g_dense["backbone"]["layer_0"])):
        np.testing.assert_array_equal(a, b)
    config.objective = "electra"
    with pytest.raises(ValueError, match="embedding_gradient"):
        pretrain.make_task(config, tokenizer)


def test_generator_samples_follow_its_softmax():
    """`sample_categorical` (inverse CDF, one uniform per position) draws each token with its
    softmax probability: 40,000 draws over 6 tokens, every frequency within 5 standard errors,
    and a token of probability ~0 (logit −60) never drawn."""
    logits = jnp.array([2.0, 0.5, -1.0, 1.0, 0.0, -60.0])
    draws = np.asarray(electra.sample_categorical(jax.random.PRNGKey(0),
                                                  jnp.broadcast_to(logits, (200, 200, 6))))
    p = np.asarray(jax.nn.softmax(logits))
    counts = np.bincount(draws.ravel(), minlength=6)
    n = draws.size
    np.testing.assert_array_less(np.abs(counts / n - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-12)
    assert counts[5] == 0 and draws.shape == (200, 200)

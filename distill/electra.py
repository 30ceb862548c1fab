"""ELECTRA's replaced-token detection (Clark et al. 2020) for pre-training a compact BERT.

A small generator (a BERT whose width is `generator_width` × the student's) is trained with MLM
on the masked positions; its samples — drawn from its softmax with the step's RNG, no gradient
through the sampling — replace the masked tokens, and the student, as the discriminator, learns
on every real token whether it was replaced. Loss = MLM(generator) + `rtd_weight` · RTD
(the paper's λ = 50). Generator and discriminator share the token, position and token-type
embeddings (with their LayerNorm); the generator projects them to its width when narrower, and
its MLM head maps back to the embedding width and scores against the shared word embeddings,
as ELECTRA does.

The discriminator is a plain `flaxbert.Model` (no heads) under the `discriminator` key of the
parameters: that subtree alone is the export, a BERT any BERT loader reads. The RTD head
(dense + activation + dense → 1, ELECTRA's) and the generator are dropped with it.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxbert.bert import BertLayer, activation, attention_mask, dense
from flaxbert.heads import MaskedLMHead, Model, gather_positions


def generator_config(config, width: float):
    """The discriminator's config scaled by `width` in hidden size, FFN size and attention heads
    (the paper's "generator size" multiplier; depth and everything else unchanged)."""
    if config.model_type != "bert":
        raise ValueError(f"electra.generator_width: ELECTRA needs a BERT student, got model_type="
                         f"{config.model_type!r}")
    if not 0 < width <= 1:
        raise ValueError(f"electra.generator_width={width}; expected a fraction in (0, 1]")
    heads = max(1, round(config.num_attention_heads * width))
    hidden = int(round(config.hidden_size * width))
    if hidden % heads:
        raise ValueError(f"electra.generator_width={width}: generator hidden size {hidden} is not "
                         f"divisible by its {heads} attention heads; pick another fraction")
    return config.replace(hidden_size=hidden, num_attention_heads=heads,
                          intermediate_size=max(1, int(round(config.intermediate_size * width))))


class Generator(nn.Module):
    """The generator's Transformer and MLM head over the shared embeddings' output."""

    config: Any        # the generator's (generator_config)
    head_config: Any   # the discriminator's: the MLM head maps back to the embedding width
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, embedded, mask, masked_lm_positions, attend, deterministic: bool):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        x = embedded
        if x.shape[-1] != cfg.hidden_size:
            x = dense(cfg.hidden_size, ("embed", "embed_out"), cfg, dt, pdt, "embeddings_project")(x)
        for i in range(cfg.num_hidden_layers):
            x, _ = BertLayer(cfg, dt, pdt, name=f"layer_{i}")(x, mask, deterministic)
        hidden = gather_positions(x, masked_lm_positions)
        return MaskedLMHead(self.head_config, dt, pdt, name="mlm")(hidden, attend)


class Electra(nn.Module):
    """Generator + discriminator (`discriminator`: a headless `Model`, the student) + RTD head."""

    discriminator: Model
    generator_config: Any

    def setup(self):
        cfg = self.discriminator.config
        dt, pdt = self.discriminator.dtype, self.discriminator.param_dtype
        self.generator = Generator(self.generator_config, cfg, dt, pdt)
        self.rtd_transform = dense(cfg.hidden_size, ("embed", "embed_out"), cfg, dt, pdt,
                                   "rtd_transform")
        self.rtd_output = dense(1, ("embed_out", "labels"), cfg, dt, pdt, "rtd_output")

    def generate(self, input_word_ids, input_mask, input_type_ids, masked_lm_positions, *,
                 input_positions=None, deterministic: bool = True):
        """The generator's MLM logits [B, P, V] at `masked_lm_positions` (float32)."""
        backbone = self.discriminator.backbone
        embedded = backbone.embeddings(input_word_ids, input_type_ids, deterministic,
                                       input_positions)
        mask = attention_mask(input_mask, packed=input_positions is not None)
        return self.generator(embedded, mask, masked_lm_positions, backbone.attend, deterministic)

    def discriminate(self, input_word_ids, input_mask, input_type_ids, *, input_positions=None,
                     deterministic: bool = True):
        """The discriminator's replaced-token logits [B, T] (float32; > 0 = replaced)."""
        seq = self.discriminator(input_word_ids, input_mask, input_type_ids,
                                 input_positions=input_positions,
                                 deterministic=deterministic)["sequence_output"]
        h = activation(self.discriminator.config.hidden_act)(self.rtd_transform(seq))
        return self.rtd_output(h)[..., 0].astype(jnp.float32)

    def __call__(self, input_word_ids, input_mask, input_type_ids, masked_lm_positions, *,
                 input_positions=None, deterministic: bool = True):
        """Both halves on the same tokens: what `init` traces to create every parameter."""
        kw = dict(input_positions=input_positions, deterministic=deterministic)
        return (self.generate(input_word_ids, input_mask, input_type_ids, masked_lm_positions, **kw),
                self.discriminate(input_word_ids, input_mask, input_type_ids, **kw))


def replace_masked(input_word_ids, masked_lm_positions, masked_lm_weights, masked_lm_ids,
                   sampled):
    """(corrupted ids, replaced) [B, T]: the generator's `sampled` tokens [B, P] written at the
    real masked positions (weight > 0; padding slots change nothing), and where the corrupted
    token differs from the original (a sample equal to the original counts as original)."""
    batch, length = input_word_ids.shape
    rows = jnp.arange(batch)[:, None]
    cols = jnp.where(masked_lm_weights > 0, masked_lm_positions, length)  # past the end: dropped
    original = input_word_ids.at[rows, cols].set(masked_lm_ids, mode="drop")
    corrupted = input_word_ids.at[rows, cols].set(sampled.astype(input_word_ids.dtype), mode="drop")
    return corrupted, corrupted != original


def replaced_token_detection_terms(rtd_logits, replaced, input_mask):
    """Per-token sigmoid cross-entropy and correctness [B, T], weighted by the real-token mask
    (ELECTRA's discriminator loss: every real token, not only the masked ones)."""
    z = rtd_logits.astype(jnp.float32)
    y = replaced.astype(jnp.float32)
    weights = (input_mask > 0).astype(jnp.float32)
    nll = jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))
    correct = ((z > 0) == replaced).astype(jnp.float32)
    return nll * weights, correct * weights, weights


def sample_categorical(rng, logits):
    """One token per row of `logits` [..., V], drawn from softmax(logits) by inverting its
    cumulative sum at one uniform per row. The same distribution as `jax.random.categorical`,
    whose Gumbel trick draws and takes two logs of a number per vocabulary entry: at 30,522 words
    that made BERT-Tiny's ELECTRA train step 1.6 × slower on a 2-core CPU (`make bench`,
    docs/benchmarks.md). float32 sums: a token under ~1e-7 of the mass may be drawn slightly
    off its odds."""
    weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    cumulative = jnp.cumsum(weights, axis=-1)
    threshold = jax.random.uniform(rng, logits.shape[:-1] + (1,)) * cumulative[..., -1:]
    return jnp.sum(cumulative < threshold, axis=-1)


def corrupt(model: Electra, params, batch, rng, deterministic: bool):
    """Generator logits, then its samples in place of the masked tokens: (generator logits,
    corrupted ids, replaced). The samples carry no gradient (ELECTRA does not backpropagate
    through sampling; the generator learns from its MLM loss alone)."""
    sample_rng, dropout_rng = jax.random.split(rng)
    gen_logits = model.apply(
        {"params": params}, batch["input_word_ids"], batch["input_mask"], batch["input_type_ids"],
        batch["masked_lm_positions"], input_positions=batch.get("input_positions"),
        deterministic=deterministic, method=Electra.generate,
        rngs={} if deterministic else {"dropout": dropout_rng})
    sampled = sample_categorical(sample_rng, jax.lax.stop_gradient(gen_logits))
    corrupted, replaced = replace_masked(batch["input_word_ids"], batch["masked_lm_positions"],
                                         batch["masked_lm_weights"], batch["masked_lm_ids"], sampled)
    return gen_logits, corrupted, replaced


def discriminate(model: Electra, params, batch, corrupted, rng, deterministic: bool):
    return model.apply(
        {"params": params}, corrupted, batch["input_mask"], batch["input_type_ids"],
        input_positions=batch.get("input_positions"), deterministic=deterministic,
        method=Electra.discriminate, rngs={} if deterministic else {"dropout": rng})

"""Task heads and `Model`, a backbone of any family with the heads a job needs.

    mlm         MLM head: dense + act + LayerNorm, tied to the word embeddings (+ extra output
                weights for MobileBERT) + output bias; logits only at `masked_lm_positions`, or
                with `mlm_all_tokens=True` at every token too (`token_mlm_logits` [B, T, V]:
                DistilBERT distils every token's distribution)
    nsp         next-sentence prediction: dense H → 2 on the pooled output
    classifier  sequence classification / regression (num_labels = 1): dense on the pooled output
    span        extractive QA: dense H → 2 on every token → start/end logits

`Model(config, heads=("mlm", "nsp"))(input_word_ids, input_mask, input_type_ids,
masked_lm_positions)` returns the backbone's dict plus `mlm_logits` [B, P, V], `nsp_logits` [B, 2],
`logits` [B, C] and `start_logits`/`end_logits` [B, T], each in float32.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from flaxbert.bert import BertBackbone, activation, dense, layer_norm
from flaxbert.mobilebert import MobileBertBackbone

HEADS = ("mlm", "nsp", "classifier", "span")


def backbone_class(config) -> type[nn.Module]:
    """The backbone module of a config's family."""
    return BACKBONES[config.model_type]


BACKBONES: dict[str, type[nn.Module]] = {"bert": BertBackbone, "mobilebert": MobileBertBackbone}


def mean_pool(sequence_output, mask):
    """Mean of the real tokens' vectors, in float32: [B, T, H], [B, T] → [B, H] (the sentence
    embedding sentence-transformers uses)."""
    m = jnp.asarray(mask).astype(jnp.float32)[..., None]
    return (jnp.sum(sequence_output.astype(jnp.float32) * m, 1)
            / jnp.maximum(jnp.sum(m, 1), 1.0))


def gather_positions(sequence, positions):
    """sequence [B, T, H], positions [B, P] int → [B, P, H]."""
    return jnp.take_along_axis(sequence, positions[..., None].astype(jnp.int32), axis=1)


class MaskedLMHead(nn.Module):
    config: Any
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, attend):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        h = dense(cfg.hidden_size, ("embed", "embed_out"), cfg, dt, pdt, "transform")(hidden)
        h = activation(cfg.hidden_act)(h)
        h = layer_norm(cfg, dt, pdt, "transform_norm", axis="embed_out")(h)
        bias = self.param("output_bias", nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                                      ("vocab",)),
                          (cfg.vocab_size,), pdt)
        # MobileBERT's word embeddings are narrower than the hidden state: the first
        # embedding_size features meet them, the rest meet `extra_output_weights` (its
        # `attend` and this product run in float32).
        width = getattr(cfg, "embedding_size", cfg.hidden_size)
        logits = attend(h[..., :width])
        if width < cfg.hidden_size:
            extra = self.param("extra_output_weights", nn.with_logical_partitioning(
                nn.initializers.normal(cfg.initializer_range), ("vocab", "embed")),
                (cfg.vocab_size, cfg.hidden_size - width), pdt)
            logits = logits + jnp.dot(h[..., width:].astype(jnp.float32),
                                      extra.astype(jnp.float32).T)
        return logits.astype(jnp.float32) + bias.astype(jnp.float32)


class Model(nn.Module):
    """A backbone (BERT or MobileBERT, chosen by the config) with task heads."""

    config: Any
    heads: Sequence[str] = ()
    num_labels: int = 2
    pooler: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat_policy: str = "none"  # activation checkpointing per layer: none | full | dots
    scan_layers: bool = False   # one nn.scan over the layers (stacked params, see params.py)

    def setup(self):
        unknown = set(self.heads) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown head(s) {sorted(unknown)}; expected a subset of {HEADS}")
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        self.backbone = backbone_class(cfg)(cfg, dt, pdt, pooler=self.pooler,
                                            remat_policy=self.remat_policy,
                                            scan_layers=self.scan_layers)
        if "mlm" in self.heads:
            self.mlm = MaskedLMHead(cfg, dt, pdt)
        if "nsp" in self.heads:
            self.nsp = dense(2, ("embed", "labels"), cfg, dt, pdt, "nsp")
        if "classifier" in self.heads:
            if self.num_labels < 1:
                raise ValueError(f"num_labels={self.num_labels}; expected ≥ 1 (1 = regression)")
            rate = cfg.classifier_dropout
            self.classifier_dropout = nn.Dropout(cfg.hidden_dropout_prob if rate is None else rate)
            self.classifier = dense(self.num_labels, ("embed", "labels"), cfg, dt, pdt, "classifier")
        if "span" in self.heads:
            self.span = dense(2, ("embed", "labels"), cfg, dt, pdt, "span")

    def __call__(self, input_word_ids, input_mask=None, input_type_ids=None,
                 masked_lm_positions=None, *, input_positions=None, deterministic: bool = True,
                 output_attentions: bool = False, mlm_all_tokens: bool = False) -> dict[str, Any]:
        out = self.backbone(input_word_ids, input_mask, input_type_ids,
                            input_positions=input_positions, deterministic=deterministic,
                            output_attentions=output_attentions)
        if "mlm" in self.heads:
            seq = out["sequence_output"]
            if mlm_all_tokens:  # the head once over every token; the masked positions' a gather
                out["token_mlm_logits"] = self.mlm(seq, self.backbone.attend)
                out["mlm_logits"] = (out["token_mlm_logits"] if masked_lm_positions is None else
                                     gather_positions(out["token_mlm_logits"], masked_lm_positions))
            else:
                hidden = (seq if masked_lm_positions is None
                          else gather_positions(seq, masked_lm_positions))
                out["mlm_logits"] = self.mlm(hidden, self.backbone.attend)
        if "nsp" in self.heads:
            out["nsp_logits"] = self.nsp(out["pooled_output"]).astype(jnp.float32)
        if "classifier" in self.heads:
            pooled = self.classifier_dropout(out["pooled_output"], deterministic=deterministic)
            out["logits"] = self.classifier(pooled).astype(jnp.float32)
        if "span" in self.heads:
            span = self.span(out["sequence_output"]).astype(jnp.float32)
            out["start_logits"], out["end_logits"] = span[..., 0], span[..., 1]
        return out

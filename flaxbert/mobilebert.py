"""MobileBERT (Sun et al. 2020) and its IB-BERT teacher in Flax.

A MobileBERT block keeps a wide inter-block width (`hidden_size`, 512) and computes at a narrow
intra-block width (`intra_bottleneck_size`, 128):

    x (512) ── bottleneck_input ──▶ b (128) ─┐                       (the attention residual)
      │      └ bottleneck_attention ▶ q = k   │  (key_query_shared_bottleneck; V from x itself)
      │                          attention(q, k, v) + b ─▶ norm ─▶ F stacked FFNs (128 wide)
      └──────────────────── residual ◀─ bottleneck_output (128 → 512) ◀─┘

Embeddings are trigram: [e(t+1); e(t); e(t−1)] (zero-padded ends, 3 × 128) → dense to 512, plus
position and type embeddings. NoNorm(x) = x·γ + β replaces LayerNorm in the OPT models (TF scope
`FakeLayerNorm`). The MLM head projects onto [word_embeddings ; extra_output_weights].

The backbone returns the same dict as BERT's (`flaxbert.bert`), so the trainer and the losses
treat both families alike.

Where the two references differ (HF transformers' `modeling_mobilebert` is the one the parity tests
run; google-research/mobilebert `modeling.py` is the original):

- Padded keys: HF gives them -inf-like attention logits (zero weight). The TF original *replaces*
  their scaled logits by −6 (`scores * mask + (1 − mask) * −6`, "quantization friendly"), so each
  padded key keeps about e^-6 of the weight and outputs depend on how much padding a batch has.
  `attention_mask_value=None` (default) is HF's behaviour, `-6.0` the original's. Without padding
  both are identical.
- Missing JSON keys: a Google config omits keys at *its* defaults (key_query_shared_bottleneck
  false, 1 FFN, layer_norm, classifier_activation true, embedding/intra-bottleneck size = hidden
  size, ...), an HF config at HF's (the OPT model's). `from_dict` reads a dict without
  `model_type` with Google's defaults, one with it with HF's.
- The IB-BERT teacher (`uncased_L-24_H-1024_B-512_A-4`) feeds Q, K and V from the 512-wide block
  input (no shared bottleneck). HF sizes its query/key layers for the 1024-wide bottleneck in that
  case, so transformers cannot run that config; flaxbert can, and writes it in HF's naming.
- LayerNorm epsilon: TF uses 1e-12 everywhere; HF uses `layer_norm_eps` except in the embedding
  norm and the FFN output norm (PyTorch's 1e-5). flaxbert follows HF (only IB-BERT, which uses
  layer_norm, is affected, by ~1e-6 relative).
- "gelu": the TF original means the tanh approximation, HF the erf form; a config read from a
  Google checkpoint says "gelu_new" (see `flaxbert.checkpoints.google`).

Under bf16 compute (`dtype=jnp.bfloat16`) attention logits and softmax, LayerNorm statistics and
the MLM vocabulary projection run in float32; NoNorm has no statistics to protect.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flaxbert import configs
from flaxbert.bert import (
    BertBackbone,
    SelfAttention,
    activation,
    constrain,
    dense,
    embed,
    lookup,
    make_layers,
)
from flaxbert.configs import BertConfig

NORMALIZATIONS = ("no_norm", "layer_norm")
# LayerNorm epsilon of the norms that HF builds without the config's eps (PyTorch's default).
DEFAULT_LN_EPS = 1e-5
_BOOLEANS = ("trigram_input", "use_bottleneck", "use_bottleneck_attention",
             "key_query_shared_bottleneck", "classifier_activation")
# google-research/mobilebert modeling.py `BertConfig.__init__` defaults: what a Google JSON means
# by leaving a key out (embedding_size and intra_bottleneck_size default to hidden_size).
GOOGLE_DEFAULTS = {
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512, "type_vocab_size": 16, "initializer_range": 0.02,
    "trigram_input": False, "use_bottleneck": False, "use_bottleneck_attention": False,
    "key_query_shared_bottleneck": False, "num_feedforward_networks": 1,
    "normalization_type": "layer_norm", "classifier_activation": True,
}


@dataclasses.dataclass(frozen=True)
class MobileBertConfig(BertConfig):
    """google-research MobileBERT's config JSON and HF's `MobileBertConfig` (defaults: HF's, i.e.
    the OPT model except `classifier_activation`, which HF defaults to True).

    `attention_mask_value`: None = HF (padded keys get no attention); a negative number, e.g.
    -6.0, replaces padded keys' attention logits by it as the original TF code does."""

    hidden_size: int = 512
    num_hidden_layers: int = 24
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "relu"
    hidden_dropout_prob: float = 0.0
    embedding_size: int = 128
    trigram_input: bool = True
    use_bottleneck: bool = True
    intra_bottleneck_size: int = 128
    use_bottleneck_attention: bool = False
    key_query_shared_bottleneck: bool = True
    num_feedforward_networks: int = 4
    normalization_type: str = "no_norm"
    classifier_activation: bool = True
    attention_mask_value: float | None = None

    model_type = "mobilebert"
    # computed by HF from the other fields; never stored
    _derived = ("true_hidden_size",)

    def validate(self, source: str = "MobileBertConfig") -> None:
        for name in ("embedding_size", "intra_bottleneck_size", "num_feedforward_networks"):
            configs._check_positive(name, getattr(self, name), source)
        for name in _BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{source}: `{name}` must be true or false, got "
                                 f"{getattr(self, name)!r}")
        if self.normalization_type not in NORMALIZATIONS:
            raise ValueError(f"{source}: normalization_type={self.normalization_type!r}; expected "
                             f"one of {NORMALIZATIONS}")
        if self.embedding_size > self.hidden_size:
            raise ValueError(f"{source}: embedding_size={self.embedding_size} exceeds "
                             f"hidden_size={self.hidden_size} (the MLM head projects the "
                             f"hidden state onto [word embeddings ; extra_output_weights])")
        value = self.attention_mask_value
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not -1e30 < value < 0):
            raise ValueError(f"{source}: attention_mask_value={value!r}; expected None (HF: padded "
                             f"keys get no attention) or a finite negative number such as -6.0 "
                             f"(the original TF code)")
        super().validate(source)

    @property
    def true_hidden_size(self) -> int:
        """The width attention and the FFNs run at."""
        return self.intra_bottleneck_size if self.use_bottleneck else self.hidden_size

    @staticmethod
    def matches_google(data: dict[str, Any]) -> bool:
        return "intra_bottleneck_size" in data

    @classmethod
    def from_dict(cls, data, source: str = "config"):
        """HF's `config.json` (has `model_type`) or Google's JSON (has not; its missing keys take
        google-research/mobilebert's defaults, not HF's)."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = {k: v for k, v in data.items() if k not in cls._derived}
        if "model_type" not in data:
            hidden = data.get("hidden_size", 768)  # Google's own default
            data = {**GOOGLE_DEFAULTS, **{k: v for k, v in data.items() if v is not None}}
            for key in ("embedding_size", "intra_bottleneck_size"):
                data.setdefault(key, hidden)
        return super().from_dict(data, source)

    def to_google_dict(self) -> dict[str, Any]:
        """Every MobileBERT key written out (Google's defaults differ from HF's)."""
        out = super().to_google_dict()
        out.update({name: getattr(self, name) for name in _MOBILEBERT_FIELDS})
        return out

    def to_hf_dict(self) -> dict[str, Any]:
        out = super().to_hf_dict()
        if out.get("attention_mask_value") is None:  # HF's behaviour: nothing to record
            out.pop("attention_mask_value", None)
        return out


_MOBILEBERT_FIELDS = sorted(({f.name for f in dataclasses.fields(MobileBertConfig)} - {
    f.name for f in dataclasses.fields(BertConfig)} | {"hidden_act"}) - {"attention_mask_value"})


class NoNorm(nn.Module):
    """x·γ + β: MobileBERT's replacement for LayerNorm (no statistics, so cheap on device)."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(),
                                                                 ("embed",)), (features,), self.param_dtype)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                               ("embed",)), (features,), self.param_dtype)
        return (x * scale.astype(x.dtype) + bias.astype(x.dtype)).astype(self.dtype)


def norm(config, dtype, param_dtype, name: str, eps: float | None = None):
    """NoNorm or LayerNorm (statistics in float32) as the config says."""
    if config.normalization_type == "no_norm":
        return NoNorm(dtype, param_dtype, name=name)
    return nn.LayerNorm(epsilon=config.layer_norm_eps if eps is None else eps, dtype=dtype,
                        param_dtype=param_dtype, name=name,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)))


class MobileBertEmbeddings(nn.Module):
    config: MobileBertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        self.word_embeddings = embed(cfg.vocab_size, cfg.embedding_size, ("vocab", "embed"), cfg,
                                     dt, pdt, "word_embeddings")
        self.position_embeddings = embed(cfg.max_position_embeddings, cfg.hidden_size,
                                         ("positions", "embed"), cfg, dt, pdt, "position_embeddings")
        self.token_type_embeddings = embed(cfg.type_vocab_size, cfg.hidden_size,
                                           ("type_vocab", "embed"), cfg, dt, pdt,
                                           "token_type_embeddings")
        if cfg.trigram_input or cfg.embedding_size != cfg.hidden_size:
            self.embedding_transformation = dense(cfg.hidden_size, ("embed", "embed_out"), cfg, dt,
                                                  pdt, "embedding_transformation")
        self.norm = norm(cfg, dt, pdt, "norm", eps=DEFAULT_LN_EPS)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def __call__(self, input_word_ids, input_type_ids, deterministic: bool, positions=None):
        cfg = self.config
        x = lookup(self.word_embeddings, input_word_ids, "vocab")
        if cfg.trigram_input:
            nxt = jnp.pad(x[:, 1:], ((0, 0), (0, 1), (0, 0)))
            prev = jnp.pad(x[:, :-1], ((0, 0), (1, 0), (0, 0)))
            x = jnp.concatenate([nxt, x, prev], axis=-1)
        if cfg.trigram_input or cfg.embedding_size != cfg.hidden_size:
            x = self.embedding_transformation(x)
        if positions is None:
            positions = jnp.arange(input_word_ids.shape[1])[None, :]
        x = (x + lookup(self.position_embeddings, positions, "positions")
             + lookup(self.token_type_embeddings, input_type_ids, "type_vocab"))
        return self.dropout(self.norm(x), deterministic=deterministic)

    def attend(self, hidden):
        """hidden · word_embeddingsᵀ in float32, whatever the compute dtype (the MLM logits)."""
        table = self.word_embeddings.embedding
        return jnp.dot(hidden.astype(jnp.float32), table.astype(jnp.float32).T)


class MobileBertLayer(nn.Module):
    config: MobileBertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, deterministic: bool, output_attentions: bool = False):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        width = cfg.true_hidden_size
        drop = nn.Dropout(cfg.hidden_dropout_prob)

        def bottleneck(name):
            h = dense(width, ("embed", "mlp"), cfg, dt, pdt, name)(x)
            return norm(cfg, dt, pdt, f"{name}_norm")(h)

        if cfg.use_bottleneck:
            layer_input = bottleneck("bottleneck_input")
            # The shared Q/K bottleneck exists whenever configured: HF creates its weights even
            # when use_bottleneck_attention overrides it (the TF original does not; Google's TINY
            # config leaves key_query_shared_bottleneck false). XLA drops the unused compute.
            shared = bottleneck("bottleneck_attention") if cfg.key_query_shared_bottleneck else None
            if cfg.use_bottleneck_attention:
                query = key = value = layer_input
            elif shared is not None:
                query = key = shared
                value = x
            else:
                query = key = value = x
        else:
            query = key = value = layer_input = x
        context, extras = SelfAttention(cfg, cfg.num_attention_heads, cfg.head_dim, dt, pdt,
                                        mask_value=cfg.attention_mask_value, name="attention")(
            query, key, value, mask, deterministic, output_attentions)
        h = dense(width, ("heads", "kv", "mlp"), cfg, dt, pdt, "attention_output",
                  in_axis=(-2, -1))(context)
        if not cfg.use_bottleneck:
            h = drop(h, deterministic=deterministic)
        h = norm(cfg, dt, pdt, "attention_norm")(h + layer_input)
        def ffn_inner(name, h):  # the hidden units split over `tensor`, as in BERT's MLP
            inner = dense(cfg.intermediate_size, ("embed", "mlp"), cfg, dt, pdt, name)(h)
            return activation(cfg.hidden_act)(constrain(inner, ("batch", "length", "mlp")))

        for j in range(cfg.num_feedforward_networks - 1):  # the stacked FFNs
            inner = ffn_inner(f"ffn_{j}_intermediate", h)
            h = norm(cfg, dt, pdt, f"ffn_{j}_output_norm")(
                dense(width, ("mlp", "embed"), cfg, dt, pdt, f"ffn_{j}_output")(inner) + h)
        inner = ffn_inner("intermediate", h)
        out = dense(width, ("mlp", "embed"), cfg, dt, pdt, "output")(inner)
        if not cfg.use_bottleneck:
            out = norm(cfg, dt, pdt, "output_norm", eps=DEFAULT_LN_EPS)(
                drop(out, deterministic=deterministic) + h)
        else:
            out = norm(cfg, dt, pdt, "output_norm", eps=DEFAULT_LN_EPS)(out + h)
            out = dense(cfg.hidden_size, ("mlp", "embed"), cfg, dt, pdt, "bottleneck_output")(out)
            out = norm(cfg, dt, pdt, "bottleneck_output_norm")(
                drop(out, deterministic=deterministic) + x)
        out = constrain(out, ("batch", "act_length", "act_embed"))
        return out, (out, extras)


class MobileBertBackbone(BertBackbone):
    """Embeddings → L MobileBERT blocks → pooler (dense + tanh only with classifier_activation);
    the forward pass and output dict are BERT's."""

    config: MobileBertConfig

    def setup(self):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        self.embeddings = MobileBertEmbeddings(cfg, dt, pdt)
        self.layers = make_layers(MobileBertLayer, cfg, dt, pdt, self.remat_policy,
                                  self.scan_layers)
        if self.pooler and cfg.classifier_activation:
            self.pooler_dense = dense(cfg.hidden_size, ("embed", "embed_out"), cfg, dt, pdt, "pooler")


# Presets: google-research/google-research mobilebert/config/*.json, read with Google's defaults
# (tests/test_mobilebert.py checks that each JSON reads back as its preset).
PRESETS = {
    # uncased_L-24_H-128_B-512_A-4_F-4_OPT.json: 24.6M parameters without heads
    "mobilebert_uncased_L-24_H-128_B-512_A-4_F-4_OPT": MobileBertConfig(classifier_activation=False),
    # uncased_L-24_H-128_B-512_A-4_F-2_tiny_OPT.json: Q, K, V from the input bottleneck, 2 FFNs,
    # no shared Q/K bottleneck (the key is absent: Google's default false)
    "mobilebert_tiny_uncased_L-24_H-128_B-512_A-4_F-2_OPT": MobileBertConfig(
        classifier_activation=False, use_bottleneck_attention=True,
        key_query_shared_bottleneck=False, num_feedforward_networks=2),
    # uncased_L-24_H-1024_B-512_A-4.json, IB-BERT (the teacher): 1024-wide blocks, Q/K/V from the
    # 512-wide block input, LayerNorm, GELU, 1 FFN, tanh pooler (classifier_activation absent: true)
    "uncased_L-24_H-1024_B-512_A-4": MobileBertConfig(
        intra_bottleneck_size=1024, intermediate_size=4096, hidden_act="gelu",
        normalization_type="layer_norm", num_feedforward_networks=1,
        key_query_shared_bottleneck=False, hidden_dropout_prob=0.1, classifier_activation=True),
}
for _name, _config in PRESETS.items():
    configs.register_preset(_name, _config)
configs.ALIASES.update({"mobilebert": "mobilebert_uncased_L-24_H-128_B-512_A-4_F-4_OPT",
                        "mobilebert_tiny": "mobilebert_tiny_uncased_L-24_H-128_B-512_A-4_F-2_OPT",
                        "ib_bert": "uncased_L-24_H-1024_B-512_A-4"})
if MobileBertConfig not in configs.CONFIG_CLASSES:
    configs.CONFIG_CLASSES.insert(0, MobileBertConfig)

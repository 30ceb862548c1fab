"""BERT (Devlin et al. 2018) in Flax: post-LayerNorm Transformer encoder, as in google-research/bert.

The backbone returns the TF Hub encoder dict:

    pooled_output     [B, H]     tanh(dense([CLS])), or the [CLS] state when there is no pooler
    sequence_output   [B, T, H]  the last layer
    encoder_outputs   L × [B, T, H], one per layer (the last equals sequence_output)
    embedding_output  [B, T, H]  after the embedding LayerNorm (TinyBERT distils it)

and, with `output_attentions=True`, per layer `attention_logits` (pre-softmax, scaled, padded keys at
-inf-like), `attention_probs` [B, A, T, T] and `attention_values` [B, T, A, D] (MiniLM needs them).

Every parameter is created with logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`, ...),
and activations carry hints in the same names (`flaxbert.partitioning.constrain`: batch, heads,
MLP hidden units, layer outputs); `distill.sharding` maps both to mesh axes. Compute runs in `dtype` (e.g. bfloat16) while parameters
are stored in `param_dtype`; softmax and LayerNorm statistics are always float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxbert.configs import BertConfig
from flaxbert.partitioning import constrain, splits

Dtype = Any


def gelu_erf(x):
    """x·Φ(x), written with erf as PyTorch's `F.gelu` is. (`nn.gelu(approximate=False)` uses
    erfc, which XLA expands into a branchy polynomial with an exponential: on CPU its forward
    and gradient took ≈6% of BERT-Base's training step.)"""
    return x * 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


def activation(name: str):
    """The activation HF/Google call `name` ("gelu" is the exact erf form, as in BERT)."""
    return {
        "gelu": gelu_erf,
        "gelu_new": functools.partial(nn.gelu, approximate=True),
        "gelu_pytorch_tanh": functools.partial(nn.gelu, approximate=True),
        "relu": nn.relu,
        "relu6": nn.relu6,
        "silu": nn.silu,
        "swish": nn.silu,
        "tanh": jnp.tanh,
    }[name]


def matmul_2d(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`lax.dot_general` for a DenseGeneral (no batch dims; the inputs' trailing axes contract
    with the kernel's leading ones), done as one [M, K] × [K, N] matmul between reshapes. Same
    numbers; but a multi-axis contraction (the attention projections' [H, heads, head_dim]
    kernels) otherwise leaves XLA:CPU transposing kernels and their gradients every step, and
    the kernel's gradient is then one [K, M] × [M, N] matmul rather than a contraction over
    batch and length (BERT-Base's MLM step on CPU: −6% with the erf GELU)."""
    (lhs_contract, rhs_contract), batch = dimension_numbers
    n = len(lhs_contract)
    if batch != ((), ()) or tuple(lhs_contract) != tuple(range(lhs.ndim - n, lhs.ndim)) \
            or tuple(rhs_contract) != tuple(range(n)):
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type)
    k = math.prod(rhs.shape[:n])
    out = jnp.matmul(lhs.reshape(-1, k), rhs.reshape(k, -1), precision=precision,
                     preferred_element_type=preferred_element_type)
    return out.reshape(lhs.shape[:lhs.ndim - n] + rhs.shape[n:])


def dense(features, axes: tuple[str | None, ...], config, dtype, param_dtype, name: str,
          in_axis=-1, use_bias: bool = True) -> nn.DenseGeneral:
    """A DenseGeneral whose kernel and bias carry logical axis names `axes` (in ++ out), computed
    by `matmul_2d` — unless the axes it would merge (the attention's heads × head_dim) are split
    by the active sharding rules: merged, the heads no longer line up with their devices when
    they do not divide the tensor axis (12 heads on tensor=8: ×1.15 FLOPs per device)."""
    n_out = len(features) if isinstance(features, tuple) else 1
    n_in = len(axes) - n_out
    merged = (axes[:n_in] if n_in > 1 else ()) + (axes[n_in:] if n_out > 1 else ())
    flat = not any(splits(axis) for axis in merged if axis)
    return nn.DenseGeneral(
        features, axis=in_axis, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
        dot_general=matmul_2d if flat else None,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(config.initializer_range), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[-n_out:]),
        name=name)


def layer_norm(config, dtype, param_dtype, name: str, axis: str = "embed") -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axis,)),
        name=name)


def embed(num: int, features: int, axes, config, dtype, param_dtype, name: str) -> nn.Embed:
    return nn.Embed(num, features, dtype=dtype, param_dtype=param_dtype, name=name,
                    embedding_init=nn.with_logical_partitioning(
                        nn.initializers.normal(config.initializer_range), axes))


def lookup(table: nn.Embed, ids, axis: str):
    """`table(ids)` with the table first made whole over its feature axis (FSDP gathers each
    weight before use; `axis` names its first dimension). Rows taken from a feature-split table come
    out feature-split, and XLA can turn that into the batch split the activations need only by
    replicating the lookup ("involuntary full rematerialization")."""
    return jnp.take(constrain(table.embedding, (axis, None)), ids, axis=0).astype(table.dtype)


def check_inputs(config, input_word_ids, input_mask, input_type_ids):
    """Validates shapes at trace time and fills in the defaults of the optional inputs."""
    if input_word_ids.ndim != 2:
        raise ValueError(f"input_word_ids must be [batch, seq_length], got shape {input_word_ids.shape}")
    seq_length = input_word_ids.shape[1]
    if seq_length > config.max_position_embeddings:
        raise ValueError(f"sequence length {seq_length} exceeds max_position_embeddings="
                         f"{config.max_position_embeddings}; truncate the inputs (Preprocessor "
                         f"seq_length) or use a model with more positions")
    if input_mask is None:
        input_mask = jnp.ones_like(input_word_ids)
    if input_type_ids is None:
        input_type_ids = jnp.zeros_like(input_word_ids)
    for name, x in (("input_mask", input_mask), ("input_type_ids", input_type_ids)):
        if x.shape != input_word_ids.shape:
            raise ValueError(f"{name} has shape {x.shape}; expected {input_word_ids.shape} "
                             f"like input_word_ids")
    return input_mask, input_type_ids


def attention_mask(input_mask, packed: bool):
    """[batch, 1, 1|query, key] bool. Unpacked: keys with input_mask > 0. Packed (several
    sequences per row, `input_mask` = their segment numbers 1, 2, ..., 0 = padding): a query sees
    the keys of its own segment only."""
    if not packed:
        return (input_mask > 0)[:, None, None, :]
    same = input_mask[:, :, None] == input_mask[:, None, :]
    return (same & (input_mask[:, None, :] > 0))[:, None]


class BertEmbeddings(nn.Module):
    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        self.word_embeddings = embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), cfg,
                                     dt, pdt, "word_embeddings")
        self.position_embeddings = embed(cfg.max_position_embeddings, cfg.hidden_size,
                                         ("positions", "embed"), cfg, dt, pdt, "position_embeddings")
        self.token_type_embeddings = embed(cfg.type_vocab_size, cfg.hidden_size,
                                           ("type_vocab", "embed"), cfg, dt, pdt,
                                           "token_type_embeddings")
        self.layer_norm = layer_norm(cfg, dt, pdt, "layer_norm")
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def __call__(self, input_word_ids, input_type_ids, deterministic: bool, positions=None):
        if positions is None:
            positions = jnp.arange(input_word_ids.shape[1])[None, :]
        x = (lookup(self.word_embeddings, input_word_ids, "vocab")
             + lookup(self.position_embeddings, positions, "positions")
             + lookup(self.token_type_embeddings, input_type_ids, "type_vocab"))
        return self.dropout(self.layer_norm(x), deterministic=deterministic)

    def attend(self, hidden):
        """hidden · word_embeddingsᵀ — the tied MLM output projection."""
        return self.word_embeddings.attend(hidden)


def fused_attention_pays() -> bool:
    """Whether `jax.nn.dot_product_attention` beats the explicit path here: on accelerators (cuDNN
    flash attention on GPU), not on CPU (see `SelfAttention`)."""
    return jax.default_backend() != "cpu"


class SelfAttention(nn.Module):
    """Multi-head self-attention. On GPU/TPU it uses `jax.nn.dot_product_attention` (cuDNN flash
    attention where available) unless attention maps are requested or attention dropout is active,
    which need the explicit path. On CPU the explicit path always serves: with the heads moved
    first ([B, A, T, D]) XLA:CPU runs the score matmuls as plain batched matmuls, 3% faster than
    `dot_product_attention` over BERT-Base's and BERT-Medium's MLM steps."""

    config: Any
    num_heads: int
    head_dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    # None: padded keys get -inf-like logits (HF). A number replaces their logits by that value,
    # as google-research/mobilebert does with −6 (its softmax then gives them e^-6-ish weight).
    mask_value: float | None = None

    @nn.compact
    def __call__(self, query_input, key_input, value_input, mask, deterministic: bool,
                 output_attentions: bool = False):
        """`mask`: bool, broadcastable to [batch, heads, query, key] (see `attention_mask`)."""
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        heads = (self.num_heads, self.head_dim)
        per_head = ("batch", "length", "heads", "kv")  # Megatron: each device its heads
        q, k, v = (constrain(dense(heads, ("embed", "heads", "kv"), cfg, dt, pdt, name)(x), per_head)
                   for name, x in (("query", query_input), ("key", key_input),
                                   ("value", value_input)))
        dropout_active = not deterministic and cfg.attention_probs_dropout_prob > 0.0
        extras = {}
        if (output_attentions or dropout_active or self.mask_value is not None
                or not fused_attention_pays()):
            qh, kh, vh = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # [B, A, T, D]
            logits = (qh @ kh.swapaxes(-1, -2)).astype(jnp.float32) / jnp.sqrt(
                jnp.float32(self.head_dim))
            fill = jnp.finfo(jnp.float32).min if self.mask_value is None else self.mask_value
            logits = jnp.where(mask, logits, jnp.float32(fill))
            probs = jax.nn.softmax(logits, axis=-1)
            dropped = nn.Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
            context = (dropped.astype(dt) @ vh).transpose(0, 2, 1, 3)
            if output_attentions:
                extras = {"attention_logits": logits, "attention_probs": probs,
                          "attention_values": v}
        else:
            context = jax.nn.dot_product_attention(q, k, v, mask=mask)
        return constrain(context, per_head), extras


class BertLayer(nn.Module):
    """One post-LN Transformer block: x ← LN(x + Attn(x)); x ← LN(x + FFN(x)).

    Returns `(x, (x, attention extras))`: the carry and the per-layer outputs, the signature
    `nn.scan` needs (see `run_layers`)."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask, deterministic: bool, output_attentions: bool = False):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        drop = nn.Dropout(cfg.hidden_dropout_prob)
        context, extras = SelfAttention(cfg, cfg.num_attention_heads, cfg.head_dim, dt, pdt,
                                        name="attention")(x, x, x, mask, deterministic,
                                                          output_attentions)
        attn_out = dense(cfg.hidden_size, ("heads", "kv", "embed"), cfg, dt, pdt,
                         "attention_output", in_axis=(-2, -1))(context)
        x = layer_norm(cfg, dt, pdt, "attention_norm")(x + drop(attn_out, deterministic=deterministic))
        h = dense(cfg.intermediate_size, ("embed", "mlp"), cfg, dt, pdt, "intermediate")(x)
        h = activation(cfg.hidden_act)(constrain(h, ("batch", "length", "mlp")))
        h = dense(cfg.hidden_size, ("mlp", "embed"), cfg, dt, pdt, "output")(h)
        x = layer_norm(cfg, dt, pdt, "output_norm")(x + drop(h, deterministic=deterministic))
        x = constrain(x, ("batch", "act_length", "act_embed"))
        return x, (x, extras)


# Activation checkpointing: what a layer keeps for the backward pass (the rest is recomputed).
REMAT_POLICIES = {
    "none": None,                                                   # keep everything (no remat)
    "full": jax.checkpoint_policies.nothing_saveable,               # keep only the layer inputs
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep matmul outputs
}


def layer_class(cls, remat_policy: str):
    """`cls`, or `cls` under `nn.remat` with the named policy (parameter names are unchanged)."""
    if remat_policy not in REMAT_POLICIES:
        raise ValueError(f"remat_policy={remat_policy!r}; expected one of {sorted(REMAT_POLICIES)}")
    if remat_policy == "none":
        return cls
    # static: deterministic, output_attentions (argnums count `self` as 0)
    return nn.remat(cls, policy=REMAT_POLICIES[remat_policy], static_argnums=(3, 4))


def make_layers(cls, config, dtype, param_dtype, remat_policy: str, scan: bool):
    """The layer stack: a list of modules `layer_{i}`, or with `scan` one `nn.scan` module
    `layers` whose parameters carry a leading 'layers' axis (the body compiles once, which
    matters for deep models; `flaxbert.params.stack_layers` converts checkpoints)."""
    cls = layer_class(cls, remat_policy)
    if not scan:
        return [cls(config, dtype, param_dtype, name=f"layer_{i}")
                for i in range(config.num_hidden_layers)]
    scanned = nn.scan(cls, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                      in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                      length=config.num_hidden_layers, metadata_params={nn.PARTITION_NAME: "layers"})
    return scanned(config, dtype, param_dtype, name="layers")


def run_layers(layers, x, mask, deterministic, output_attentions):
    """Runs the stack from `make_layers`: each layer's output and (optionally) attention maps,
    as per-layer lists."""
    if not isinstance(layers, (list, tuple)):  # scanned: outputs come stacked on axis 0
        _, (stacked, extras) = layers(x, mask, deterministic, output_attentions)
        count = stacked.shape[0]
        return ([stacked[i] for i in range(count)],
                {key: [value[i] for i in range(count)] for key, value in extras.items()})
    outputs, attention = [], {}
    for layer in layers:
        x, (out, extras) = layer(x, mask, deterministic, output_attentions)
        outputs.append(out)
        for key, value in extras.items():
            attention.setdefault(key, []).append(value)
    return outputs, attention


class BertBackbone(nn.Module):
    """Embeddings → L post-LN layers → pooler. Parameters live under `embeddings`, `layer_{i}`,
    `pooler` (names follow the paper; `flaxbert.checkpoints` maps them to Google/HF names)."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    pooler: bool = True
    remat_policy: str = "none"
    scan_layers: bool = False

    def setup(self):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        self.embeddings = BertEmbeddings(cfg, dt, pdt)
        self.layers = make_layers(BertLayer, cfg, dt, pdt, self.remat_policy, self.scan_layers)
        if self.pooler:
            self.pooler_dense = dense(cfg.hidden_size, ("embed", "embed_out"), cfg, dt, pdt, "pooler")

    def __call__(self, input_word_ids, input_mask=None, input_type_ids=None, *,
                 input_positions=None, deterministic: bool = True,
                 output_attentions: bool = False):
        """`input_positions` given = packed rows: `input_mask` holds segment numbers and
        positions restart in each segment (see `attention_mask`)."""
        input_mask, input_type_ids = check_inputs(self.config, input_word_ids, input_mask,
                                                  input_type_ids)
        x = self.embeddings(input_word_ids, input_type_ids, deterministic, input_positions)
        x = constrain(x, ("batch", "act_length", "act_embed"))
        mask = attention_mask(input_mask, packed=input_positions is not None)
        outputs, attention = run_layers(self.layers, x, mask, deterministic, output_attentions)
        sequence_output = outputs[-1] if outputs else x
        cls = sequence_output[:, 0]
        pooled = jnp.tanh(self.pooler_dense(cls)) if hasattr(self, "pooler_dense") else cls
        return {"pooled_output": pooled, "sequence_output": sequence_output,
                "encoder_outputs": outputs, "embedding_output": x, **attention}

    def attend(self, hidden):
        return self.embeddings.attend(hidden)

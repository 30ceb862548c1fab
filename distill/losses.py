"""Distillation losses as pure functions (jit-able, no state).

Shapes: hidden [B, T, H]; attention logits / probabilities [B, A, T, T]; values [B, T, A, D];
`mask` [B, T] (1 = real token); logits [..., C] with `weights` [...] (0 = padding slot). Every
loss returns a float32 scalar: a mean over the valid elements named in its docstring. Softmaxes
run in float32 whatever the input dtype. Nothing here stops gradients: the caller puts the teacher
under `stop_gradient`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flaxbert.heads import mean_pool  # noqa: F401  (sentence embeddings; re-exported for losses users)

_EPS = 1e-12


def _f32(x):
    return jnp.asarray(x).astype(jnp.float32)


def _check_same(name_a, a, name_b, b):
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has {b.shape}; expected equal")


def _weighted_mean(values, weights):
    """Σ w·v / Σ w over the leading dims of `values` (weights broadcast); 0 when Σ w = 0."""
    if weights is None:
        return jnp.mean(values)
    w = _f32(weights)
    return jnp.sum(values * w) / jnp.maximum(jnp.sum(w), _EPS)


def _token_mean(per_token, mask):
    """Mean over real tokens of a [B, T] quantity."""
    return _weighted_mean(per_token, mask)


@jax.custom_vjp
def integer_label_nll(logits, labels):
    """Per-row −log softmax(z)[y] = logsumexp(z) − z_y, in float32. logits [..., C], labels [...].

    Its gradient, softmax(z) − onehot(y), is written out as one elementwise pass: autodiff of the
    same formula materialises a zero tensor for the label gather's scatter and exponentiates
    twice, which dominates the MLM head's backward over a 30k vocabulary."""
    return _integer_label_nll_fwd(logits, labels)[0]


def _integer_label_nll_fwd(logits, labels):
    logits = _f32(logits)
    labels = labels.astype(jnp.int32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return lse - label_logit, (logits, lse, labels)


def _integer_label_nll_bwd(residuals, g):
    logits, lse, labels = residuals
    onehot = jnp.arange(logits.shape[-1]) == labels[..., None]
    grad = (jnp.exp(logits - lse[..., None]) - onehot) * g[..., None]
    return grad, None


integer_label_nll.defvjp(_integer_label_nll_fwd, _integer_label_nll_bwd)


def cross_entropy(logits, labels, weights=None):
    """Hard-label cross-entropy −log softmax(z)[y], mean over weighted rows. logits [..., C]."""
    return _weighted_mean(integer_label_nll(logits, labels), weights)


def soft_cross_entropy(student_logits, teacher_logits, temperature=1.0, weights=None,
                       t_squared=False):
    """−Σ_c softmax(t/T)_c · log softmax(s/T)_c per row, mean over weighted rows, × T² if
    `t_squared`. Pre-trained Distillation (Turc et al. 2019) with T = 1; DistilBERT (Sanh et al.
    2019) uses T = 2 with the T² factor so gradients keep their scale."""
    _check_same("student_logits", student_logits, "teacher_logits", teacher_logits)
    p_t = jax.nn.softmax(_f32(teacher_logits) / temperature, axis=-1)
    logp_s = jax.nn.log_softmax(_f32(student_logits) / temperature, axis=-1)
    loss = _weighted_mean(-jnp.sum(p_t * logp_s, axis=-1), weights)
    return loss * temperature**2 if t_squared else loss


def kl_divergence(student_logits, teacher_logits, temperature=1.0, weights=None, t_squared=False):
    """KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s) at temperature T, mean over weighted rows
    (DistilBERT's `KLDivLoss(batchmean)` · T²). Equals soft_cross_entropy − H(p_t)."""
    _check_same("student_logits", student_logits, "teacher_logits", teacher_logits)
    logp_t = jax.nn.log_softmax(_f32(teacher_logits) / temperature, axis=-1)
    logp_s = jax.nn.log_softmax(_f32(student_logits) / temperature, axis=-1)
    loss = _weighted_mean(jnp.sum(jnp.exp(logp_t) * (logp_t - logp_s), axis=-1), weights)
    return loss * temperature**2 if t_squared else loss


def top_k(logits, k: int):
    """The k largest logits [..., k] (float32, descending) and their vocabulary ids [..., k]."""
    values, ids = jax.lax.top_k(_f32(logits), k)
    return values, ids.astype(jnp.int32)


def _top_k_terms(student_logits, teacher_values, teacher_ids, temperature):
    """(log p̂_t, log p̂_s): the teacher's and the student's softmax(z/T) over the teacher's k ids
    only, each renormalised there."""
    if teacher_values.shape != teacher_ids.shape or (
            teacher_values.shape[:-1] != student_logits.shape[:-1]):
        raise ValueError(f"teacher top-k logits {teacher_values.shape} and ids "
                         f"{teacher_ids.shape} must be [..., k] over the student's "
                         f"{student_logits.shape[:-1]} rows")
    logp_t = jax.nn.log_softmax(_f32(teacher_values) / temperature, axis=-1)
    student = jnp.take_along_axis(_f32(student_logits), teacher_ids, axis=-1)
    return logp_t, jax.nn.log_softmax(student / temperature, axis=-1)


def top_k_soft_cross_entropy(student_logits, teacher_values, teacher_ids, temperature=1.0,
                             weights=None, t_squared=False):
    """soft_cross_entropy against a teacher known by its top-k logits only (a teacher cache):
    −Σ_{i ∈ top k} p̂_t,i · log p̂_s,i, both distributions renormalised over the teacher's k ids.
    The approximation: KD compares the two models on the teacher's k likeliest words only; the
    student's mass elsewhere is left to the hard MLM term (docs/benchmarks.md measures it
    against the full-vocabulary KL). At k = vocabulary size it is soft_cross_entropy."""
    logp_t, logp_s = _top_k_terms(student_logits, teacher_values, teacher_ids, temperature)
    loss = _weighted_mean(-jnp.sum(jnp.exp(logp_t) * logp_s, axis=-1), weights)
    return loss * temperature**2 if t_squared else loss


def top_k_kl_divergence(student_logits, teacher_values, teacher_ids, temperature=1.0,
                        weights=None, t_squared=False):
    """kl_divergence over the teacher's top k (see top_k_soft_cross_entropy):
    Σ_{i ∈ top k} p̂_t,i (log p̂_t,i − log p̂_s,i) ≥ 0, zero when the student ranks those k words
    as the teacher does, whatever it gives the rest."""
    logp_t, logp_s = _top_k_terms(student_logits, teacher_values, teacher_ids, temperature)
    loss = _weighted_mean(jnp.sum(jnp.exp(logp_t) * (logp_t - logp_s), axis=-1), weights)
    return loss * temperature**2 if t_squared else loss


def logit_mse(student_logits, teacher_logits, weights=None):
    """Σ_c (s_c − t_c)² / C per row, mean over weighted rows (logit matching, Ba & Caruana)."""
    _check_same("student_logits", student_logits, "teacher_logits", teacher_logits)
    return _weighted_mean(jnp.mean(jnp.square(_f32(student_logits) - _f32(teacher_logits)), -1),
                          weights)


def hidden_mse(student_hidden, teacher_hidden, mask):
    """TinyBERT's hidden-state loss: Σ_h (s − t)² / H per token, mean over real tokens
    (the student is projected to the teacher's width by the caller)."""
    _check_same("student_hidden", student_hidden, "teacher_hidden", teacher_hidden)
    per_token = jnp.mean(jnp.square(_f32(student_hidden) - _f32(teacher_hidden)), axis=-1)
    return _token_mean(per_token, mask)


def _cosine(a, b):
    a, b = _f32(a), _f32(b)
    return jnp.sum(a * b, -1) / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1),
                                            _EPS)


def cosine_distance(student_hidden, teacher_hidden, mask):
    """DistilBERT's cosine loss: 1 − cos(s, t) per token, mean over real tokens."""
    _check_same("student_hidden", student_hidden, "teacher_hidden", teacher_hidden)
    return _token_mean(1.0 - _cosine(student_hidden, teacher_hidden), mask)


def embedding_mse(student_embedding, teacher_embedding, weights=None):
    """Sentence embeddings [B, H]: Σ_h (s − t)² / H per sentence, mean over weighted sentences
    (sentence-transformers' model distillation)."""
    _check_same("student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    return _weighted_mean(jnp.mean(jnp.square(_f32(student_embedding) - _f32(teacher_embedding)), -1),
                          weights)


def embedding_cosine(student_embedding, teacher_embedding, weights=None):
    """Sentence embeddings [B, H]: 1 − cos(s, t), mean over weighted sentences."""
    _check_same("student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    return _weighted_mean(1.0 - _cosine(student_embedding, teacher_embedding), weights)


def _pair_mask(mask):
    """[B, T] → [B, 1, T, T]: query and key both real."""
    m = _f32(mask)
    return m[:, None, :, None] * m[:, None, None, :]


def attention_logit_mse(student_logits, teacher_logits, mask):
    """TinyBERT's attention loss: MSE between pre-softmax scores, entries at padded keys (or
    queries) set to 0 first; mean over heads × real query-key pairs."""
    _check_same("student_logits", student_logits, "teacher_logits", teacher_logits)
    pairs = _pair_mask(mask)
    diff = (_f32(student_logits) - _f32(teacher_logits)) * pairs
    n = jnp.maximum(jnp.sum(pairs) * student_logits.shape[1], _EPS)
    return jnp.sum(jnp.square(diff)) / n


def _row_kl(p_teacher, log_p_student, key_mask):
    """Σ_k p_t log(p_t / p_s) over real keys → [B, A, T]."""
    p_t = _f32(p_teacher) * key_mask
    log_p_t = jnp.log(jnp.maximum(p_t, _EPS))
    return jnp.sum(jnp.where(p_t > 0, p_t * (log_p_t - log_p_student), 0.0), axis=-1)


def attention_kl(student_probs, teacher_probs, mask):
    """KL(teacher ‖ student) of each query's attention distribution, mean over heads and real
    queries (MobileBERT's attention transfer, Sun et al. 2020, §3.2; the google code computes the
    same quantity in its cross-entropy form −Σ p_t log p_s, which differs by the constant
    teacher entropy)."""
    _check_same("student_probs", student_probs, "teacher_probs", teacher_probs)
    key_mask = _f32(mask)[:, None, None, :]
    log_p_s = jnp.log(jnp.maximum(_f32(student_probs), _EPS))
    per_query = _row_kl(teacher_probs, log_p_s, key_mask)            # [B, A, T]
    query_mask = jnp.broadcast_to(_f32(mask)[:, None, :], per_query.shape)
    return _weighted_mean(per_query, query_mask)


def value_relation(values, mask):
    """softmax(V·Vᵀ / √d) per head over real keys: [B, T, A, D] → [B, A, T, T] (log-probs)."""
    v = _f32(values)
    scores = jnp.einsum("bqhd,bkhd->bhqk", v, v) / jnp.sqrt(jnp.float32(v.shape[-1]))
    scores = jnp.where(_f32(mask)[:, None, None, :] > 0, scores, -1e30)
    return jax.nn.log_softmax(scores, axis=-1)


def minilm_value_relation_kl(student_values, teacher_values, mask):
    """MiniLM's value-relation transfer: KL(VR_t ‖ VR_s) with VR = softmax(V·Vᵀ/√d_head) per head,
    mean over heads and real queries. Head counts must be equal (head dims may differ)."""
    if student_values.shape[:3] != teacher_values.shape[:3]:
        raise ValueError(f"student values {student_values.shape} and teacher values "
                         f"{teacher_values.shape} must agree on [batch, tokens, heads]")
    log_s = value_relation(student_values, mask)
    log_t = value_relation(teacher_values, mask)
    key_mask = _f32(mask)[:, None, None, :]
    per_query = _row_kl(jnp.exp(log_t), log_s, key_mask)
    query_mask = jnp.broadcast_to(_f32(mask)[:, None, :], per_query.shape)
    return _weighted_mean(per_query, query_mask)


def _standardise(x, eps=1e-6):
    x = _f32(x)
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps)


def layer_normed_mse(student_hidden, teacher_hidden, mask):
    """MobileBERT's feature-map transfer: MSE between parameter-free layer-normed hidden states
    (zero mean, unit variance over H, ε = 1e-6), Σ_h / H per token, mean over real tokens."""
    _check_same("student_hidden", student_hidden, "teacher_hidden", teacher_hidden)
    return hidden_mse(_standardise(student_hidden), _standardise(teacher_hidden), mask)


def mean_statistic_mse(student_hidden, teacher_hidden, mask):
    """MobileBERT's mean transfer: (μ_t − μ_s)² of each token's mean over H, mean over real tokens
    (distill_util.py's `beta_distill_factor` term)."""
    diff = jnp.mean(_f32(student_hidden), -1) - jnp.mean(_f32(teacher_hidden), -1)
    return _token_mean(jnp.square(diff), mask)


def variance_statistic_l1(student_hidden, teacher_hidden, mask):
    """MobileBERT's variance transfer: |σ²_t − σ²_s| of each token's variance over H, mean over
    real tokens (distill_util.py's `gamma_distill_factor` term)."""
    diff = jnp.var(_f32(student_hidden), -1) - jnp.var(_f32(teacher_hidden), -1)
    return _token_mean(jnp.abs(diff), mask)


def masked_lm_terms(mlm_logits, batch):
    """Per-prediction negative log-likelihood and correctness, weighted by masked_lm_weights.
    Correct = the target has the top logit (a max, cheaper than an argmax over the vocab)."""
    logits = mlm_logits.astype(jnp.float32)
    ids = batch["masked_lm_ids"]
    weights = batch["masked_lm_weights"].astype(jnp.float32)
    nll = integer_label_nll(logits, ids)
    target = jnp.take_along_axis(logits, ids[..., None], axis=-1)[..., 0]
    correct = jax.lax.stop_gradient(target >= logits.max(axis=-1)).astype(jnp.float32)
    return nll * weights, correct * weights, weights


def next_sentence_terms(nsp_logits, labels):
    logp = jax.nn.log_softmax(nsp_logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    return nll, (jnp.argmax(logp, -1) == labels).astype(jnp.float32)

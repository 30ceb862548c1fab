"""Knowledge distillation as a trainer task: a frozen teacher and a student in one jitted step.

The loss is a weighted sum of *terms*, each naming a feature of the two models' output dicts, a
layer map (`distill.layer_maps`) and a loss from `distill.losses`:

    feature            what is compared                               losses
    logits             classifier logits (PD step 2, DistilBERT)      soft_ce, kl, mse
    mlm_logits         MLM logits at masked positions                 soft_ce, kl, mse
    hidden             embedding output (layer 0) + layer outputs     mse, cosine, feature_map
    attention_logits   pre-softmax attention scores (TinyBERT)        mse
    attention_probs    attention distributions (MobileBERT, MiniLM)   kl
    value_relation     softmax(V·Vᵀ/√d) per head (MiniLM)             kl
    embedding          pooled or mean-pooled sentence embeddings      mse, cosine

Hidden and embedding terms go through a learned linear projection (student → teacher width) when
the widths differ (TinyBERT). The optimizer sees the student and the projections only; the teacher
sits under `stop_gradient` in `frozen`, and `teacher_outputs` is the one place its outputs come
from (a cache of them replaces it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from distill import losses
from distill.layer_maps import layer_pairs
from distill.tasks.common import ModelSpec
from flaxbert.params import logical_axes

LOSSES = {
    "logits": ("soft_ce", "kl", "mse"),
    "mlm_logits": ("soft_ce", "kl", "mse"),
    "hidden": ("mse", "cosine", "feature_map"),
    "attention_logits": ("mse",),
    "attention_probs": ("kl",),
    "value_relation": ("kl",),
    "embedding": ("mse", "cosine"),
}
LAYERED = ("hidden", "attention_logits", "attention_probs", "value_relation")


def features_of(out: dict, feature: str, mask) -> list:
    """The per-layer list (index 0 = embeddings for hidden) or single array for a feature."""
    if feature == "hidden":
        return [out["embedding_output"], *out["encoder_outputs"]]
    if feature in ("attention_logits", "attention_probs"):
        return [None, *out[feature]]
    if feature == "value_relation":
        return [None, *out["attention_values"]]
    raise KeyError(feature)


def sentence_embedding(out: dict, pooling: str, mask):
    if pooling == "mean":
        return losses.mean_pool(out["sequence_output"], mask)
    if pooling == "cls":
        return out["sequence_output"][:, 0]
    return out["pooled_output"]


class DistillTask:
    """loss = Σ_terms weight · term  (+ (1 − α)·hard-label loss for labelled classification)."""

    def __init__(self, config, student: ModelSpec, teacher, teacher_params):
        self.config, self.terms = config.distill, [dict(t) for t in config.distill.terms]
        self.student = student
        self.teacher = teacher
        s_cfg, t_cfg = student.config, teacher.config
        self.projections = {}
        for i, term in enumerate(self.terms):
            feature = term["feature"]
            if feature not in LOSSES:
                raise ValueError(f"distill.terms[{i}].feature={feature!r}; expected one of {list(LOSSES)}")
            if term["loss"] not in LOSSES[feature]:
                raise ValueError(f"distill.terms[{i}]: loss {term['loss']!r} does not apply to "
                                 f"{feature}; expected one of {LOSSES[feature]}")
            term.setdefault("weight", 1.0)
            term["name"] = f"{feature}_{term['loss']}_{i}"
            if feature in LAYERED:
                term["pairs"] = layer_pairs(term.get("layers", "uniform"), t_cfg.num_hidden_layers,
                                            s_cfg.num_hidden_layers, feature)
            if feature in ("attention_logits", "attention_probs", "value_relation") and (
                    s_cfg.num_attention_heads != t_cfg.num_attention_heads):
                raise ValueError(f"distill.terms[{i}] ({feature}) needs equal head counts; teacher "
                                 f"has {t_cfg.num_attention_heads}, student {s_cfg.num_attention_heads}")
            if feature in ("hidden", "embedding") and s_cfg.hidden_size != t_cfg.hidden_size:
                self.projections[term["name"]] = (s_cfg.hidden_size, t_cfg.hidden_size)
        # Progressive knowledge transfer (MobileBERT): stage k trains student layer k only, on
        # its layer pairs, for `progressive_steps` steps; the other parameters stay fixed unless
        # `progressive_train_others` (the projections always train).
        self.progressive = int(config.distill.get("progressive_steps", 0) or 0)
        if self.progressive and student.scan:
            raise ValueError("progressive transfer trains one layer_{i} at a time: set "
                             "model.scan_layers=False")
        self.train_others = bool(config.distill.get("progressive_train_others", False))
        self.num_student_layers = s_cfg.num_hidden_layers
        self.needs_attention = any(t["feature"] in LAYERED[1:] for t in self.terms)
        self.alpha = float(config.distill.alpha)
        self.frozen = {"teacher": teacher_params} if teacher_params is not None else {}
        self.frozen_axes = {"teacher": logical_axes(teacher)} if teacher_params is not None else {}
        self.initial_params = None
        if student.initial_params is not None:
            self.initial_params = {"student": student.initial_params}
            if self.projections:
                self.initial_params["projections"] = nn.unbox(
                    self._init_projections(jax.random.PRNGKey(config.trainer.seed)))

    # parameters: the student and the projections
    def _init_projections(self, rng):
        init = nn.initializers.normal(self.student.config.initializer_range)
        out = {}
        for i, (name, (d_in, d_out)) in enumerate(sorted(self.projections.items())):
            kernel = init(jax.random.fold_in(rng, i), (d_in, d_out), jnp.float32)
            out[name] = {"kernel": nn.LogicallyPartitioned(kernel, ("embed", None)),
                         "bias": nn.LogicallyPartitioned(jnp.zeros(d_out), (None,))}
        return out

    def init_params(self, rng):
        s_rng, p_rng = jax.random.split(rng)
        params = {"student": self.student.init_params(s_rng)}
        if self.projections:
            params["projections"] = self._init_projections(p_rng)
        return params

    def stage(self, step):
        return jnp.minimum(step // max(self.progressive, 1), self.num_student_layers - 1)

    def update_mask(self, step, params):
        if not self.progressive:
            return jax.tree_util.tree_map(jnp.ones_like, params)
        stage = self.stage(step)

        def mask(path, x):
            keys = [getattr(k, "key", str(k)) for k in path]
            if keys[0] == "projections":
                return jnp.ones_like(x)
            if len(keys) > 2 and keys[1] == "backbone" and keys[2].startswith("layer_"):
                return jnp.full_like(x, int(keys[2][len("layer_"):]) == stage)
            return jnp.full_like(x, self.train_others)

        return jax.tree_util.tree_map_with_path(mask, params)

    # forward passes
    def _apply(self, model, params, batch, rng=None):
        return model.apply({"params": params}, batch["input_word_ids"], batch["input_mask"],
                           batch["input_type_ids"], batch.get("masked_lm_positions"),
                           input_positions=batch.get("input_positions"), deterministic=rng is None, output_attentions=self.needs_attention,
                           rngs={"dropout": rng} if rng is not None else {})

    def teacher_outputs(self, frozen, batch):
        if "teacher_logits" in batch:  # from the cache
            return {"logits": batch["teacher_logits"]}
        out = self._apply(self.teacher, frozen["teacher"], batch)
        return jax.tree_util.tree_map(jax.lax.stop_gradient, out)

    def project(self, params, name, x):
        if name not in self.projections:
            return x
        p = params["projections"][name]
        return x @ p["kernel"].astype(x.dtype) + p["bias"].astype(x.dtype)

    def term_losses(self, params, s_out, t_out, batch, step=0) -> dict[str, jax.Array]:
        """Each term's value (a mean over its valid elements) on one batch."""
        mask = (batch["input_mask"] > 0).astype(jnp.int32)  # packed rows hold segment numbers
        w = batch["example_weight"]
        out = {}
        for term in self.terms:
            feature, kind, name = term["feature"], term["loss"], term["name"]
            if feature in ("logits", "mlm_logits"):
                s, t = s_out[feature], t_out[feature]
                weights = batch["masked_lm_weights"] if feature == "mlm_logits" else w
                temperature = term.get("temperature", 1.0)
                if kind == "mse":
                    value = losses.logit_mse(s, t, weights)
                else:
                    fn = losses.soft_cross_entropy if kind == "soft_ce" else losses.kl_divergence
                    value = fn(s, t, temperature=temperature, weights=weights,
                               t_squared=term.get("t_squared", False))
            elif feature == "embedding":
                pooling = term.get("pooling", "mean")
                s = self.project(params, name, sentence_embedding(s_out, pooling, mask))
                t = sentence_embedding(t_out, pooling, mask)
                value = (losses.embedding_mse(s, t, w) if kind == "mse"
                         else losses.embedding_cosine(s, t, w))
            else:
                s_layers = features_of(s_out, feature, mask)
                t_layers = features_of(t_out, feature, mask)
                values = []
                pairs = term["pairs"]
                for t_i, s_i in pairs:
                    s, t = s_layers[s_i], t_layers[t_i]
                    if feature == "hidden":
                        s = self.project(params, name, s)
                        fn = {"mse": losses.hidden_mse, "cosine": losses.cosine_distance,
                              "feature_map": losses.layer_normed_mse}[kind]
                    else:
                        fn = {"attention_logits": losses.attention_logit_mse,
                              "attention_probs": losses.attention_kl,
                              "value_relation": losses.minilm_value_relation_kl}[feature]
                    values.append(fn(s, t, mask))
                if self.progressive:  # only the pair of the layer this stage trains
                    current = self.stage(step) + 1
                    value = sum(v * (s_i == current) for v, (_, s_i) in zip(values, pairs))
                else:
                    value = sum(values) / len(values)
            out[name] = value
        return out

    def denominators(self, batch):
        return {"examples": jnp.maximum(batch["example_weight"].sum(), 1.0)}

    def loss(self, params, frozen, batch, rng, den):
        s_out = self._apply(self.student.model, params["student"], batch, rng)
        t_out = self.teacher_outputs(frozen, batch)
        terms = self.term_losses(params, s_out, t_out, batch, den.get("step", 0))
        # Terms are means over the micro-batch; weighting by its share of the global batch
        # makes the sum over micro-batches the full-batch value.
        share = batch["example_weight"].sum() / den["examples"]
        total = sum(float(t["weight"]) * terms[t["name"]] for t in self.terms)
        metrics = {k: v * share for k, v in terms.items()}
        if self.alpha < 1.0 and "logits" in s_out:
            hard = losses.cross_entropy(s_out["logits"], batch["label"],
                                        batch["example_weight"] * batch["has_label"])
            metrics["hard_loss"] = hard * share
            total = self.alpha * total + (1.0 - self.alpha) * hard
        return total * share, metrics

    def eval_metrics(self, params, frozen, batch):
        s_out = self._apply(self.student.model, params["student"], batch)
        t_out = self.teacher_outputs(frozen, batch)
        n = batch["example_weight"].sum()
        metrics = {k: (v * n, n) for k, v in self.term_losses(params, s_out, t_out, batch).items()}
        if "logits" in s_out:
            agree = (jnp.argmax(s_out["logits"], -1) == jnp.argmax(t_out["logits"], -1))
            metrics["teacher_agreement"] = ((agree * batch["example_weight"]).sum(), n)
        if any(t["feature"] == "embedding" for t in self.terms):
            term = next(t for t in self.terms if t["feature"] == "embedding")
            s = self.project(params, term["name"], sentence_embedding(s_out, term.get("pooling", "mean"), batch["input_mask"]))
            t = sentence_embedding(t_out, term.get("pooling", "mean"), batch["input_mask"])
            cos = jnp.sum(s * t, -1) / (jnp.linalg.norm(s, axis=-1) * jnp.linalg.norm(t, axis=-1) + 1e-9)
            metrics["embedding_cosine"] = ((cos * batch["example_weight"]).sum(), n)
        return metrics

    def predict(self, params, frozen, batch):
        out = self._apply(self.student.model, params["student"], batch)
        return {"logits": out["logits"], "example_weight": batch["example_weight"]}

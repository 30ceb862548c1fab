"""Knowledge distillation as a trainer task: a frozen teacher and a student in one jitted step.

The loss is a weighted sum of *terms*, each naming a feature of the two models' output dicts, a
layer map (`distill.layer_maps`) and a loss from `distill.losses`:

    feature            what is compared                               losses
    logits             classifier logits (PD step 2, DistilBERT)      soft_ce, kl, mse
    mlm_logits         MLM logits at masked positions, or with        soft_ce, kl, mse, hard
                       tokens="all" at every real token (DistilBERT)
    nsp_logits         next-sentence logits (MobileBERT's PD)         soft_ce, kl, hard
    hidden             embedding output (layer 0) + layer outputs     mse, cosine, feature_map,
                                                                      mean_mse, variance_l1
    attention_logits   pre-softmax attention scores (TinyBERT)        mse
    attention_probs    attention distributions (MobileBERT, MiniLM)   kl
    value_relation     softmax(V·Vᵀ/√d) per head (MiniLM)             kl
    embedding          pooled or mean-pooled sentence embeddings      mse, cosine

A layered term sums its layer pairs, as TinyBERT's and MobileBERT's released code sum their
per-layer losses. Hidden and embedding terms go through a learned linear projection (student → teacher width) when
the widths differ (TinyBERT). The optimizer sees the student and the projections only; the teacher
sits under `stop_gradient` in `frozen`, and `teacher_outputs` is the one place its outputs come
from (a cache of them replaces it).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from distill import losses, student_init
from distill.layer_maps import layer_pairs
from distill.losses import masked_lm_terms
from distill.models import ModelSpec
from flaxbert.params import logical_axes
from flaxbert.partitioning import constrain

LOSSES = {
    "logits": ("soft_ce", "kl", "mse", "hard"),
    "mlm_logits": ("soft_ce", "kl", "mse", "hard"),
    "nsp_logits": ("soft_ce", "kl", "hard"),
    "hidden": ("mse", "cosine", "feature_map", "mean_mse", "variance_l1"),
    "attention_logits": ("mse",),
    "attention_probs": ("kl",),
    "value_relation": ("kl",),
    "embedding": ("mse", "cosine"),
}
LAYERED = ("hidden", "attention_logits", "attention_probs", "value_relation")
HEAD_OF = {"logits": "classifier", "mlm_logits": "mlm", "nsp_logits": "nsp"}
HIDDEN_LOSSES = {"mse": losses.hidden_mse, "cosine": losses.cosine_distance,
                 "feature_map": losses.layer_normed_mse, "mean_mse": losses.mean_statistic_mse,
                 "variance_l1": losses.variance_statistic_l1}
MLM_TOKENS = ("masked", "all")


def heads_needed(terms, alpha: float = 1.0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(student heads, teacher heads) the terms read; `hard` terms need no teacher head."""
    student = {HEAD_OF[t["feature"]] for t in terms if t["feature"] in HEAD_OF}
    teacher = {HEAD_OF[t["feature"]] for t in terms
               if t["feature"] in HEAD_OF and t["loss"] != "hard"}
    if alpha < 1.0:
        student.add("classifier")
    order = ("mlm", "nsp", "classifier")
    return tuple(h for h in order if h in student), tuple(h for h in order if h in teacher)


def check_data(terms, *, masked: bool, nsp: bool, labelled: bool, alpha: float,
               teacher_heads, teacher_name, cached: bool = False) -> None:
    """Refuses, before anything is built, a term the data, the teacher or (for general
    distillation) the top-k teacher cache cannot feed."""
    for i, term in enumerate(terms):
        feature, where = term["feature"], f"distill.terms[{i}] ({term['feature']}/{term['loss']})"
        if feature == "mlm_logits" and not masked:
            raise ValueError(f"{where} needs masked-LM instances (masked_lm_positions): this "
                             f"config's data is a sentence transfer set; give data.train a "
                             f"raw-text spec (text:, jsonl:, vader:, tfds:) and "
                             f"data.max_predictions_per_seq, as `distill pretrain` reads")
        if feature == "nsp_logits" and not nsp:
            raise ValueError(f"{where} needs sentence pairs with next-sentence labels: set "
                             f"data.nsp=True on raw-text data (single sentences have none)")
        if feature == "logits" and term["loss"] == "hard" and not labelled:
            raise ValueError(f"{where} needs labelled rows")
        head = HEAD_OF.get(feature)
        if head and term["loss"] != "hard" and head not in teacher_heads:
            raise ValueError(f"{where} needs the teacher's {head} head, and {teacher_name} has "
                             f"none (its heads: {list(teacher_heads)})")
    if cached:
        for i, term in enumerate(terms):
            if (term["feature"] not in ("mlm_logits", "nsp_logits") or term["loss"] == "mse"
                    or term.get("tokens", "masked") != "masked"):
                raise ValueError(f"distill.terms[{i}] ({term['feature']}/{term['loss']}) needs "
                                 f"the live teacher: distill.cache holds its top-k MLM logits "
                                 f"at the masked positions (soft_ce, kl) and NSP logits only; "
                                 f"set distill.cache=''")
    if alpha < 1.0 and not labelled:
        raise ValueError(f"distill.alpha={alpha} < 1 weighs a hard-label term, but no row has a "
                         f"label: name a task (task.name) and set distill.include_train_texts=True")


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
            if feature == "mlm_logits":
                term.setdefault("tokens", "masked")
                if term["tokens"] not in MLM_TOKENS or (term["tokens"] == "all"
                                                        and term["loss"] == "hard"):
                    raise ValueError(f"distill.terms[{i}].tokens={term['tokens']!r}; expected "
                                     f"masked, or all (every real token's distribution: soft "
                                     f"losses only, the hard labels exist at masked positions)")
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
        # Progressive knowledge transfer (MobileBERT): stage k trains student layer k on its layer
        # pairs for `progressive_steps` steps. Layers below k move at `progressive_lower_lr` × the
        # rate: 0 freezes them (the paper), 0.1 is the released code's `layer_wise_learning_rate`;
        # layers above k wait. Everything outside the encoder layers (embeddings, pooler, heads:
        # copied from the teacher) stays fixed, as lamb_optimizer.py gives every variable outside
        # `bert/encoder/layer_` a learning rate of 0. The projections always train.
        # `stage_steps` tells the optimizer to restart its warmup and decay at every stage
        # (`progressive_schedule="global"`: one warmup + decay over all stages, for comparison).
        self.progressive = int(config.distill.get("progressive_steps", 0) or 0)
        if self.progressive and student.scan:
            raise ValueError("progressive transfer trains one layer_{i} at a time: set "
                             "model.scan_layers=False")
        schedule = config.distill.get("progressive_schedule", "per_stage")
        if schedule not in ("per_stage", "global"):
            raise ValueError(f"distill.progressive_schedule={schedule!r}; expected per_stage (the "
                             f"released code's warmup + decay restarted in every stage) or global")
        self.stage_steps = self.progressive if schedule == "per_stage" else 0
        self.lower_lr = float(config.distill.get("progressive_lower_lr", 0.0))
        if not 0.0 <= self.lower_lr <= 1.0:
            raise ValueError(f"distill.progressive_lower_lr={self.lower_lr}; expected a scale in "
                             f"[0, 1] (0 = lower layers frozen, as the paper; 0.1 = the released code)")
        if self.progressive:
            for term in self.terms:
                if term["feature"] in LAYERED:
                    trained = {s for _, s in term["pairs"]}
                    missing = sorted(set(range(1, s_cfg.num_hidden_layers + 1)) - trained)
                    if missing:
                        raise ValueError(f"distill.progressive_steps: term {term['name']} has no "
                                         f"layer pair for student layer(s) {missing}, so their "
                                         f"stages would train nothing; list a pair per layer")
        self.num_student_layers = s_cfg.num_hidden_layers
        self.needs_attention = any(t["feature"] in LAYERED[1:] for t in self.terms)
        self.mlm_all_tokens = any(t.get("tokens") == "all" for t in self.terms)
        self.alpha = float(config.distill.alpha)
        self.frozen = {"teacher": teacher_params} if teacher_params is not None else {}
        self.frozen_axes = {"teacher": logical_axes(teacher)} if teacher_params is not None else {}
        self.initial_params = None
        if student.initial_params is not None:
            self.initial_params = {"student": student.initial_params}
            if self.projections:  # a student folder's saved projections carry over
                self.initial_params["projections"] = student_init.carried_projections(
                    config.model.name,
                    nn.unbox(self._init_projections(jax.random.PRNGKey(config.trainer.seed))))

    # parameters: the student and the projections
    def _init_projections(self, rng):
        init = nn.initializers.normal(self.student.config.initializer_range)
        out = {}
        for i, (name, (d_in, d_out)) in enumerate(sorted(self.projections.items())):
            kernel = init(jax.random.fold_in(rng, i), (d_in, d_out), jnp.float32)
            # column-parallel over tensor, like the MLM transform: each device projects its share
            out[name] = {"kernel": nn.LogicallyPartitioned(kernel, ("embed", "embed_out")),
                         "bias": nn.LogicallyPartitioned(jnp.zeros(d_out), ("embed_out",))}
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
                layer = int(keys[2][len("layer_"):])
                scale = jnp.where(layer == stage, 1.0, jnp.where(layer < stage, self.lower_lr, 0.0))
                return jnp.full_like(x, scale)
            return jnp.zeros_like(x)

        return jax.tree_util.tree_map_with_path(mask, params)

    # forward passes
    def _apply(self, model, params, batch, rng=None):
        return model.apply({"params": params}, batch["input_word_ids"], batch["input_mask"],
                           batch["input_type_ids"], batch.get("masked_lm_positions"),
                           input_positions=batch.get("input_positions"), deterministic=rng is None,
                           output_attentions=self.needs_attention,
                           mlm_all_tokens=self.mlm_all_tokens and "mlm" in model.heads,
                           rngs={"dropout": rng} if rng is not None else {})

    def teacher_outputs(self, frozen, batch):
        if "teacher_logits" in batch:  # from the task-distillation cache
            return {"logits": batch["teacher_logits"]}
        if "teacher_topk_logits" in batch:  # from the general-distillation top-k cache
            out = {"mlm_topk": (batch["teacher_topk_logits"], batch["teacher_topk_ids"])}
            if "teacher_nsp_logits" in batch:
                out["nsp_logits"] = batch["teacher_nsp_logits"]
            return out
        out = self._apply(self.teacher, frozen["teacher"], batch)
        return jax.tree_util.tree_map(jax.lax.stop_gradient, out)

    def project(self, params, name, x):
        if name not in self.projections:
            return x
        p = params["projections"][name]
        y = x @ p["kernel"].astype(x.dtype) + p["bias"].astype(x.dtype)
        # computed where its input lives: a layer output's sequence shard (sequence parallelism
        # over tensor), a pooled embedding's units split over tensor; whole, it would repeat on
        # every tensor device
        if y.ndim == 3:
            return constrain(y, ("batch", "act_length", "act_embed"))
        return constrain(y, ("batch",) + ("length",) * (y.ndim - 2) + ("embed_out",))

    def term_losses(self, params, s_out, t_out, batch, step=None, per_layer=None):
        """Each term's value (a mean over its valid elements) on one batch. Layered terms sum
        their pairs, or with progressive transfer and a `step` take the pair of that step's stage;
        `per_layer` (a dict) receives each pair's value as `{name}_layer{s}`."""
        mask = (batch["input_mask"] > 0).astype(jnp.int32)  # packed rows hold segment numbers
        w = batch["example_weight"]
        out = {}
        for term in self.terms:
            feature, kind, name = term["feature"], term["loss"], term["name"]
            if feature in HEAD_OF:
                s = s_out[feature]
                weights = batch["masked_lm_weights"] if feature == "mlm_logits" else w
                if term.get("tokens") == "all":  # every real token (the masked ones included)
                    s, weights = s_out["token_mlm_logits"], mask * w[:, None]
                temperature = term.get("temperature", 1.0)
                if kind == "hard":
                    labels = {"logits": "label", "mlm_logits": "masked_lm_ids",
                              "nsp_logits": "next_sentence_labels"}[feature]
                    if feature == "logits":
                        weights = w * batch["has_label"]
                    value = losses.cross_entropy(s, batch[labels], weights)
                    out[name] = value
                    continue
                if feature == "mlm_logits" and "mlm_topk" in t_out:  # renormalised top k
                    fn = (losses.top_k_soft_cross_entropy if kind == "soft_ce"
                          else losses.top_k_kl_divergence)
                    out[name] = fn(s, *t_out["mlm_topk"], temperature=temperature,
                                   weights=weights, t_squared=term.get("t_squared", False))
                    continue
                t = t_out["token_mlm_logits" if term.get("tokens") == "all" else feature]
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
                        fn = HIDDEN_LOSSES[kind]
                    else:
                        fn = {"attention_logits": losses.attention_logit_mse,
                              "attention_probs": losses.attention_kl,
                              "value_relation": losses.minilm_value_relation_kl}[feature]
                    values.append(fn(s, t, mask))
                    if per_layer is not None:
                        per_layer[f"{name}_layer{s_i}"] = values[-1]
                if self.progressive and step is not None:  # the pair of this stage's layer
                    current = self.stage(step) + 1
                    value = sum(v * (s_i == current) for v, (_, s_i) in zip(values, pairs))
                else:
                    value = sum(values)
            out[name] = value
        return out

    def term_count(self, term, batch) -> jax.Array:
        """How many elements a term's value averages over on `batch` (its weights' sum)."""
        feature = term["feature"]
        w = batch["example_weight"]
        if feature == "logits" and term["loss"] == "hard":
            return (w * batch["has_label"]).sum()
        if feature in ("logits", "nsp_logits", "embedding"):
            return w.sum()
        if feature == "mlm_logits" and term.get("tokens") != "all":
            return batch["masked_lm_weights"].sum()
        if feature == "mlm_logits":  # every real token of the weighted rows
            return ((batch["input_mask"] > 0) * w[:, None]).sum()
        lengths = (batch["input_mask"] > 0).sum(-1).astype(jnp.float32)
        if feature == "attention_logits":  # real query-key pairs
            return jnp.square(lengths).sum()
        return lengths.sum()  # real tokens (per head, per query: the heads are a constant factor)

    def denominators(self, batch):
        """Global element counts: a micro-batch term, mean × its count / the global count, sums
        over micro-batches to the full batch's mean, so gradient accumulation is exact."""
        den = {t["name"]: jnp.maximum(self.term_count(t, batch), 1.0) for t in self.terms}
        if self.alpha < 1.0:
            den["hard"] = jnp.maximum((batch["example_weight"] * batch["has_label"]).sum(), 1.0)
        return den

    def loss(self, params, frozen, batch, rng, den):
        s_out = self._apply(self.student.model, params["student"], batch, rng)
        t_out = self.teacher_outputs(frozen, batch)
        terms = self.term_losses(params, s_out, t_out, batch, den.get("step"))
        terms = {t["name"]: terms[t["name"]] * self.term_count(t, batch) / den[t["name"]]
                 for t in self.terms}
        total = sum(float(t["weight"]) * terms[t["name"]] for t in self.terms)
        metrics = dict(terms)
        if self.alpha < 1.0:
            labelled = batch["example_weight"] * batch["has_label"]
            hard = losses.cross_entropy(s_out["logits"], batch["label"], labelled)
            hard = hard * labelled.sum() / den["hard"]
            metrics["hard_loss"] = hard
            total = self.alpha * total + (1.0 - self.alpha) * hard
        return total, metrics

    def eval_metrics(self, params, frozen, batch):
        s_out = self._apply(self.student.model, params["student"], batch)
        t_out = self.teacher_outputs(frozen, batch)
        n = batch["example_weight"].sum()
        per_layer = {}
        values = self.term_losses(params, s_out, t_out, batch, per_layer=per_layer)
        counts = {t["name"]: self.term_count(t, batch) for t in self.terms}
        metrics = {k: (v * counts[k], counts[k]) for k, v in values.items()}
        for k, v in per_layer.items():  # the pair's term name is the key's prefix
            count = counts[k.rsplit("_layer", 1)[0]]
            metrics[k] = (v * count, count)
        if "mlm_logits" in s_out and "masked_lm_ids" in batch:
            for who, out in (("", s_out), ("teacher_", t_out)):
                if "mlm_logits" in out:
                    nll, correct, weights = masked_lm_terms(out["mlm_logits"], batch)
                    metrics[f"{who}mlm_loss"] = (nll.sum(), weights.sum())
                    metrics[f"{who}mlm_accuracy"] = (correct.sum(), weights.sum())
            if "mlm_topk" in t_out:  # the cache's top-1 is the teacher's prediction
                weights = batch["masked_lm_weights"]
                correct = (t_out["mlm_topk"][1][..., 0] == batch["masked_lm_ids"]) * weights
                metrics["teacher_mlm_accuracy"] = (correct.sum(), weights.sum())
        if "logits" in s_out and "logits" in t_out:
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

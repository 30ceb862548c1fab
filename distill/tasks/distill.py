"""Knowledge distillation: a frozen teacher and a student in one jitted, sharded step.

The loss is a weighted sum of *terms*, each naming a feature of the two models' output dicts, a
layer map and a loss from `distill.losses`:

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
sits under `stop_gradient` in `frozen`. With `distill.cache`, the teacher's logits over the
transfer set are computed once, stored with a fingerprint of the data and the teacher, and the
student trains from them without loading the teacher again.

    distill distill --config experiments/distill.py:task --workdir runs/kd
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from distill import losses
from distill import metrics as glue
from distill.data import tasks as task_data
from distill.data.features import (encode_examples, eval_batches, in_file_order, num_examples,
                                   train_batches)
from distill.tasks.common import ModelSpec, atomic_output, plot_curves, prepare_workdir, write_json
from distill.tasks.finetune import derive_num_steps, dev_splits, load_splits
from distill.distributed import host_copy
from distill.trainer import Trainer
from flaxbert.params import flatten, logical_axes
from flaxbert.pretrained import from_pretrained, save_pretrained
from flaxbert.textfiles import read_utf8

log = logging.getLogger(__name__)

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


# --- layer maps ----------------------------------------------------------------------------------
def layer_pairs(rule, teacher_layers: int, student_layers: int, feature: str) -> list[tuple[int, int]]:
    """(teacher, student) layer pairs, 1-based; 0 is the embedding output (hidden only).

    uniform  student layer m ← teacher layer m·Lt/Ls (TinyBERT), plus 0 ← 0 for hidden states
    last     the last layers only
    skip     DistilBERT's every other layer: student m ← teacher 2m (needs Lt = 2·Ls)
    [[t, s], ...] explicit pairs
    """
    if isinstance(rule, str):
        if rule == "last":
            pairs = [(teacher_layers, student_layers)]
        elif rule == "uniform":
            if teacher_layers % student_layers:
                raise ValueError(f"layer map 'uniform': teacher depth {teacher_layers} is not a "
                                 f"multiple of student depth {student_layers}; list the pairs")
            step = teacher_layers // student_layers
            pairs = [(m * step, m) for m in range(1, student_layers + 1)]
            pairs = ([(0, 0)] if feature == "hidden" else []) + pairs
        elif rule == "skip":
            if teacher_layers != 2 * student_layers:
                raise ValueError(f"layer map 'skip' needs teacher depth = 2 × student depth, got "
                                 f"{teacher_layers} and {student_layers}")
            pairs = [(2 * m, m) for m in range(1, student_layers + 1)]
        else:
            raise ValueError(f"layer map {rule!r}; expected uniform, last, skip or [[t, s], ...]")
    else:
        pairs = [tuple(int(i) for i in pair) for pair in rule]
    lowest = 0 if feature == "hidden" else 1
    for t, s in pairs:
        if not (lowest <= t <= teacher_layers and lowest <= s <= student_layers):
            raise ValueError(f"layer pair (teacher {t}, student {s}) for {feature} is out of range: "
                             f"teacher layers {lowest}..{teacher_layers}, student {lowest}..{student_layers}")
    return pairs


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


# --- the task ------------------------------------------------------------------------------------
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


# --- student initialisation ----------------------------------------------------------------------
def truncated_from_teacher(teacher_params, teacher_cfg, student_cfg, how: str) -> dict:
    """Student backbone from teacher layers ("first": 1..k, "every_other": 2, 4, ...), as
    DistilBERT initialises its student; needs equal widths."""
    if (teacher_cfg.hidden_size, teacher_cfg.intermediate_size) != (
            student_cfg.hidden_size, student_cfg.intermediate_size):
        raise ValueError(f"student init from teacher layers needs equal widths: teacher "
                         f"{teacher_cfg.hidden_size}/{teacher_cfg.intermediate_size}, student "
                         f"{student_cfg.hidden_size}/{student_cfg.intermediate_size}")
    k = student_cfg.num_hidden_layers
    chosen = {"first": range(k), "every_other": range(1, 2 * k, 2)}.get(how)
    if chosen is None:
        raise ValueError(f"distill.student_init={how!r}; expected random, first, every_other or a folder")
    if max(chosen) >= teacher_cfg.num_hidden_layers:
        raise ValueError(f"teacher has {teacher_cfg.num_hidden_layers} layers; cannot take {how} {k}")
    backbone = dict(teacher_params["backbone"])
    layers = {f"layer_{i}": backbone.pop(f"layer_{t}") for i, t in enumerate(chosen)}
    backbone = {k_: v for k_, v in backbone.items() if not k_.startswith("layer_")}
    return {**{k_: v for k_, v in teacher_params.items() if k_ != "backbone"},
            "backbone": {**backbone, **layers}}


def embeddings_from_teacher(teacher_params, student_params) -> dict:
    """The student's word, position and token-type tables = the teacher's, projected onto the
    top principal directions of the teacher's word embeddings (copied when widths match); the
    rest of the student keeps its own initialisation. Gives a narrow student the teacher's
    lexical geometry from step 0."""
    t_emb = teacher_params["backbone"]["embeddings"]
    s_emb = dict(student_params["backbone"]["embeddings"])
    words = np.asarray(t_emb["word_embeddings"]["embedding"], np.float32)
    width = s_emb["word_embeddings"]["embedding"].shape[1]
    if s_emb["word_embeddings"]["embedding"].shape[0] != words.shape[0] or width > words.shape[1]:
        raise ValueError(f"student_init=teacher_embeddings needs the teacher's vocab and a width "
                         f"<= the teacher's: teacher {words.shape}, student "
                         f"{s_emb['word_embeddings']['embedding'].shape}")
    _, _, directions = np.linalg.svd(words - words.mean(0), full_matrices=False)
    basis = directions[:width].T  # [teacher width, student width]
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        rows = s_emb[table]["embedding"].shape[0]
        s_emb[table] = {"embedding": np.asarray(t_emb[table]["embedding"], np.float32)[:rows] @ basis}
    return {**student_params, "backbone": {**student_params["backbone"], "embeddings": s_emb}}


# --- data ----------------------------------------------------------------------------------------
def transfer_examples(config) -> list[task_data.Example]:
    """The unlabelled transfer set: the VADER texts the config names, or a text file (one per line)."""
    d = config.data
    if d.transfer == "vader":
        texts = task_data.vader_transfer_texts(d.vader_dir)
    else:
        path = Path(d.transfer)
        if not path.is_file():
            raise FileNotFoundError(f"data.transfer={d.transfer!r}: no such file (expected 'vader' "
                                    f"or a text file with one example per line)")
        texts = [line.strip() for line in read_utf8(path, "data.transfer").splitlines()
                 if line.strip()]
    if not texts:
        raise ValueError(f"data.transfer={d.transfer!r} holds no texts")
    return [task_data.Example(f"transfer-{i}", t, None, None) for i, t in enumerate(texts)]


def fingerprint(features: dict[str, np.ndarray], teacher_params, teacher_name: str) -> str:
    h = hashlib.sha256(teacher_name.encode())
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        h.update(np.ascontiguousarray(features[key]).tobytes())
    for name, value in sorted(flatten(jax.device_get(teacher_params)).items()):
        h.update(name.encode())
        h.update(np.asarray(value, np.float32).tobytes())
    return h.hexdigest()


def cached_teacher_logits(path: Path, print_: str, compute) -> np.ndarray:
    """The teacher's logits from `path` if its fingerprint matches, else computed and stored."""
    if path.exists():
        stored = np.load(path)
        if str(stored["fingerprint"]) != print_:
            raise ValueError(f"teacher-output cache {path} was made for other data or another "
                             f"teacher (fingerprint mismatch); delete it or point distill.cache "
                             f"elsewhere")
        return stored["logits"]
    logits = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, logits=logits, fingerprint=np.asarray(print_))
    return logits


# --- the program ---------------------------------------------------------------------------------
def run(config, workdir: str | Path) -> dict:
    """Task / sentence-embedding / feature distillation of config.teacher into config.model."""
    workdir = prepare_workdir(workdir, config)
    d = config.distill
    teacher_heads = ("classifier",) if any(t["feature"] == "logits" for t in d.terms) else ()
    teacher_model, teacher_params, tokenizer = from_pretrained(
        config.teacher.name, heads=teacher_heads or None,
        param_dtype=jnp.bfloat16 if config.teacher.dtype == "bfloat16" else jnp.float32,
        dtype=jnp.bfloat16 if config.teacher.dtype == "bfloat16" else jnp.float32)
    spec_task, splits = load_splits(config.task) if config.task.name else (None, {})
    num_labels = task_data.num_labels(spec_task) if spec_task else 2
    student = ModelSpec(config.model, teacher_heads, num_labels=num_labels,
                        vocab_size=tokenizer.vocab_size)
    if d.student_init in ("first", "every_other"):
        student.initial_params = student.layout(truncated_from_teacher(
            jax.device_get(teacher_params), teacher_model.config, student.config, d.student_init))
    elif d.student_init == "teacher_embeddings":
        random_init = nn.unbox(student.init_params(jax.random.PRNGKey(config.trainer.seed)))
        student.initial_params = embeddings_from_teacher(jax.device_get(teacher_params),
                                                         random_init)
    elif d.student_init != "model":
        raise ValueError(f"distill.student_init={d.student_init!r}; expected model (whatever "
                         f"model.name gives: a preset or a folder), first, every_other or "
                         f"teacher_embeddings")
    if student.config.vocab_size != teacher_model.config.vocab_size:
        raise ValueError(f"student vocab_size={student.config.vocab_size} differs from the "
                         f"teacher's {teacher_model.config.vocab_size}; they must share a vocab")

    transfer = transfer_examples(config)
    if d.include_train_texts and "train" in splits:
        transfer = transfer + [task_data.Example(e.guid, e.text_a, e.text_b, None) for e in splits["train"]]
    features = encode_examples(transfer, tokenizer, config.data.max_seq_length)
    features["has_label"] = np.zeros(num_examples(features), np.float32)
    held_out = None
    if d.held_out:  # the last examples are kept out of training to score the terms on
        if d.held_out >= num_examples(features):
            raise ValueError(f"distill.held_out={d.held_out} leaves no transfer examples to train on")
        held_out = {k: v[-d.held_out:] for k, v in features.items()}
        features = {k: v[:-d.held_out] for k, v in features.items()}
    derive_num_steps(config, num_examples(features))
    bs = config.trainer.batch_size

    use_cache = bool(d.cache)
    if use_cache:
        if any(t["feature"] != "logits" for t in d.terms):
            raise ValueError("distill.cache holds classifier logits only; use it with 'logits' terms")

        def compute():
            apply = jax.jit(lambda p, b: teacher_model.apply(
                {"params": p}, b["input_word_ids"], b["input_mask"], b["input_type_ids"])["logits"])
            # unsharded, on whole batches in every process
            batches = eval_batches(features, bs, process_index=0, process_count=1)
            return in_file_order([{"logits": np.asarray(apply(teacher_params, b))}
                                  for b in batches], "logits", features, bs)

        features["teacher_logits"] = cached_teacher_logits(
            Path(d.cache), fingerprint(features, teacher_params, str(config.teacher.name)), compute)
    task = DistillTask(config, student, teacher_model, None if use_cache else teacher_params)
    trainer = Trainer(task, config, workdir)
    dev = {split: encode_examples(splits[split], tokenizer, config.data.max_seq_length)
           for split in ("dev", "test") if split in splits}

    metric_task = dev_splits(spec_task, splits)[0][1] if spec_task else None

    def accuracy(params, split):
        outs = trainer.predict(params, eval_batches(dev[split], bs), task.predict)
        preds = in_file_order(outs, "logits", dev[split], bs).argmax(-1)
        return glue.glue_metrics(metric_task, preds, dev[split]["label"])

    def evaluate(state):
        results = {}
        if held_out is not None and not use_cache:
            results.update(trainer.evaluate(state.params, eval_batches(held_out, bs)))
        if "dev" in dev and teacher_heads:
            results.update({f"dev_{k}": v for k, v in accuracy(state.params, "dev").items()})
        return results

    train = train_batches(features, bs, seed=config.trainer.seed,
                          buckets=tuple(config.data.buckets),
                          group_by_length=config.data.group_by_length)
    state = trainer.fit(train, evaluate)
    result = {"steps": int(state.step), "final": trainer.last_eval,
              "student_parameters": int(sum(np.prod(x.shape) for x in
                                            jax.tree_util.tree_leaves(state.params["student"])))}
    if teacher_heads:  # the distilled classifier on the labelled task, as it stands
        result.update({split: accuracy(state.params, split) for split in dev})
    student_params = host_copy(state.params["student"])
    if jax.process_index() == 0:
        with atomic_output(workdir / "export") as tmp:
            save_pretrained(tmp, student.model, student_params, tokenizer)
        write_json(workdir / "result.json", result)
        plot_curves(workdir, ["loss", *[t["name"] for t in task.terms]])
    log.info("distillation done: %s", result)
    return result

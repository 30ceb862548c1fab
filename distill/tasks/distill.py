"""`distill distill`: distils config.teacher into config.model, from config.

    distill distill --config distill.py:task --workdir runs/kd          # transfer set
    distill distill --config distill.py:distilbert --workdir runs/db    # raw text

Two kinds of data: a sentence transfer set (`data.transfer`: task distillation, optionally with
the task's labelled training rows) or raw text (`data.train`/`data.eval` with the fields of
`distill pretrain`: the same specs `text:`, `jsonl:`, `vader:`, `tfds:` and the same masked
instances, dynamic masking and NSP pairs) for general distillation with MLM / NSP terms and a
live teacher.

The terms, layer maps and the task live in `distill.distillation`; student initialisation (and
the projections an export carries to the next run) in `distill.student_init`; the teacher
caches (`distill.cache`: classifier logits of a transfer set, or for raw text the teacher's
top-k MLM logits at the masked positions) in `distill.teacher_cache`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from distill import metrics as glue
from distill import student_init, teacher_cache
from distill.data import tasks as task_data
from distill.data.features import (
    encode_examples,
    eval_batches,
    in_file_order,
    num_examples,
    train_batches,
)
from distill.data.transfer import transfer_examples
from distill.distillation import DistillTask, check_data, heads_needed
from distill.distributed import host_copy
from distill.models import ModelSpec
from distill.tasks import pretrain
from distill.tasks.common import atomic_output, plot_curves, prepare_workdir, write_json
from distill.tasks.finetune import derive_num_steps, dev_splits, load_splits
from distill.trainer import Trainer
from flaxbert.params import stack_layers
from flaxbert.pretrained import from_pretrained, save_pretrained

log = logging.getLogger(__name__)


def load_teacher(config):
    """The teacher with the heads its weights have (`check_data` then refuses a head the terms
    need and the weights lack: a random head would give silently wrong targets)."""
    compute = jnp.bfloat16 if config.teacher.dtype == "bfloat16" else jnp.float32
    model, params, tokenizer = from_pretrained(config.teacher.name, heads=None,
                                               param_dtype=compute, dtype=compute)
    return model, params, tokenizer


def is_raw_text(config) -> bool:
    """General distillation: the data block is `distill pretrain`'s (masked instances)."""
    return "max_predictions_per_seq" in config.data


def student_and_teacher(config, teacher_model, teacher_params, tokenizer, num_labels=2):
    """The student (its initial parameters set as `distill.student_init` says, from all the
    teacher's weights) and the teacher cut to the heads the terms read."""
    d = config.distill
    needed, teacher_heads = heads_needed(d.terms, float(d.alpha))
    student = ModelSpec(config.model, student_init.student_heads(d.student_init, needed,
                                                                 teacher_model.heads),
                        num_labels=num_labels, vocab_size=tokenizer.vocab_size)
    if student.config.vocab_size != teacher_model.config.vocab_size:
        raise ValueError(f"student vocab_size={student.config.vocab_size} differs from the "
                         f"teacher's {teacher_model.config.vocab_size}; they must share a vocab")
    student.initial_params = student_init.initial_student(
        d.student_init, config.trainer.seed, student, teacher_model, teacher_params)
    teacher_model = teacher_model.clone(heads=teacher_heads)
    teacher_params = {k: v for k, v in teacher_params.items()
                      if k not in ("mlm", "nsp", "classifier") or k in teacher_heads}
    if config.teacher.get("scan_layers", False):  # one layer body to compile, not L
        teacher_model = teacher_model.clone(scan_layers=True)
        teacher_params = stack_layers(teacher_params)
    return student, teacher_model, teacher_params


def run(config, workdir: str | Path) -> dict:
    """Distils config.teacher into config.model: on raw text (general distillation, masked
    instances as `distill pretrain` makes them) or on a transfer set of sentences or sentence
    pairs (task distillation)."""
    workdir = prepare_workdir(workdir, config)
    d = config.distill
    raw_text = is_raw_text(config)
    spec_task, splits = load_splits(config.task) if config.task.name and not raw_text else (None, {})
    # read first: a transfer set of the wrong kind (pairs or single sentences) is refused at once
    transfer = None if raw_text else transfer_examples(config, spec_task)
    teacher_model, teacher_params, tokenizer = load_teacher(config)
    labelled = bool(d.include_train_texts and "train" in splits)
    check_data(d.terms, masked=raw_text, nsp=raw_text and bool(config.data.get("nsp", False)),
               labelled=labelled, alpha=float(d.alpha), teacher_heads=teacher_model.heads,
               teacher_name=config.teacher.name, cached=raw_text and bool(d.cache))
    num_labels = task_data.num_labels(spec_task) if spec_task else 2
    student, teacher_model, teacher_params = student_and_teacher(
        config, teacher_model, teacher_params, tokenizer, num_labels)
    if raw_text:
        return _general(config, workdir, student, teacher_model, teacher_params, tokenizer)

    features = encode_examples(transfer, tokenizer, config.data.max_seq_length)
    features["has_label"] = np.zeros(num_examples(features), np.float32)
    held_out = None
    if d.held_out:  # the last examples are kept out of training to score the terms on
        if d.held_out >= num_examples(features):
            raise ValueError(f"distill.held_out={d.held_out} leaves no transfer examples to train on")
        held_out = {k: v[-d.held_out:] for k, v in features.items()}
        features = {k: v[:-d.held_out] for k, v in features.items()}
    if labelled:  # the task's training rows join with their labels (has_label = 1)
        rows = encode_examples(splits["train"], tokenizer, config.data.max_seq_length)
        rows["has_label"] = np.ones(num_examples(rows), np.float32)
        features = {k: np.concatenate([features[k], rows[k]]) for k in features}
    derive_num_steps(config, num_examples(features))
    bs = config.trainer.batch_size

    use_cache = bool(d.cache)
    if use_cache:
        if any(t["feature"] != "logits" for t in d.terms):
            raise ValueError("distill.cache holds classifier logits only; use it with 'logits' terms")
        features["teacher_logits"] = teacher_cache.cached_teacher_logits(
            Path(d.cache), teacher_cache.fingerprint(features, teacher_params,
                                                    teacher_cache.teacher_identity(teacher_model)),
            lambda: teacher_cache.teacher_logits(teacher_model, teacher_params, features, bs))
    task = DistillTask(config, student, teacher_model, None if use_cache else teacher_params)
    trainer = Trainer(task, config, workdir)
    dev = {split: encode_examples(splits[split], tokenizer, config.data.max_seq_length)
           for split in ("dev", "test")  # scored where labelled (GLUE's test splits are not)
           if split in splits and all(e.label is not None for e in splits[split])}
    metric_task = dev_splits(spec_task, splits)[0][1] if spec_task else None
    classifies = "classifier" in student.heads

    def accuracy(params, split):
        outs = trainer.predict(params, eval_batches(dev[split], bs), task.predict)
        preds = in_file_order(outs, "logits", dev[split], bs).argmax(-1)
        return glue.glue_metrics(metric_task, preds, dev[split]["label"])

    def evaluate(state):
        results = {}
        if held_out is not None and not use_cache:
            results.update(with_stage(task, trainer.evaluate(state.params, eval_batches(held_out, bs)),
                                      state.step))
        if "dev" in dev and classifies:
            results.update({f"dev_{k}": v for k, v in accuracy(state.params, "dev").items()})
        return results

    train = train_batches(features, bs, seed=config.trainer.seed,
                          buckets=tuple(config.data.buckets),
                          group_by_length=config.data.group_by_length)
    state = trainer.fit(train, evaluate)
    result = {"steps": int(state.step), "final": trainer.last_eval,
              "student_parameters": _count(state.params["student"])}
    if classifies:  # the distilled classifier on the labelled task, as it stands
        result.update({split: accuracy(state.params, split) for split in dev})
    _finish(workdir, student, state, tokenizer, task, result)
    return result


def with_stage(task, results: dict, step) -> dict:
    """Adds `{term}_stage`: the held-out value of the layer the current PKT stage trains."""
    if task.progressive:
        layer = min(int(step) // task.progressive, task.num_student_layers - 1) + 1
        for term in task.terms:
            key = f"{term['name']}_layer{layer}"
            if key in results:
                results[f"{term['name']}_stage"] = results[key]
    return results


def _general(config, workdir, student, teacher_model, teacher_params, tokenizer) -> dict:
    """General distillation on raw text: `distill pretrain`'s masked instances, against a live
    teacher or (distill.cache) its top-k MLM logits cached once."""
    if config.distill.cache:
        train, evaluation = _cached_datasets(config, teacher_model, teacher_params, tokenizer)
        teacher_params = None  # the student trains from the cache alone
    else:
        train, evaluation = pretrain.datasets(config, tokenizer)
    train, evaluation = (ds.map(_with_row_weights) for ds in (train, evaluation))
    task = DistillTask(config, student, teacher_model, teacher_params)
    trainer = Trainer(task, config, workdir)
    state = trainer.fit(iter(train), lambda st: with_stage(
        task, trainer.evaluate(st.params, iter(evaluation)), st.step))
    final = trainer.last_eval or trainer.evaluate(state.params, iter(evaluation))
    result = {"steps": int(state.step), "final": final,
              "student_parameters": _count(state.params["student"])}
    for key in ("mlm_accuracy", "mlm_loss", "teacher_mlm_accuracy"):
        if key in final:
            result[f"eval_{key}"] = final[key]
    _finish(workdir, student, state, tokenizer, task, result)
    return result


def _cached_datasets(config, teacher_model, teacher_params, tokenizer):
    """Training and held-out batches from the top-k cache, written first where it is missing:
    `distill.cache_epochs` masked passes over the training instances and one of the held-out
    text, each row with the teacher's `distill.cache_top_k` largest MLM logits and their ids."""
    d, process = config.distill, jax.process_index()
    k, epochs = int(d.cache_top_k), int(d.cache_epochs)
    if k < 1 or k > teacher_model.config.vocab_size or epochs < 1:
        raise ValueError(f"distill.cache_top_k={k}, distill.cache_epochs={epochs}: expected "
                         f"1 <= top_k <= the vocabulary ({teacher_model.config.vocab_size}) "
                         f"and at least one pass")
    per_host = config.trainer.batch_size // jax.process_count()
    nsp = "nsp" in teacher_model.heads
    print_ = teacher_cache.top_k_fingerprint(
        config.data.to_dict(), teacher_params, teacher_cache.teacher_identity(teacher_model),
        top_k=k, epochs=epochs, rows_per_batch=per_host, process=process,
        processes=jax.process_count(), nsp=nsp)
    passes = {"train": lambda: pretrain.training_passes(config, tokenizer, epochs),
              "eval": lambda: pretrain.held_out_dataset(config, tokenizer)}
    step, sources = None, {}
    for split, batches in passes.items():
        cache = teacher_cache.TopKCache(d.cache, split, print_, process_index=process)
        if not cache.complete():
            log.info("teacher cache: writing the %s split to %s", split, cache.dir)
            step = step or teacher_cache.teacher_top_k_step(
                teacher_model, teacher_params, teacher_cache.local_mesh(config.mesh), k, nsp,
                per_host)
            cache.write(iter(batches()), step, rows_per_shard=int(d.cache_rows_per_shard))
        sources[split] = cache.source()
    seed = int(np.random.default_rng([config.data.seed, process]).integers(2**31))
    return (teacher_cache.top_k_batches(sources["train"], per_host, seed=seed, repeat=True),
            teacher_cache.top_k_batches(sources["eval"], per_host, seed=None, repeat=False))


def _with_row_weights(batch):
    """Masked-instance rows are all real: weight 1, no task label."""
    n = len(batch["input_word_ids"])
    return {**batch, "example_weight": np.ones(n, np.float32),
            "has_label": np.zeros(n, np.float32), "label": np.zeros(n, np.int32)}


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def _finish(workdir, student, state, tokenizer, task, result):
    student_params = host_copy(state.params["student"])
    if jax.process_index() == 0:
        with atomic_output(workdir / "export") as tmp:
            save_pretrained(tmp, student.model, student_params, tokenizer)
            if "projections" in state.params:  # the next run from this export starts with them
                student_init.save_projections(tmp, host_copy(state.params["projections"]))
        write_json(workdir / "result.json", result)
        plot_curves(workdir, ["loss", *[t["name"] for t in task.terms]])
    log.info("distillation done: %s", result)

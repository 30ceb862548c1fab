"""`distill distill`: distils config.teacher into config.model on a transfer set, from config.

    distill distill --config experiments/distill.py:task --workdir runs/kd

The terms, layer maps and the task live in `distill.distillation`; student initialisation in
`distill.student_init`; the teacher-logit cache (`distill.cache`) in `distill.teacher_cache`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from distill import metrics as glue
from distill import student_init, teacher_cache
from distill.data import tasks as task_data
from distill.data.features import encode_examples, eval_batches, in_file_order, num_examples, train_batches
from distill.data.transfer import transfer_examples
from distill.distillation import DistillTask
from distill.distributed import host_copy
from distill.tasks.common import ModelSpec, plot_curves, prepare_workdir, write_json
from distill.tasks.finetune import derive_num_steps, dev_splits, load_splits
from distill.trainer import Trainer
from flaxbert.pretrained import from_pretrained, save_pretrained

log = logging.getLogger(__name__)


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
        student.initial_params = student.layout(student_init.truncated_from_teacher(
            jax.device_get(teacher_params), teacher_model.config, student.config, d.student_init))
    elif d.student_init == "teacher_embeddings":
        random_init = nn.unbox(student.init_params(jax.random.PRNGKey(config.trainer.seed)))
        student.initial_params = student_init.embeddings_from_teacher(jax.device_get(teacher_params),
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

        features["teacher_logits"] = teacher_cache.cached_teacher_logits(
            Path(d.cache), teacher_cache.fingerprint(features, teacher_params, str(config.teacher.name)),
            lambda: teacher_cache.teacher_logits(teacher_model, teacher_params, features, bs))
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
        save_pretrained(workdir / "export", student.model, student_params, tokenizer)
        write_json(workdir / "result.json", result)
        plot_curves(workdir, ["loss", *[t["name"] for t in task.terms]])
    log.info("distillation done: %s", result)
    return result

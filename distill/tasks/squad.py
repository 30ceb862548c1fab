"""Extractive QA (SQuAD v1.1 / v2.0) on the shared trainer: a span head over every token,
windowed features, n-best decoding and the official EM / F1.

    distill squad --config squad.py:v1 --workdir runs/squad \
        --config.task.train=train-v1.1.json --config.task.dev=dev-v1.1.json
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp

from distill.data import squad
from distill.data.features import eval_batches, in_file_order, train_batches
from distill.distributed import host_copy
from distill.models import ModelSpec
from distill.tasks.common import atomic_output, prepare_workdir, write_json
from distill.tasks.finetune import derive_num_steps
from distill.trainer import Trainer
from flaxbert.pretrained import save_pretrained

log = logging.getLogger(__name__)


class SpanTask:
    """Loss = ½ (CE(start) + CE(end)) over real windows (BERT's run_squad)."""

    def __init__(self, spec: ModelSpec):
        self.spec, self.model = spec, spec.model
        self.initial_params = spec.initial_params

    def init_params(self, rng):
        return self.spec.init_params(rng)

    def logits(self, params, batch, rng=None):
        out = self.model.apply({"params": params}, batch["input_word_ids"], batch["input_mask"],
                               batch["input_type_ids"], deterministic=rng is None,
                               rngs={"dropout": rng} if rng is not None else {})
        # padded positions can never be an answer
        masked = jnp.where(batch["input_mask"] > 0, 0.0, -1e9)
        return out["start_logits"] + masked, out["end_logits"] + masked

    def denominators(self, batch):
        return {"examples": jnp.maximum(batch["example_weight"].sum(), 1.0)}

    def _nll(self, start, end, batch):
        def ce(logits, target):
            logp = jax.nn.log_softmax(logits, axis=-1)
            return -jnp.take_along_axis(logp, target[:, None], axis=-1)[:, 0]
        return 0.5 * (ce(start, batch["start_positions"]) + ce(end, batch["end_positions"]))

    def loss(self, params, frozen, batch, rng, den):
        start, end = self.logits(params, batch, rng)
        loss = (self._nll(start, end, batch) * batch["example_weight"]).sum() / den["examples"]
        return loss, {"span_loss": loss}

    def eval_metrics(self, params, frozen, batch):
        start, end = self.logits(params, batch)
        w = batch["example_weight"]
        return {"span_loss": ((self._nll(start, end, batch) * w).sum(), w.sum())}

    def predict(self, params, frozen, batch):
        start, end = self.logits(params, batch)
        return {"start_logits": start, "end_logits": end, "example_weight": batch["example_weight"]}


def answers(trainer, task, params, examples, features, batch_size, cfg) -> squad.SquadPredictions:
    """Decoded answer text for every question, from the model's span logits."""
    outs = trainer.predict(params, eval_batches(features.arrays, batch_size, buckets=(cfg.max_seq_length,)),
                           task.predict)
    start, end = (in_file_order(outs, key, features.arrays, batch_size)
                  for key in ("start_logits", "end_logits"))
    return squad.decode(examples, features, start, end, n_best_size=cfg.n_best_size,
                        max_answer_length=cfg.max_answer_length,
                        null_score_diff_threshold=cfg.null_score_diff_threshold,
                        version_2=cfg.version_2)


def run(config, workdir: str | Path) -> dict:
    workdir = prepare_workdir(workdir, config)
    d = config.data
    spec = ModelSpec(config.model, ("span",))
    tokenizer = spec.tokenizer
    if tokenizer is None:
        from flaxbert.tokenization import load_tokenizer
        tokenizer = load_tokenizer(d.vocab)
    train_examples = squad.read_squad(config.task.train)
    train = squad.featurize(train_examples, tokenizer, d.max_seq_length, d.doc_stride,
                            d.max_query_length, is_training=True)
    dev_examples = squad.read_squad(config.task.dev)
    dev = squad.featurize(dev_examples, tokenizer, d.max_seq_length, d.doc_stride,
                          d.max_query_length, is_training=False)
    derive_num_steps(config, len(train.example_index))
    task = SpanTask(spec)
    trainer = Trainer(task, config, workdir)
    bs = config.trainer.batch_size

    def evaluate(state):
        predictions = answers(trainer, task, state.params, dev_examples, dev, bs, d)
        return squad.evaluate(dev_examples, predictions)

    state = trainer.fit(train_batches(train.arrays, bs, seed=config.trainer.seed,
                                      buckets=(d.max_seq_length,)),
                        evaluate)
    result = {"steps": int(state.step), "dev": trainer.last_eval}
    params = host_copy(state.params)
    if jax.process_index() == 0:
        with atomic_output(workdir / "export") as tmp:
            save_pretrained(tmp, spec.model, params, tokenizer)
        write_json(workdir / "result.json", result)
    log.info("SQuAD done: %s", result)
    return result

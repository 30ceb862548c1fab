"""Masked-LM (+ optional NSP) pre-training, BERT's recipe, on the shared trainer.

    distill pretrain --config pretrain.py:bert_tiny --workdir runs/pretrain_tiny

The run folder ends with `export/` (HF layout, loadable by `from_pretrained` and transformers),
`curves.png` (loss and MLM accuracy) and `result.json` (held-out MLM accuracy next to the
most-frequent-token baseline).

BERT pre-trains in two phases: 128-token rows for 90 % of the steps, then 512. Run them as two
folders: the first with `optimizer.schedule_steps` = the whole schedule and `trainer.num_steps`
= where it stops, the second with `init_from` = the first's folder, which starts from its newest
checkpoint (parameters, optimizer state, step) and continues the same schedule on its own data
(`distill recipe --config recipe.py:paper` chains them so).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from distill import losses
from distill.data.pretraining import text_to_pretraining_dataset
from distill.distributed import host_copy
from distill.models import ModelSpec
from distill.tasks.common import atomic_output, plot_curves, prepare_workdir, write_json
from distill.trainer import Trainer, checkpoint_dir
from flaxbert.pretrained import save_pretrained

log = logging.getLogger(__name__)


class MaskedLMTask:
    """Loss = mean NLL over real masked positions (+ mean NSP cross-entropy when `nsp`)."""

    def __init__(self, spec: ModelSpec, nsp: bool):
        self.spec, self.nsp = spec, nsp
        self.model = spec.model
        self.initial_params = spec.initial_params

    def init_params(self, rng):
        return self.spec.init_params(rng)

    def _forward(self, params, batch, rng=None):
        return self.model.apply(
            {"params": params}, batch["input_word_ids"], batch["input_mask"],
            batch["input_type_ids"], batch["masked_lm_positions"],
            input_positions=batch.get("input_positions"), deterministic=rng is None,
            rngs={"dropout": rng} if rng is not None else {})

    def denominators(self, batch):
        return {"mlm": jnp.maximum(batch["masked_lm_weights"].sum(), 1.0),
                "examples": jnp.float32(batch["input_word_ids"].shape[0])}

    def loss(self, params, frozen, batch, rng, den):
        out = self._forward(params, batch, rng)
        nll, correct, _ = losses.masked_lm_terms(out["mlm_logits"], batch)
        mlm_loss = nll.sum() / den["mlm"]
        metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": correct.sum() / den["mlm"]}
        loss = mlm_loss
        if self.nsp:
            nsp_nll, nsp_correct = losses.next_sentence_terms(out["nsp_logits"],
                                                       batch["next_sentence_labels"])
            metrics["nsp_loss"] = nsp_nll.sum() / den["examples"]
            metrics["nsp_accuracy"] = nsp_correct.sum() / den["examples"]
            loss = loss + metrics["nsp_loss"]
        return loss, metrics

    def eval_metrics(self, params, frozen, batch):
        out = self._forward(params, batch)
        nll, correct, weights = losses.masked_lm_terms(out["mlm_logits"], batch)
        metrics = {"mlm_loss": (nll.sum(), weights.sum()),
                   "mlm_accuracy": (correct.sum(), weights.sum())}
        if self.nsp:
            n = jnp.float32(batch["input_word_ids"].shape[0])
            nsp_nll, nsp_correct = losses.next_sentence_terms(out["nsp_logits"],
                                                       batch["next_sentence_labels"])
            metrics["nsp_accuracy"] = (nsp_correct.sum(), n)
        return metrics


def majority_token_baseline(train_batches, eval_batches) -> float:
    """Accuracy of always predicting the most frequent masked token of the training stream."""
    counts = Counter()
    for batch in train_batches:
        ids, w = batch["masked_lm_ids"], batch["masked_lm_weights"] > 0
        counts.update(ids[w].tolist())
    top = counts.most_common(1)[0][0]
    hits = total = 0
    for batch in eval_batches:
        w = batch["masked_lm_weights"] > 0
        hits += int((batch["masked_lm_ids"][w] == top).sum())
        total += int(w.sum())
    return hits / max(total, 1)


def _dataset(config, tokenizer, spec: str, **kwargs):
    """Masked batches of `spec` for this host, with the data block's instance and mask recipe."""
    d = config.data
    return text_to_pretraining_dataset(
        spec, tokenizer, batch_size=config.trainer.batch_size // jax.process_count(),
        max_seq_length=d.max_seq_length, max_predictions_per_seq=d.max_predictions_per_seq,
        masked_lm_prob=d.masked_lm_prob, short_seq_prob=d.short_seq_prob, nsp=d.nsp,
        whole_word_masking=d.whole_word_masking, pack=d.pack,
        process_index=jax.process_index(), process_count=jax.process_count(),
        sentences_per_document=d.sentences_per_document, **kwargs)


def datasets(config, tokenizer):
    """The (infinite, shuffled) training stream and a fixed held-out evaluation set."""
    d = config.data
    train = _dataset(config, tokenizer, d.train, dupe_factor=d.dupe_factor, seed=d.seed)
    return train, held_out_dataset(config, tokenizer)


def held_out_dataset(config, tokenizer):
    d = config.data
    return _dataset(config, tokenizer, d.eval, dupe_factor=1, seed=d.seed + 1, shuffle=False,
                    num_epochs=1, drop_remainder=True)


def training_passes(config, tokenizer, epochs: int):
    """`epochs` passes over the training instances in corpus order, each with its own masks,
    the last batch kept whole or partial: what a teacher cache stores (static masking)."""
    d = config.data
    return _dataset(config, tokenizer, d.train, dupe_factor=d.dupe_factor, seed=d.seed,
                    shuffle=False, num_epochs=epochs, drop_remainder=False)


def heads(config) -> tuple[str, ...]:
    """The heads a pre-training run trains (and its checkpoints hold)."""
    return ("mlm", "nsp") if config.data.nsp else ("mlm",)


def continue_from(trainer, folder, train_iter) -> None:
    """Makes the newest checkpoint of the pre-training run in `folder` (parameters, optimizer
    state, step, RNG) this run's first checkpoint, with this run's own data stream from its start:
    BERT's 512-token phase continuing the 128-token one on any mesh."""
    import orbax.checkpoint as ocp

    source = ocp.CheckpointManager(checkpoint_dir(folder), item_names=("state",))
    step = source.latest_step()
    if step is None:
        raise FileNotFoundError(f"init_from={folder}: no checkpoint in {checkpoint_dir(folder)}; "
                                "run the first phase there first")
    target = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                    trainer.abstract_state, trainer.state_sharding)
    state = source.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))).state
    log.info("continuing %s from step %d", folder, step)
    trainer.save(state, train_iter, force=True)
    trainer.checkpoints.wait_until_finished()


def run(config, workdir: str | Path) -> dict:
    """Pre-trains config.model on config.data; returns the held-out results."""
    workdir = prepare_workdir(workdir, config)
    from flaxbert.tokenization import load_tokenizer

    tokenizer = load_tokenizer(config.data.vocab)
    spec = ModelSpec(config.model, heads(config), vocab_size=tokenizer.vocab_size)
    if spec.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model vocab_size={spec.config.vocab_size} but the tokenizer "
                         f"{config.data.vocab} has {tokenizer.vocab_size} tokens")
    task = MaskedLMTask(spec, config.data.nsp)
    train, evaluation = datasets(config, tokenizer)
    trainer = Trainer(task, config, workdir)
    stream = iter(train)
    if config.get("init_from") and trainer.checkpoints.latest_step() is None:
        continue_from(trainer, config.init_from, stream)
    state = trainer.fit(stream, lambda state: trainer.evaluate(state.params, iter(evaluation)))
    final = trainer.last_eval or trainer.evaluate(state.params, iter(evaluation))
    baseline = majority_token_baseline(
        (b for _, b in zip(range(20), iter(train))), iter(evaluation))
    result = {"eval_mlm_accuracy": final["mlm_accuracy"], "eval_mlm_loss": final["mlm_loss"],
              "majority_token_accuracy": baseline, "steps": int(state.step),
              "parameters": int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(state.params)))}
    if "nsp_accuracy" in final:
        result["eval_nsp_accuracy"] = final["nsp_accuracy"]
    params = host_copy(state.params)
    if jax.process_index() == 0:
        with atomic_output(workdir / "export") as tmp:
            save_pretrained(tmp, spec.model, params, tokenizer)
        plot_curves(workdir, ["loss", "mlm_accuracy", "eval_mlm_accuracy"])
        write_json(workdir / "result.json", result)
    log.info("pre-training done: %s", result)
    return result



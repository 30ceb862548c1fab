"""Pre-training on the shared trainer, by `config.objective`:

    mlm      masked LM (+ optional NSP), BERT's recipe
    electra  replaced-token detection (distill/electra.py): a small generator's MLM samples
             replace the masked tokens and the student, as discriminator, labels every token

    distill pretrain --config pretrain.py:bert_tiny --workdir runs/pretrain_tiny

The run folder ends with `export/` (HF layout, loadable by `from_pretrained` and transformers;
for ELECTRA the discriminator alone), `curves.png` (loss and MLM accuracy) and `result.json`
(held-out MLM accuracy — the generator's, for ELECTRA, with the discriminator's replaced-token
accuracy — next to the most-frequent-token baseline).

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

from distill import electra, losses
from distill.data import tasks as task_data
from distill.data.pretraining import text_to_pretraining_dataset
from distill.distributed import host_copy
from distill.models import ModelSpec
from distill.tasks.common import atomic_output, plot_curves, prepare_workdir, write_json, write_text
from distill.trainer import Trainer, checkpoint_dir
from flaxbert.pretrained import save_pretrained

log = logging.getLogger(__name__)


def batch_rows_only(params, batch):
    """`params` with the word-embedding rows of tokens absent from the batch (neither an input
    nor a masked target) behind `stop_gradient`. The tied output softmax still scores every
    token, but only the batch's rows are updated, as with a sparse embedding gradient: with
    the dense one a token that is never a target gets a small push along the mean hidden state
    every step, which Adam normalises into a full-size step, so at a short schedule the rare
    rows all drift into one direction. Measured: it removes that drift but does not recover
    plain fine-tuning (experiments/README.md, "Why PT+FT loses to scratch")."""
    def rows(path, table):
        if "word_embeddings" not in jax.tree_util.keystr(path):
            return table
        present = jnp.zeros(table.shape[0], bool).at[batch["input_word_ids"]].set(True)
        present = present.at[batch["masked_lm_ids"]].set(True)
        return jnp.where(present[:, None], table, jax.lax.stop_gradient(table))
    return jax.tree_util.tree_map_with_path(rows, params)


class MaskedLMTask:
    """Loss = mean NLL over real masked positions (+ mean NSP cross-entropy when `nsp`); with
    `embedding_gradient="batch_rows"` only the batch's word-embedding rows learn
    (`batch_rows_only`)."""

    def __init__(self, spec: ModelSpec, nsp: bool, embedding_gradient: str = "dense"):
        self.spec, self.nsp = spec, nsp
        self.batch_rows = embedding_gradient == "batch_rows"
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
        out = self._forward(batch_rows_only(params, batch) if self.batch_rows else params,
                            batch, rng)
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

    def export(self, params):
        """(model, params) of the pre-trained student as `save_pretrained` writes it."""
        return self.model, params


class ElectraTask:
    """Loss = generator MLM (mean NLL over real masked positions) + rtd_weight · mean sigmoid
    cross-entropy of the discriminator over every real token (distill/electra.py)."""

    def __init__(self, spec: ModelSpec, generator_width: float, rtd_weight: float):
        if spec.initial_params is not None:
            raise ValueError("objective=electra: model.name is a weights folder; ELECTRA "
                             "pre-trains from a random init (name a preset or a config.json)")
        self.spec, self.rtd_weight = spec, rtd_weight
        self.model = electra.Electra(spec.model, electra.generator_config(spec.config,
                                                                          generator_width))
        self.initial_params = None

    def init_params(self, rng):
        ids = jnp.zeros((1, 8), jnp.int32)
        return self.model.init(rng, ids, jnp.ones_like(ids), ids, jnp.zeros((1, 2), jnp.int32))["params"]

    def denominators(self, batch):
        return {"mlm": jnp.maximum(batch["masked_lm_weights"].sum(), 1.0),
                "tokens": jnp.maximum((batch["input_mask"] > 0).sum().astype(jnp.float32), 1.0)}

    def _terms(self, params, batch, rng, deterministic):
        corrupt_rng, dropout_rng = jax.random.split(rng)
        gen_logits, corrupted, replaced = electra.corrupt(self.model, params, batch, corrupt_rng,
                                                          deterministic)
        rtd_logits = electra.discriminate(self.model, params, batch, corrupted, dropout_rng,
                                          deterministic)
        mlm = losses.masked_lm_terms(gen_logits, batch)
        rtd = electra.replaced_token_detection_terms(rtd_logits, replaced, batch["input_mask"])
        return mlm, rtd, replaced

    def loss(self, params, frozen, batch, rng, den):
        (nll, correct, _), (rtd_nll, rtd_correct, _), replaced = self._terms(params, batch, rng,
                                                                             False)
        mlm_loss, rtd_loss = nll.sum() / den["mlm"], rtd_nll.sum() / den["tokens"]
        metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": correct.sum() / den["mlm"],
                   "rtd_loss": rtd_loss, "rtd_accuracy": rtd_correct.sum() / den["tokens"],
                   "replaced_fraction": replaced.sum() / den["tokens"]}
        return mlm_loss + self.rtd_weight * rtd_loss, metrics

    def eval_metrics(self, params, frozen, batch):
        """Held-out MLM (the generator's) and RTD loss and accuracy, and — as ELECTRA's code
        reports them — the discriminator's recall (replaced tokens it flags) and precision
        (flagged tokens that were replaced; 0 while it flags none): accuracy alone hides a
        discriminator that calls everything original."""
        # a fixed sampling key: the held-out corruption is the same at every evaluation
        (nll, correct, weights), (rtd_nll, rtd_correct, tokens), replaced = self._terms(
            params, batch, jax.random.PRNGKey(0), True)
        replaced = replaced * tokens
        hits = rtd_correct * replaced                           # flagged and replaced
        flagged = hits + (tokens - rtd_correct) * (1 - replaced)  # + flagged but original
        return {"mlm_loss": (nll.sum(), weights.sum()), "mlm_accuracy": (correct.sum(), weights.sum()),
                "rtd_loss": (rtd_nll.sum(), tokens.sum()),
                "rtd_accuracy": (rtd_correct.sum(), tokens.sum()),
                "rtd_recall": (hits.sum(), replaced.sum()),
                "rtd_precision": (hits.sum(), flagged.sum())}

    def export(self, params):
        """The discriminator alone: a headless BERT (the generator and RTD head stay behind)."""
        return self.spec.model, params["discriminator"]


OBJECTIVES = ("mlm", "electra")
EMBEDDING_GRADIENTS = ("dense", "batch_rows")


def make_task(config, tokenizer):
    """The config's pre-training objective as a trainer task, its model checked against the
    tokenizer."""
    spec = ModelSpec(config.model, heads(config), vocab_size=tokenizer.vocab_size)
    if spec.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model vocab_size={spec.config.vocab_size} but the tokenizer "
                         f"{config.data.vocab} has {tokenizer.vocab_size} tokens")
    return objective_task(config, spec)


def objective_task(config, spec: ModelSpec):
    """The trainer task of `config.objective` for the model `spec` (also what `distill compile`
    builds for a pre-training config)."""
    objective = config.get("objective", "mlm")  # run folders from before the field: MLM
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}; expected one of {OBJECTIVES}")
    if objective == "electra" and config.data.nsp:
        raise ValueError("objective=electra with data.nsp=True: ELECTRA has no NSP head; "
                         "set data.nsp=False")
    embedding_gradient = config.get("embedding_gradient", "dense")
    if embedding_gradient not in EMBEDDING_GRADIENTS:
        raise ValueError(f"embedding_gradient={embedding_gradient!r}; expected one of "
                         f"{EMBEDDING_GRADIENTS}")
    if objective == "electra":
        if embedding_gradient != "dense":
            raise ValueError("objective=electra with embedding_gradient="
                             f"{embedding_gradient!r}: only MLM has it; set it to 'dense'")
        return ElectraTask(spec, config.electra.generator_width, config.electra.rtd_weight)
    return MaskedLMTask(spec, config.data.nsp, embedding_gradient)


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
        sentences_per_document=d.sentences_per_document,
        tfds_data_dir=d.get("tfds_data_dir") or None,  # data blocks written before the field
        **kwargs)


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
    """The heads the pre-trained student has (ELECTRA's discriminator: none; its RTD head and
    generator are the objective's, not the student's)."""
    if config.get("objective", "mlm") == "electra":
        return ()
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
    state = trainer.restore_state(step, source)
    log.info("continuing %s from step %d", folder, step)
    trainer.save(state, train_iter, force=True)
    trainer.checkpoints.wait_until_finished()


def count(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def with_task_texts(config, workdir: Path):
    """The config with `data.task_texts`' texts in place: the labelled task's training texts
    appended to `data.train` (documents of `sentences_per_document` lines) and its dev + test
    texts as `data.eval`, written under `workdir` — the task's held-out sentences are never
    trained on and stay the held-out evaluation."""
    name = config.data.get("task_texts", "")
    if not name:
        return config
    if name != "sentiment":
        raise ValueError(f"data.task_texts={name!r}; expected '' or 'sentiment' (the VADER "
                         "movie-snippet task, finetune.py:sentiment's split)")
    from distill.defaults import VADER
    splits = task_data.vader_sentiment(VADER, seed=0)
    n = config.data.sentences_per_document
    train = [e.text_a for e in splits["train"]]
    documents = ["\n".join(train[i:i + n]) for i in range(0, len(train), n)]
    write_text(workdir / "task_train.txt", "\n\n".join(documents) + "\n")
    write_text(workdir / "task_held_out.txt",
               "\n".join(e.text_a for e in splits["dev"] + splits["test"]) + "\n")
    config = config.copy_and_resolve_references()
    config.data.train = f"{config.data.train},{workdir / 'task_train.txt'}"
    config.data.eval = f"text:{workdir / 'task_held_out.txt'}"
    return config


def run(config, workdir: str | Path) -> dict:
    """Pre-trains config.model on config.data; returns the held-out results."""
    workdir = prepare_workdir(workdir, config)
    from flaxbert.tokenization import load_tokenizer

    config = with_task_texts(config, workdir)
    tokenizer = load_tokenizer(config.data.vocab)
    task = make_task(config, tokenizer)
    train, evaluation = datasets(config, tokenizer)
    trainer = Trainer(task, config, workdir)
    stream = iter(train)
    if config.get("init_from") and trainer.checkpoints.latest_step() is None:
        continue_from(trainer, config.init_from, stream)
    state = trainer.fit(stream, lambda state: trainer.evaluate(state.params, iter(evaluation)))
    final = trainer.last_eval or trainer.evaluate(state.params, iter(evaluation))
    baseline = majority_token_baseline(
        (b for _, b in zip(range(20), iter(train))), iter(evaluation))
    model, params = task.export(host_copy(state.params))
    result = {"eval_mlm_accuracy": final["mlm_accuracy"], "eval_mlm_loss": final["mlm_loss"],
              "majority_token_accuracy": baseline, "steps": int(state.step),
              "parameters": count(params), "trained_parameters": count(state.params)}
    for key in ("nsp_accuracy", "rtd_accuracy", "rtd_recall", "rtd_precision"):
        if key in final:
            result[f"eval_{key}"] = final[key]
    if jax.process_index() == 0:
        with atomic_output(workdir / "export") as tmp:
            save_pretrained(tmp, model, params, tokenizer)
        plot_curves(workdir, ["loss", "mlm_accuracy", "eval_mlm_accuracy"]
                    + (["rtd_accuracy", "eval_rtd_accuracy", "eval_rtd_recall"]
                       if "rtd_accuracy" in final else []))
        write_json(workdir / "result.json", result)
    log.info("pre-training done: %s", result)
    return result



"""Fine-tuning for sentence(-pair) classification and regression (GLUE-style), with evaluation on
dev during training, best-checkpoint selection on the task's main metric, and test predictions.

    distill finetune --config finetune.py:sentiment --workdir runs/ft \
        --config.model.name=runs/pretrain_tiny/export

`config.model.name` is a preset (random init: "from scratch"), or any folder `from_pretrained`
reads (a pre-trained or distilled student, a teacher); a fresh classifier head is added.
The run folder ends with `best/` (HF layout), `result.json` (dev metrics of the best step, and
test metrics where the test split has labels) and `curves.png`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from distill import metrics as glue
from distill.data import tasks as task_data
from distill.data.features import (
    encode_examples,
    eval_batches,
    in_file_order,
    num_examples,
    train_batches,
)
from distill.distributed import host_copy
from distill.models import ModelSpec
from distill.tasks.common import (
    as_path,
    atomic_output,
    plot_curves,
    prepare_workdir,
    write_json,
    write_text,
)
from distill.trainer import Trainer
from flaxbert.pretrained import save_pretrained

log = logging.getLogger(__name__)


def load_splits(task_cfg) -> tuple[task_data.TaskSpec, dict[str, list[task_data.Example]]]:
    """The labelled splits a `config.task` block names."""
    name = task_cfg.name
    if name == "sentiment":
        return task_data.SENTIMENT, task_data.vader_sentiment(task_cfg.data_dir, seed=task_cfg.seed)
    if name == "columns":
        labels = tuple(task_cfg.labels) if task_cfg.labels else None
        spec = task_data.TaskSpec(name="columns", labels=labels,
                                  text_columns=(task_cfg.text_a, task_cfg.text_b or None),
                                  splits={})
        splits = {split: task_data.read_columns(path, task_cfg.text_a, task_cfg.text_b or None,
                                                task_cfg.label, labels)
                  for split, path in (("train", task_cfg.train), ("dev", task_cfg.dev),
                                      ("test", task_cfg.test)) if path}
        return spec, splits
    spec = task_data.get_task(name)
    return spec, {split: task_data.read_glue(name, task_cfg.data_dir, split)
                  for split in spec.splits}


def dev_splits(spec, splits) -> list[tuple[str, str]]:
    """(split, metric task) pairs evaluated on dev: MNLI has matched and mismatched."""
    if spec.name == "mnli":
        return [("dev_matched", "mnli-m"), ("dev_mismatched", "mnli-mm")]
    metric_task = "sentiment" if spec.name in ("sentiment", "columns") else spec.name
    return [(split, metric_task) for split in ("dev",) if split in splits]


class ClassificationTask:
    """Cross-entropy over labels (MSE for regression), averaged over real examples."""

    def __init__(self, spec: ModelSpec, regression: bool):
        self.spec, self.regression = spec, regression
        self.model = spec.model
        self.initial_params = spec.initial_params

    def init_params(self, rng):
        return self.spec.init_params(rng)

    def logits(self, params, batch, rng=None):
        out = self.model.apply({"params": params}, batch["input_word_ids"], batch["input_mask"],
                               batch["input_type_ids"], deterministic=rng is None,
                               rngs={"dropout": rng} if rng is not None else {})
        return out["logits"]

    def per_example(self, logits, batch):
        """(loss, correct) per example, unweighted."""
        if self.regression:
            return jnp.square(logits[:, 0] - batch["label"]), jnp.zeros(logits.shape[0])
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(logp, batch["label"][:, None], axis=-1)[:, 0]
        return nll, (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)

    def denominators(self, batch):
        return {"examples": jnp.maximum(batch["example_weight"].sum(), 1.0)}

    def loss(self, params, frozen, batch, rng, den):
        loss, correct = self.per_example(self.logits(params, batch, rng), batch)
        w = batch["example_weight"]
        task_loss = (loss * w).sum() / den["examples"]
        return task_loss, {"task_loss": task_loss, "accuracy": (correct * w).sum() / den["examples"]}

    def eval_metrics(self, params, frozen, batch):
        loss, correct = self.per_example(self.logits(params, batch), batch)
        w = batch["example_weight"]
        return {"loss": ((loss * w).sum(), w.sum()), "accuracy": ((correct * w).sum(), w.sum())}

    def predict(self, params, frozen, batch):
        return {"logits": self.logits(params, batch), "example_weight": batch["example_weight"]}


def predictions(trainer, task, params, features, batch_size) -> np.ndarray:
    """Class ids (or regression values) for every example, in order."""
    outs = trainer.predict(params, eval_batches(features, batch_size), task.predict)
    logits = in_file_order(outs, "logits", features, batch_size)
    return logits[:, 0] if task.regression else logits.argmax(-1)


def score(trainer, task, params, features_by_split, pairs, batch_size) -> dict[str, float]:
    results = {}
    for split, metric_task in pairs:
        feats = features_by_split[split]
        preds = predictions(trainer, task, params, feats, batch_size)
        results.update(glue.glue_metrics(metric_task, preds, feats["label"]))
    return results


def derive_num_steps(config, n_train: int) -> None:
    """`trainer.num_steps <= 0` means `trainer.num_epochs` passes over the training split."""
    if config.trainer.num_steps <= 0:
        steps = math.ceil(config.trainer.num_epochs * n_train / config.trainer.batch_size)
        with config.unlocked():
            config.trainer.num_steps = steps


def build(config, extra_heads=()):
    """Examples, features and the classification task a fine-tuning config describes."""
    spec_task, splits = load_splits(config.task)
    regression = task_data.num_labels(spec_task) == 1
    model_spec = ModelSpec(config.model, ("classifier", *extra_heads),
                           num_labels=task_data.num_labels(spec_task))
    tokenizer = model_spec.tokenizer
    if tokenizer is None:
        from flaxbert.tokenization import load_tokenizer
        tokenizer = load_tokenizer(config.data.vocab)
    features = {split: encode_examples(examples, tokenizer, config.data.max_seq_length, regression)
                for split, examples in splits.items() if examples}
    if "train" not in features:
        raise ValueError(f"task {config.task.name!r} has no training examples")
    derive_num_steps(config, num_examples(features["train"]))
    return spec_task, splits, features, ClassificationTask(model_spec, regression), tokenizer


def run(config, workdir: str | Path) -> dict:
    """Fine-tunes and returns the best dev metrics (and test metrics where labelled)."""
    workdir = prepare_workdir(workdir, config)
    spec_task, splits, features, task, tokenizer = build(config)
    trainer = Trainer(task, config, workdir)
    pairs = dev_splits(spec_task, features)
    main = glue.main_metric(pairs[0][1]) if pairs else None
    best_file = workdir / "best.json"
    best = json.loads(best_file.read_text()) if best_file.exists() else {"score": -math.inf}
    bs = config.trainer.batch_size

    def evaluate(state):
        results = score(trainer, task, state.params, features, pairs, bs)
        if main and results[main] > best["score"]:
            best.update(score=results[main], step=int(state.step), dev=results)
            params = host_copy(state.params)
            if jax.process_index() == 0:
                with atomic_output(workdir / "best") as tmp:
                    save_pretrained(tmp, task.model, params, tokenizer)
                write_json(best_file, best)
        return results

    train = train_batches(features["train"], bs, seed=config.trainer.seed,
                          buckets=tuple(config.data.buckets),
                          group_by_length=config.data.group_by_length)
    state = trainer.fit(train, evaluate if pairs else None)
    result = {"task": spec_task.name, "steps": int(state.step), "main_metric": main,
              "parameters": sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params)),
              "best_step": best.get("step"), "dev": best.get("dev", {}),
              "final_dev": trainer.last_eval}
    if "test" in features and all(e.label is not None for e in splits["test"]):
        from flaxbert.pretrained import from_pretrained
        best_params = task.spec.layout(from_pretrained(workdir / "best", tokenizer=False).params)
        result["test"] = score(trainer, task, best_params, features, [("test", pairs[0][1])], bs)
    if jax.process_index() == 0:
        write_json(workdir / "result.json", result)
        plot_curves(workdir, ["loss", "accuracy", f"eval_{main}"])
    log.info("fine-tuning done: %s", result)
    return result


# --- `distill eval` and `distill predict`: the best checkpoint of a fine-tuning run -----------------
GLUE_SUBMISSION_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B",
                         "qqp": "QQP", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}


def _best_run(config, workdir):
    """The run's examples, features and a trainer holding the best checkpoint's parameters."""
    best = as_path(workdir) / "best"
    if not (best / "model.safetensors").is_file():
        raise FileNotFoundError(f"{best} holds no model: run `distill finetune` in {workdir} first")
    with config.unlocked():
        config.model.name = str(best)
    spec_task, splits, features, task, _ = build(config)
    params = task.initial_params  # the best checkpoint, loaded by the task's model spec
    trainer = Trainer(task, config, as_path(workdir) / "eval_run")
    return spec_task, splits, features, task, trainer, params


def evaluate_main(config, workdir: str | Path) -> dict:
    """`distill eval`: dev metrics of the best checkpoint, written to WORKDIR/eval.json."""
    spec_task, _, features, task, trainer, params = _best_run(config, workdir)
    results = score(trainer, task, params, features, dev_splits(spec_task, features),
                    config.trainer.batch_size)
    write_json(as_path(workdir) / "eval.json", results)
    print(json.dumps(results, indent=2))
    return results


def predict_main(config, workdir: str | Path) -> Path:
    """`distill predict`: test-split predictions of the best checkpoint as GLUE submission files
    (`index<TAB>prediction`, label names for classification) in WORKDIR/predictions/."""
    spec_task, splits, features, task, trainer, params = _best_run(config, workdir)
    out = as_path(workdir) / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    test_splits = [s for s in features if s.startswith("test")]
    if not test_splits:
        raise ValueError(f"task {spec_task.name!r} has no test split to predict")
    for split in test_splits:
        preds = predictions(trainer, task, params, features[split], config.trainer.batch_size)
        name = GLUE_SUBMISSION_NAMES.get(spec_task.name, spec_task.name)
        if spec_task.name == "mnli":
            name = "MNLI-m" if split.endswith("matched") and "mis" not in split else "MNLI-mm"
        lines = ["index\tprediction"]
        for i, p in enumerate(preds):
            label = f"{p:.3f}" if task.regression else spec_task.labels[int(p)]
            lines.append(f"{i}\t{label}")
        write_text(out / f"{name}.tsv", "\n".join(lines) + "\n")
    return out


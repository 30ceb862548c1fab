"""Runs a short BERT-Tiny-shaped MLM+NSP training in its own process (so a test can choose the
device count with XLA_FLAGS, run it as one of several jax.distributed processes, or SIGKILL it
mid-run) and prints a JSON summary on the last line.

    python tests/workers/train_worker.py WORKDIR --steps 20 --mesh data=2,fsdp=4 [--grad-accum 2]
    python tests/workers/train_worker.py WORKDIR --coordinator 127.0.0.1:PORT --num-processes 2 \
        --process-id 0   # and the same with --process-id 1

Every topology sees the same global batches: each process feeds its own contiguous rows of the
single stream, as `jax.make_array_from_process_local_data` expects.
"""

import argparse
import json
import sys
import time

import jax
import ml_collections
import numpy as np

from distill import defaults, distributed
from distill.data.pretraining import VocabInfo, make_pretraining_dataset
from distill.models import ModelSpec
from distill.tasks.pretrain import MaskedLMTask
from distill.trainer import EXIT_PREEMPTED, Preempted, Trainer, read_metrics
from flaxbert.params import flatten

VOCAB = VocabInfo(vocab_size=256, cls_id=2, sep_id=3, pad_id=0, mask_id=4)


def corpus(seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.integers(10, 256, size=rng.integers(4, 16)).tolist() for _ in range(6)]
            for _ in range(60)]


def config(args) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.model = defaults.model("tiny", overrides={"vocab_size": 256, "max_position_embeddings": 64,
                                                  "hidden_dropout_prob": args.dropout,
                                                  "attention_probs_dropout_prob": args.dropout})
    cfg.trainer = defaults.trainer(num_steps=args.steps, log_every=1, eval_every=10**9,
                                   checkpoint_every=args.checkpoint_every,
                                   batch_size=args.batch_size, grad_accum_steps=args.grad_accum)
    cfg.optimizer = defaults.optimizer(lr=1e-3, warmup_fraction=0.1)
    cfg.mesh = defaults.mesh(**dict((k, int(v)) for k, v in (p.split("=") for p in args.mesh.split(","))))
    return cfg


def distill_task(cfg):
    """Teacher: a random 4-layer, 256-wide BERT with an MLM head; student: cfg.model."""
    from distill.distillation import DistillTask
    from flaxbert import Model, init_params

    teacher_cfg = ModelSpec(cfg.model, ()).config.replace(num_hidden_layers=4, hidden_size=256,
                                                          intermediate_size=512)
    teacher = Model(teacher_cfg, heads=("mlm",))
    cfg.distill = ml_collections.ConfigDict(dict(alpha=1.0, terms=[
        dict(feature="mlm_logits", loss="soft_ce", weight=1.0, temperature=2.0),
        dict(feature="hidden", loss="mse", weight=1.0, layers="uniform"),
        dict(feature="attention_probs", loss="kl", weight=1.0, layers="uniform")]))
    return DistillTask(cfg, ModelSpec(cfg.model, ("mlm",)), teacher, init_params(teacher, 11))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--mesh", default="data=1")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--coordinator", default="")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--step-delay", type=float, default=0.0,
                        help="seconds each batch waits (so a signal lands mid-run)")
    parser.add_argument("--distill", action="store_true",
                        help="distil a 4-layer teacher into the model (hidden, attention, MLM terms)")
    args = parser.parse_args()
    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    cfg = config(args)
    rows = args.batch_size // jax.process_count()
    first = jax.process_index() * rows

    def local_rows(batch):
        batch = {k: v[first:first + rows] for k, v in batch.items()}
        if args.distill:
            batch["example_weight"] = np.ones(rows, np.float32)
        time.sleep(args.step_delay)
        return batch

    data = make_pretraining_dataset(corpus(), VOCAB, batch_size=args.batch_size, max_seq_length=32,
                                    max_predictions_per_seq=5, nsp=True, seed=7).map(local_rows)
    if args.distill:
        task = distill_task(cfg)
    else:
        task = MaskedLMTask(ModelSpec(cfg.model, ("mlm", "nsp")), nsp=True)
    trainer = Trainer(task, cfg, args.workdir)
    try:
        state = trainer.fit(iter(data))
    except Preempted as e:
        print(e, file=sys.stderr)
        raise SystemExit(EXIT_PREEMPTED) from None
    params = distributed.host_copy(state.params)
    student = state.params["student"] if args.distill else state.params
    layer = student["backbone"]["layer_0"]["intermediate"]["kernel"]
    print(json.dumps({
        "losses": {r["step"]: r["loss"] for r in read_metrics(args.workdir) if "loss" in r},
        "param_checksum": float(sum(np.abs(v).sum() for v in flatten(params).values())),
        "kernel_spec": str(layer.sharding.spec),
        "kernel_shard_shape": list(layer.addressable_shards[0].data.shape),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
    }))
    if jax.process_index() == 0:
        np.savez(f"{args.workdir}/final_params.npz", **flatten(params))


if __name__ == "__main__":
    main()

"""Compiles and runs a small BERT MLM train step on each of several meshes in its own process (so
a test picks the device count with XLA_FLAGS and reads XLA's warnings on stderr), and prints one
JSON line: per mesh, the AOT report (per-device FLOPs and memory) and the losses of a few steps;
with --distil_meshes also the per-device FLOPs of a hidden-state distillation step whose student
is narrower than its teacher (TinyBERT's learned projection).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        python tests/workers/sharding_worker.py --meshes "data=8;tensor=8;fsdp=8;data=2,tensor=4"

Every mesh trains the same model from the same seed on the same batches, so the losses must agree.
"""

import argparse
import json
import tempfile
from pathlib import Path

import ml_collections
import numpy as np

from distill import defaults
from distill.models import ModelSpec
from distill.tasks.aot import batch_spec, build_task
from distill.tasks.pretrain import MaskedLMTask
from distill.trainer import Trainer

# 8 heads and widths divisible by 8, so that every mesh here can split heads, MLP and vocabulary.
MODEL = dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=8,
             intermediate_size=512, max_position_embeddings=64, hidden_dropout_prob=0.0,
             attention_probs_dropout_prob=0.0)
BATCH, SEQ, PREDICTIONS = 16, 32, 5


def mesh_config(mesh: str) -> ml_collections.ConfigDict:
    config = defaults.mesh(**{k: int(v) for k, v in (p.split("=") for p in mesh.split(","))})
    if "data" not in mesh:
        config.data = 1
    return config


def config(mesh: str) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.model = defaults.model("tiny", overrides=MODEL)
    cfg.trainer = defaults.trainer(batch_size=BATCH, num_steps=10)
    cfg.optimizer = defaults.optimizer(lr=1e-3, warmup_fraction=0.0)
    cfg.mesh = mesh_config(mesh)
    cfg.data = ml_collections.ConfigDict(dict(max_seq_length=SEQ,
                                              max_predictions_per_seq=PREDICTIONS))
    return cfg


def distil_flops(mesh: str, workdir: str) -> float:
    """Per-device FLOPs of distill/experiments/distill.py:tinybert's step, teacher twice the student's
    width (a 128 → 256 projection per layer pair)."""
    from distill.experiments import distill as experiment
    cfg = experiment.get_config("tinybert")
    teacher = Path(workdir) / "teacher.json"
    teacher.write_text(json.dumps(dict(MODEL, hidden_size=256, intermediate_size=1024,
                                       model_type="bert")))
    cfg.teacher.name = str(teacher)
    cfg.model = defaults.model("tiny", overrides=MODEL)
    cfg.data.max_seq_length, cfg.trainer.batch_size, cfg.trainer.num_steps = 2 * SEQ, BATCH, 1
    cfg.mesh = mesh_config(mesh)
    return Trainer(build_task(cfg, Path(workdir)), cfg, workdir).memory_report(
        batch_spec(cfg))["flops"]


def batches(count: int):
    """MLM batches with padded rows (lengths 8…32), so the attention mask matters."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        lengths = rng.integers(8, SEQ + 1, BATCH)
        mask = (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int32)
        ids = rng.integers(5, MODEL["vocab_size"], (BATCH, SEQ)).astype(np.int32) * mask
        positions = np.stack([np.sort(rng.choice(np.arange(1, n), PREDICTIONS, replace=False))
                              for n in lengths]).astype(np.int32)
        yield {"input_word_ids": ids, "input_mask": mask, "input_type_ids": np.zeros_like(ids),
               "masked_lm_positions": positions,
               "masked_lm_ids": np.take_along_axis(ids, positions, 1),
               "masked_lm_weights": np.ones((BATCH, PREDICTIONS), np.float32),
               "next_sentence_labels": np.zeros(BATCH, np.int32),
               "example_weight": np.ones(BATCH, np.float32),
               "has_label": np.zeros(BATCH, np.float32), "label": np.zeros(BATCH, np.int32)}


def run(mesh: str, steps: int) -> dict:
    cfg = config(mesh)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(MaskedLMTask(ModelSpec(cfg.model, ("mlm",)), nsp=False), cfg, workdir)
        report = trainer.memory_report(batch_spec(cfg))
        losses = []
        if steps:
            import jax

            from distill.trainer import place_batch

            state = trainer.initial_state()
            with jax.set_mesh(trainer.mesh):
                for batch in batches(steps):
                    state, metrics = trainer.train_step(
                        state, trainer.frozen, place_batch(batch, trainer.batch_sharding))
                    losses.append(float(metrics["loss"]))
    return {"flops": report["flops"], "temp": report["temp"], "argument": report["argument"],
            "losses": losses}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshes", default="data=1")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--distil_meshes", default="")
    parser.add_argument("--heads", type=int, default=MODEL["num_attention_heads"],
                        help="attention heads of 16 units each (12: heads that tensor=8 cannot "
                             "divide evenly)")
    args = parser.parse_args()
    MODEL.update(num_attention_heads=args.heads, hidden_size=16 * args.heads,
                 intermediate_size=64 * args.heads)
    reports = {mesh: run(mesh, args.steps) for mesh in args.meshes.split(";")}
    for mesh in filter(None, args.distil_meshes.split(";")):
        with tempfile.TemporaryDirectory() as workdir:
            reports[mesh]["distil_flops"] = distil_flops(mesh, workdir)
    print(json.dumps(reports))


if __name__ == "__main__":
    main()

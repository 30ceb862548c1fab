"""Config blocks every experiment shares; each experiment file overrides what it needs.

Paths default to the asset cache `make assets` fills ($FLAXBERT_ASSETS, else
~/.cache/flaxbert/assets); every field can be overridden on the command line
(`--config.trainer.num_steps=100`).
"""

import os
from pathlib import Path

import ml_collections

ASSETS = Path(os.environ.get("FLAXBERT_ASSETS", Path.home() / ".cache/flaxbert/assets"))
VADER = ASSETS / "vader"
MINILM = ASSETS / "all-MiniLM-L6-v2"
# The unlabeled transfer text of the demo: the three VADER files other than the movie snippets.
TRANSFER_FILES = ",".join(str(VADER / f"{name}_GroundTruth.txt")
                          for name in ("tweets", "nytEditorialSnippets", "amazonReviewSnippets"))


def trainer(**overrides) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        batch_size=32,            # global, over all hosts and devices
        num_steps=1000,           # <= 0: derived from num_epochs (fine-tuning)
        num_epochs=0.0,
        grad_accum_steps=1,
        log_every=10,
        eval_every=250,
        checkpoint_every=250,
        keep_checkpoints=2,
        seed=0,
        # FLOP/s per device, the MFU denominator; 0: the accelerator's dense bf16 peak from
        # distill/accelerators.py (by device kind), on a CPU its measured CPU_PEAK_FLOPS
        peak_flops=0.0,
    ) | overrides)


def optimizer(**overrides) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="adamw", lr=1e-4, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01,
        schedule="linear", power=1.0, warmup_steps=None, warmup_fraction=0.1, clip_norm=1.0,
        # within each progressive-transfer stage (task.stage_steps): decay to this fraction of
        # lr with this power after the warmup (MobileBERT's 0.9 and 0.5; optim.stage_schedule)
        stage_decay_to=0.9, stage_decay_power=0.5,
    ) | overrides)


def mesh(**overrides) -> ml_collections.ConfigDict:
    """Axis sizes within a slice / node (data, fsdp, tensor) and across them (dcn_*)."""
    return ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1,
                                          dcn_data=1, dcn_fsdp=1, dcn_tensor=1) | overrides)


def model(name: str, **overrides) -> ml_collections.ConfigDict:
    """A preset name, a config.json, or a model folder (weights loaded)."""
    return ml_collections.ConfigDict(dict(name=name, dtype="float32", remat_policy="none",
                                          scan_layers=False, overrides={}) | overrides)


"""Known accelerators: dense bf16 peak FLOP/s and memory per chip, from the vendors' data sheets.

One home for these figures: MFU in training logs and the cost plan (`distill plan`) read them.
Peaks are dense (no 2:4 sparsity) matrix-unit rates per chip — a TPU chip, one GPU.
"""

from __future__ import annotations

from typing import NamedTuple

GiB = 2**30
GB = 10**9


class Accelerator(NamedTuple):
    name: str
    peak_bf16_flops: float   # per chip, dense
    memory_bytes: int        # HBM per chip
    source: str


ACCELERATORS = {a.name: a for a in (
    Accelerator("tpu_v4", 275e12, 32 * GiB, "Google Cloud TPU v4 docs: 275 TFLOPS bf16, 32 GiB HBM2"),
    Accelerator("tpu_v5e", 197e12, 16 * GiB, "Google Cloud TPU v5e docs: 197 TFLOPS bf16, 16 GiB"),
    Accelerator("tpu_v5p", 459e12, 95 * GiB, "Google Cloud TPU v5p docs: 459 TFLOPS bf16, 95 GiB"),
    Accelerator("tpu_v6e", 918e12, 32 * GiB, "Google Cloud TPU v6e docs: 918 TFLOPS bf16, 32 GiB"),
    Accelerator("h100", 989e12, 80 * GB, "NVIDIA H100 SXM data sheet: 989 TFLOPS bf16 dense, 80 GB"),
    Accelerator("h200", 989e12, 141 * GB, "NVIDIA H200 SXM data sheet: 989 TFLOPS bf16 dense, 141 GB"),
    Accelerator("a100", 312e12, 80 * GB, "NVIDIA A100 SXM data sheet: 312 TFLOPS bf16 dense, 80 GB"),
)}


def get(name: str) -> Accelerator:
    """The accelerator of that name; an unknown name is an error listing the known ones."""
    if name not in ACCELERATORS:
        raise ValueError(f"accelerator {name!r}; expected one of {', '.join(ACCELERATORS)}")
    return ACCELERATORS[name]

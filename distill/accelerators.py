"""Known accelerators: dense bf16 peak FLOP/s and memory per chip, from the vendors' data sheets.

One home for these figures: MFU in training logs and the cost plan (`distill plan`) read them.
Peaks are dense (no 2:4 sparsity) matrix-unit rates per chip — a TPU chip, one GPU. A CPU has no
data-sheet figure: `CPU_PEAK_FLOPS` is a measured matmul rate instead.
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


#: The f32 matmul rate measured on this project's 2-core development machine (the best of
#: benchmarks/run.py's `matmul_peak`, jnp.dot): the MFU denominator on a CPU unless
#: trainer.peak_flops says otherwise. Run `make bench` to measure yours.
CPU_PEAK_FLOPS = 2.2e11

#: Substrings of `jax.Device.device_kind` naming each accelerator, most specific first (a v5p
#: reports "TPU v5", a v5e "TPU v5 lite"; GPUs report e.g. "NVIDIA H100 80GB HBM3").
DEVICE_KINDS = (("TPU v4", "tpu_v4"), ("TPU v5 lite", "tpu_v5e"), ("TPU v5e", "tpu_v5e"),
                ("TPU v5p", "tpu_v5p"), ("TPU v5", "tpu_v5p"), ("TPU v6 lite", "tpu_v6e"),
                ("TPU v6e", "tpu_v6e"), ("H100", "h100"), ("H200", "h200"), ("A100", "a100"))


def detect(device_kind: str) -> Accelerator | None:
    """The known accelerator a `jax.Device.device_kind` names, or None."""
    for fragment, name in DEVICE_KINDS:
        if fragment.lower() in device_kind.lower():
            return ACCELERATORS[name]
    return None


def peak_flops(device, configured: float = 0.0) -> tuple[float | None, str]:
    """(peak FLOP/s per device, where it comes from) for MFU: `configured` when > 0 (the
    trainer.peak_flops knob), else the known accelerator's dense bf16 peak, on a CPU the measured
    `CPU_PEAK_FLOPS`; (None, why) for an accelerator this table does not know."""
    if configured > 0:
        return configured, "trainer.peak_flops"
    if device.platform == "cpu":
        return CPU_PEAK_FLOPS, "a measured CPU f32 matmul rate (accelerators.CPU_PEAK_FLOPS)"
    known = detect(device.device_kind)
    if known is None:
        return None, (f"{device.device_kind!r} is not in distill/accelerators.py; set "
                      "trainer.peak_flops (FLOP/s per device) for MFU")
    return known.peak_bf16_flops, f"{known.name} dense bf16 peak ({known.source})"

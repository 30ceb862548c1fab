"""Per-device cost of the full-size distillation steps on 8 devices, from `distill compile`.

    python benchmarks/sharding.py --out docs/benchmarks.md [--workdir runs/sharding]

For each teacher → student pair (BERT-Large → BERT-Base; IB-BERT → MobileBERT; TinyBERT's hidden-
state objective, seq 512, batch 32) and each mesh of 8 simulated CPU devices, runs `distill
compile` (the step is compiled for abstract arrays; nothing runs) in its own process and tabulates
XLA's per-device FLOPs and memory, and whether XLA reported an involuntary full rematerialization.
A report already in the work directory is reused (delete it to recompile). The table becomes the
"sharding" part of --out (the other parts are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import write_report  # noqa: E402

PAIRS = (("large", "base"), ("ib_bert", "mobilebert"))
MESHES = {"data=8": dict(data=8), "tensor=8": dict(data=1, tensor=8),
          "fsdp=8": dict(data=1, fsdp=8), "data=2×tensor=4": dict(data=2, tensor=4)}
SEQ, BATCH = 512, 32


def compile_report(teacher: str, student: str, mesh: dict, workdir: Path) -> dict:
    report = workdir / "compile_report.json"
    if not report.exists():
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
        cmd = [sys.executable, "-m", "distill.cli", "compile", "--config",
               "distill/experiments/distill.py:tinybert", "--workdir", str(workdir),
               f"--config.teacher.name={teacher}", f"--config.model.name={student}",
               f"--config.data.max_seq_length={SEQ}", f"--config.trainer.batch_size={BATCH}",
               *(f"--config.mesh.{axis}={size}" for axis, size in mesh.items())]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        (workdir / "stderr.txt").write_text(proc.stderr)
    stderr = workdir / "stderr.txt"
    out = json.loads(report.read_text())
    out["remat"] = stderr.exists() and "Involuntary full rematerialization" in stderr.read_text()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--workdir", default="runs/sharding")
    args = parser.parse_args()
    gib = 2.0 ** 30
    lines = ["## Sharding: the full-size distillation steps on 8 devices (`distill compile`)", "",
             f"Written by `benchmarks/sharding.py`: `distill compile --config "
             f"distill/experiments/distill.py:tinybert` (hidden-state MSE, seq {SEQ}, batch {BATCH}) on 8 "
             "simulated CPU devices; per-device figures from XLA's cost and memory analysis of "
             "the compiled step (nothing runs). FLOPs ratio: against data=8 of the same pair.", "",
             "| teacher → student | mesh | TFLOP / device | × data=8 | arguments GiB | "
             "temporaries GiB | peak GiB | full remat |", "|---|---|---|---|---|---|---|---|"]
    for teacher, student in PAIRS:
        reports = {name: compile_report(teacher, student, mesh,
                                        Path(args.workdir) / f"{teacher}_{student}_{name}")
                   for name, mesh in MESHES.items()}
        base = reports["data=8"]["flops"]
        for name, r in reports.items():
            lines.append(f"| {teacher} → {student} | {name} | {r['flops'] / 1e12:.3f} | "
                         f"×{r['flops'] / base:.2f} | {r['argument'] / gib:.3f} | "
                         f"{r['temp'] / gib:.3f} | {r['peak'] / gib:.3f} | "
                         f"{'yes' if r['remat'] else 'no'} |")
            print(lines[-1], flush=True)
    write_report(Path(args.out), "\n".join(lines) + "\n", "sharding")


if __name__ == "__main__":
    main()

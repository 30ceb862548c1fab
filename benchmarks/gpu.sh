#!/usr/bin/env bash
# The benchmark on one GPU in under 5 minutes: bf16, GPU-sized batches, written as the GPU section
# of docs/benchmarks.md (the CPU tables there stay). Run from the repository root.
set -euo pipefail
PY=${PY:-.venv/bin/python}
"$PY" -c 'import jax, sys; b = jax.default_backend(); print("backend:", b, jax.devices());
sys.exit(0 if b != "cpu" else "benchmarks/gpu.sh: jax sees no GPU (install jax[cuda12])")'
exec "$PY" benchmarks/run.py --quick --sections mlm,distill,shapes --out "${OUT:-docs/benchmarks.md}"

"""distill.host_memory: with it, XLA:CPU's per-step temporaries stop page-faulting back in."""

import statistics
import subprocess
import sys
import textwrap

import jax.numpy as jnp

from distill import host_memory

# A program whose one 128 MiB temporary (the product) is allocated and freed at every call.
PROBE = textwrap.dedent("""
    import resource, sys
    from distill import host_memory
    if sys.argv[1] == "reuse":
        assert host_memory.reuse_freed_memory()
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: (x @ x.T).cumsum(0)[-1])
    x = jnp.ones((4096, 64))
    for _ in range(40):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x).block_until_ready()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")
TEMP_PAGES = 4096 * 4096 * 4 // 4096


def faults_per_call(mode: str) -> float:
    """Page faults of a typical call once the heap has settled: the median over the last 32 of 40
    calls. Even then, now and then a freed block is split by small allocations and a new one is
    mapped: after the first 6 calls, up to 4 in 24 on a loaded machine; 3 of the last 6 of 12 in
    the CI run that failed when this judged those 6."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True)
    return statistics.median(float(n) for n in out.stdout.split()[-32:])


def test_reused_memory_stops_the_per_call_page_faults():
    assert faults_per_call("default") > TEMP_PAGES / 2  # glibc maps and unmaps it every call
    assert faults_per_call("reuse") < TEMP_PAGES / 100


def test_too_late_once_jax_has_started():
    jnp.ones(1).block_until_ready()
    assert host_memory.reuse_freed_memory() is False

"""distill.host_memory: with it, XLA:CPU's per-step temporaries stop page-faulting back in."""

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
    for _ in range(2):
        f(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        f(x).block_until_ready()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
""")
TEMP_PAGES = 4096 * 4096 * 4 // 4096


def faults_per_call(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


def test_reused_memory_stops_the_per_call_page_faults():
    assert faults_per_call("default") > TEMP_PAGES / 2  # glibc maps and unmaps it every call
    assert faults_per_call("reuse") < TEMP_PAGES / 100


def test_too_late_once_jax_has_started():
    jnp.ones(1).block_until_ready()
    assert host_memory.reuse_freed_memory() is False

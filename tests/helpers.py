"""Helpers the test modules share (fixtures live in conftest.py)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

# Compilation dominates the suite on 2 cores, and LLVM's expensive passes buy these small
# programs little (measured: a compile-bound test 47 → 40 s, a 400-step training 74 → 69 s).
FAST_COMPILE = "--xla_llvm_disable_expensive_passes=true"


def load_tool(name: str):
    """A script under tools/ (not a package) as a module, for its tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parents[1] / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_devices_env(devices: int) -> dict[str, str]:
    """The environment of a subprocess that sees `devices` CPU devices."""
    return dict(os.environ,
                XLA_FLAGS=f"{FAST_COMPILE} --xla_force_host_platform_device_count={devices}")


def build_once(session_dir: Path, name: str, build):
    """`(folder, build(folder))`, built by the first worker that asks while the others wait on a
    file lock and read its JSON result: the expensive shared runs are made once per session, and
    tests stay free to go to either worker."""
    folder, result = session_dir / name, session_dir / f"{name}.json"
    with FileLock(str(session_dir / f"{name}.lock")):
        if not result.exists():
            if folder.exists():
                pytest.fail(f"building {folder} failed in an earlier test; see its error")
            folder.mkdir()
            result.write_text(json.dumps(build(folder)))
    return folder, json.loads(result.read_text())


# --- the training worker (tests/workers/train_worker.py), one process or two --------------------
WORKER = Path(__file__).parent / "workers" / "train_worker.py"
# The two processes split the data axis across hosts (dcn_data=2, the multi-slice layout) and
# shard parameters over the 4 devices within each (fsdp=4); one process uses data=2 × fsdp=4.
SINGLE, MULTI = "data=2,fsdp=4", "dcn_data=2,fsdp=4,data=1"
STEPS = ["--steps", "8", "--checkpoint-every", "4", "--dropout", "0"]  # the topology runs'
DISTILL_STEPS = ["--steps", "6", "--dropout", "0", "--distill"]


def start_worker(workdir, *args, devices=1):
    return subprocess.Popen([sys.executable, str(WORKER), str(workdir), *args],
                            env=cpu_devices_env(devices), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_two_processes(workdir, *args, worker=WORKER):
    """Two worker processes with 4 CPU devices each, joined on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    return [subprocess.Popen([sys.executable, str(worker), str(workdir), *args,
                              "--coordinator", address, "--num-processes", "2",
                              "--process-id", str(rank)],
                             env=cpu_devices_env(4), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for rank in range(2)]


def summary_of(procs, timeout=600) -> dict:
    """The first process's JSON summary, once every process has exited cleanly."""
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for proc in procs:
            proc.kill()
    return json.loads(outputs[0].strip().splitlines()[-1])


def run_worker(workdir, *args, devices=1, timeout=600) -> dict:
    return summary_of([start_worker(workdir, *args, devices=devices)], timeout)


def run_two_processes(workdir, *args, timeout=600) -> dict:
    """Two processes with 4 CPU devices each; returns process 0's JSON summary."""
    summary = summary_of(start_two_processes(workdir, *args), timeout)
    assert summary["processes"] == 2 and summary["devices"] == 8
    return summary


def losses(summary):
    return np.array([summary["losses"][str(s)] for s in sorted(map(int, summary["losses"]))])


def assert_same_params(dir_a, dir_b, atol):
    a, b = np.load(dir_a / "final_params.npz"), np.load(dir_b / "final_params.npz")
    assert a.files == b.files
    for name in a.files:
        np.testing.assert_allclose(b[name], a[name], atol=atol, rtol=0, err_msg=name)

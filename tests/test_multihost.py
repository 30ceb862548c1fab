"""Multi-host training for real: two `jax.distributed` CPU processes on 127.0.0.1 (gloo
collectives, 4 devices each) against one process with 8 devices, and checkpoints that move
between the two topologies.

Both topologies see the same global batches (tests/workers/train_worker.py feeds each process its
own rows), so their losses must agree to float tolerance.
"""

import json
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import build_once, cpu_devices_env
from test_trainer import WORKER, losses, run_worker

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_two_processes(workdir, *args):
    """Two worker processes with 4 CPU devices each, joined on a free local port."""
    env = cpu_devices_env(4)
    address = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen([sys.executable, str(WORKER), str(workdir), *args,
                              "--coordinator", address, "--num-processes", "2",
                              "--process-id", str(rank)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for rank in range(2)]


def run_two_processes(workdir, *args, timeout=600):
    """Two processes with 4 CPU devices each; returns process 0's JSON summary."""
    procs = start_two_processes(workdir, *args)
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for proc in procs:
            proc.kill()
    summary = json.loads(outputs[0].strip().splitlines()[-1])
    assert summary["processes"] == 2 and summary["devices"] == 8
    return summary


def assert_same_params(dir_a, dir_b, atol):
    a, b = np.load(dir_a / "final_params.npz"), np.load(dir_b / "final_params.npz")
    assert a.files == b.files
    for name in a.files:
        np.testing.assert_allclose(b[name], a[name], atol=atol, rtol=0, err_msg=name)


# The two processes split the data axis across hosts (dcn_data=2, the multi-slice layout) and
# shard parameters over the 4 devices within each (fsdp=4); one process uses data=2 × fsdp=4.
SINGLE, MULTI = "data=2,fsdp=4", "dcn_data=2,fsdp=4,data=1"
STEPS = ["--steps", "8", "--checkpoint-every", "4", "--dropout", "0"]


@pytest.fixture(scope="session")
def runs(session_dir):
    """Pre-training on both topologies: {name: (workdir, summary)}, checkpoints at steps 4 and 8."""
    root, summaries = build_once(session_dir, "topologies", lambda root: {
        "one": run_worker(root / "one", *STEPS, "--mesh", SINGLE, devices=8),
        "two": run_two_processes(root / "two", *STEPS, "--mesh", MULTI)})
    return {name: (root / name, summary) for name, summary in summaries.items()}


def test_two_processes_equal_one_process_with_eight_devices(runs):
    (one_dir, one), (two_dir, two) = runs["one"], runs["two"]
    assert len(two["losses"]) == 8
    np.testing.assert_allclose(losses(two), losses(one), atol=1e-4, rtol=0)
    # parameters really are sharded: fsdp=4 splits the [128, 512] kernel's rows
    assert two["kernel_shard_shape"] == one["kernel_shard_shape"] == [32, 512]
    assert_same_params(one_dir, two_dir, atol=1e-4)


def test_two_processes_distill_like_one_process(tmp_path):
    args = ["--steps", "6", "--dropout", "0", "--distill"]
    one = run_worker(tmp_path / "one", *args, "--mesh", SINGLE, devices=8)
    two = run_two_processes(tmp_path / "two", *args, "--mesh", MULTI)
    np.testing.assert_allclose(losses(two), losses(one), atol=1e-4, rtol=0)
    assert_same_params(tmp_path / "one", tmp_path / "two", atol=1e-4)


@pytest.mark.parametrize("writer,reader", [("one", "two"), ("two", "one")])
def test_resume_from_a_checkpoint_of_the_other_topology(runs, tmp_path, writer, reader):
    resumed = tmp_path / "resumed"
    shutil.copytree(runs[writer][0], resumed)
    shutil.rmtree(resumed / "checkpoints" / "8")  # as if stopped after step 4's checkpoint
    (resumed / "final_params.npz").unlink()
    if reader == "one":
        summary = run_worker(resumed, *STEPS, "--mesh", SINGLE, devices=8)
    else:
        summary = run_two_processes(resumed, *STEPS, "--mesh", MULTI)
    reader_dir, reference = runs[reader]
    np.testing.assert_allclose(losses(summary), losses(reference), atol=1e-4, rtol=0)
    assert_same_params(reader_dir, resumed, atol=1e-4)


def test_restore_onto_another_mesh_gives_identical_params(runs, tmp_path):
    """8 devices with data=2 × fsdp=4 → 2 devices with tensor=2: the final checkpoint restores
    bit for bit, resharded."""
    moved = tmp_path / "moved"
    shutil.copytree(runs["one"][0], moved)
    (moved / "final_params.npz").unlink()
    summary = run_worker(moved, *STEPS, "--mesh", "tensor=2", devices=2)
    assert summary["devices"] == 2
    assert summary["kernel_shard_shape"] == [128, 256]  # now split over tensor's mlp axis
    a, b = np.load(runs["one"][0] / "final_params.npz"), np.load(moved / "final_params.npz")
    for name in a.files:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def test_sigterm_to_one_process_stops_both_at_one_step_and_the_rerun_is_exact(runs, tmp_path):
    """A preemption notice reaching one process only: JAX's preemption sync point has both
    save the same step and exit with EXIT_PREEMPTED; rerunning resumes bit-identically."""
    import time

    from distill.trainer import EXIT_PREEMPTED

    workdir = tmp_path / "preempted"
    procs = start_two_processes(workdir, *STEPS, "--mesh", MULTI, "--step-delay", "0.5")
    metrics = workdir / "metrics.jsonl"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and all(p.poll() is None for p in procs):
            if metrics.exists() and metrics.read_text().count("\n") >= 5:  # past checkpoint 4
                break
            time.sleep(0.02)
        procs[1].send_signal(signal.SIGTERM)
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [p.returncode for p in procs] == [EXIT_PREEMPTED] * 2, errors[0][-2000:]
    stopped_at = metrics.read_text().count("\n")
    assert 5 <= stopped_at < 8
    for err in errors:
        assert f"after step {stopped_at}; its checkpoint is in {workdir / 'checkpoints'}" in err
    assert (workdir / "checkpoints" / str(stopped_at) / "state").is_dir()
    resumed = run_two_processes(workdir, *STEPS, "--mesh", MULTI)
    reference_dir, reference = runs["two"]
    np.testing.assert_allclose(losses(resumed), losses(reference), atol=1e-6, rtol=0)
    a, b = np.load(reference_dir / "final_params.npz"), np.load(workdir / "final_params.npz")
    for name in a.files:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)

"""Multi-host training for real: two `jax.distributed` CPU processes on 127.0.0.1 (gloo
collectives, 4 devices each) against one process with 8 devices, and checkpoints that move
between the two topologies.

Both topologies see the same global batches (tests/workers/train_worker.py feeds each process its
own rows), so their losses must agree to float tolerance.
"""

import shutil
import signal

import numpy as np
import pytest
from helpers import (
    DISTILL_STEPS,
    MULTI,
    SINGLE,
    STEPS,
    assert_same_params,
    losses,
    run_two_processes,
    run_worker,
    start_two_processes,
)

pytestmark = pytest.mark.slow


def test_two_processes_equal_one_process_with_eight_devices(topology_runs):
    (one_dir, one), (two_dir, two) = topology_runs["one"], topology_runs["two"]
    assert len(two["losses"]) == 8
    np.testing.assert_allclose(losses(two), losses(one), atol=1e-4, rtol=0)
    # parameters really are sharded: fsdp=4 splits the [128, 512] kernel's rows
    assert two["kernel_shard_shape"] == one["kernel_shard_shape"] == [32, 512]
    assert_same_params(one_dir, two_dir, atol=1e-4)


def test_two_processes_distill_like_one_process(sharded_distill_run, tmp_path):
    one_dir, one = sharded_distill_run
    two = run_two_processes(tmp_path / "two", *DISTILL_STEPS, "--mesh", MULTI)
    np.testing.assert_allclose(losses(two), losses(one), atol=1e-4, rtol=0)
    assert_same_params(one_dir, tmp_path / "two", atol=1e-4)


@pytest.mark.parametrize("writer,reader", [("one", "two"), ("two", "one")])
def test_resume_from_a_checkpoint_of_the_other_topology(topology_runs, tmp_path, writer, reader):
    resumed = tmp_path / "resumed"
    shutil.copytree(topology_runs[writer][0], resumed)
    shutil.rmtree(resumed / "checkpoints" / "8")  # as if stopped after step 4's checkpoint
    (resumed / "final_params.npz").unlink()
    if reader == "one":
        summary = run_worker(resumed, *STEPS, "--mesh", SINGLE, devices=8)
    else:
        summary = run_two_processes(resumed, *STEPS, "--mesh", MULTI)
    reader_dir, reference = topology_runs[reader]
    np.testing.assert_allclose(losses(summary), losses(reference), atol=1e-4, rtol=0)
    assert_same_params(reader_dir, resumed, atol=1e-4)


def test_restore_onto_another_mesh_gives_identical_params(topology_runs, tmp_path):
    """8 devices with data=2 × fsdp=4 → 2 devices with tensor=2: the final checkpoint restores
    bit for bit, resharded."""
    moved = tmp_path / "moved"
    shutil.copytree(topology_runs["one"][0], moved)
    (moved / "final_params.npz").unlink()
    summary = run_worker(moved, *STEPS, "--mesh", "tensor=2", devices=2)
    assert summary["devices"] == 2
    assert summary["kernel_shard_shape"] == [128, 256]  # now split over tensor's mlp axis
    a, b = np.load(topology_runs["one"][0] / "final_params.npz"), np.load(moved / "final_params.npz")
    for name in a.files:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def test_sigterm_to_one_process_stops_both_at_one_step_and_the_rerun_is_exact(topology_runs, tmp_path):
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
    reference_dir, reference = topology_runs["two"]
    np.testing.assert_allclose(losses(resumed), losses(reference), atol=1e-6, rtol=0)
    a, b = np.load(reference_dir / "final_params.npz"), np.load(workdir / "final_params.npz")
    for name in a.files:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)

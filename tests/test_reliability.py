"""Runs that survive what happens to real jobs: a damaged newest checkpoint, SIGTERM / Ctrl-C
mid-run (preemption), and atomic outputs.

Each run is its own process (tests/workers/train_worker.py), killed or damaged for real; the
reference is one straight run of the same 12 steps (checkpoints every 4, the last two kept).
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_trainer import WORKER, losses, run_worker

from distill.trainer import EXIT_PREEMPTED

pytestmark = pytest.mark.xdist_group("reliability")
STEPS = ["--steps", "12", "--checkpoint-every", "4"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    return workdir, run_worker(workdir, *STEPS)


def assert_same_run(summary, workdir, straight, from_step=0):
    reference_dir, reference = straight
    got, want = losses(summary), losses(reference)
    np.testing.assert_allclose(got[from_step:], want[from_step:], atol=1e-6, rtol=0)
    a = np.load(reference_dir / "final_params.npz")
    b = np.load(workdir / "final_params.npz")
    assert a.files == b.files
    for name in a.files:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def largest_array_file(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


def overwrite_bytes(step_dir):
    path = largest_array_file(step_dir)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 256] = bytes(random.Random(0).randrange(256) for _ in range(256))
    path.write_bytes(bytes(data))


def remove_file(step_dir):
    largest_array_file(step_dir).unlink()


def copy_run(straight, workdir):
    shutil.copytree(straight[0], workdir)
    (workdir / "final_params.npz").unlink()
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("damage", [overwrite_bytes, remove_file])
def test_damaged_newest_checkpoint_is_moved_aside_and_the_previous_one_resumed(
        straight, tmp_path, damage):
    workdir = copy_run(straight, tmp_path / "run")
    checkpoints = workdir / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["12", "8"]
    damage(checkpoints / "12")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run([sys.executable, str(WORKER), str(workdir), *STEPS], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoint step 12 cannot be read (" in proc.stderr
    assert "moved it to " + str(checkpoints / "12.damaged-1") in proc.stderr
    # the damaged folder is kept aside, and training redid steps 9..12 from step 8
    assert (checkpoints / "12.damaged-1" / "state").is_dir()
    assert sorted(os.listdir(checkpoints)) == ["12", "12.damaged-1", "8"]
    import json
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert_same_run(summary, workdir, straight)


@pytest.mark.slow
def test_no_readable_checkpoint_is_an_error_naming_the_folder_and_nothing_moves(straight, tmp_path):
    workdir = copy_run(straight, tmp_path / "run")
    checkpoints = workdir / "checkpoints"
    remove_file(checkpoints / "12")
    remove_file(checkpoints / "8")
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run([sys.executable, str(WORKER), str(workdir), *STEPS], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert f"no checkpoint in {checkpoints} can be read (step 12: " in proc.stderr
    assert "step 8: " in proc.stderr and "Nothing was moved or deleted" in proc.stderr
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_at_the_next_step_and_the_rerun_ends_bit_identical(straight, tmp_path,
                                                                          signum):
    workdir = tmp_path / "run"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.Popen([sys.executable, str(WORKER), str(workdir), *STEPS,
                             "--step-delay", "0.3"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    signal_after = random.randint(5, 9)  # after the first checkpoint (step 4)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        text = metrics.read_text() if metrics.exists() else ""
        if text.count("\n") >= signal_after:
            break
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_PREEMPTED, err[-3000:]
    stopped_at = metrics.read_text().count("\n")
    assert signal_after <= stopped_at < 12
    assert (f"stopped by {signal.Signals(signum).name} after step {stopped_at}; its checkpoint "
            f"is in {workdir / 'checkpoints'}") in err
    assert (workdir / "checkpoints" / str(stopped_at) / "state").is_dir()
    resumed = run_worker(workdir, *STEPS)
    assert_same_run(resumed, workdir, straight)

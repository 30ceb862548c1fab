"""Runs that survive what happens to real jobs: a damaged newest checkpoint, SIGTERM / Ctrl-C
mid-run (preemption), and atomic outputs.

Each run is its own process (tests/workers/train_worker.py), killed or damaged for real; the
reference is one straight run of the same 12 steps (checkpoints every 4, the last two kept).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from helpers import WORKER, build_once, cpu_devices_env, losses, run_worker

from distill.trainer import EXIT_PREEMPTED, state_checksums

STEPS = ["--steps", "12", "--checkpoint-every", "4"]


@pytest.fixture(scope="session")
def straight(session_dir):
    return build_once(session_dir, "straight", lambda workdir: run_worker(workdir, *STEPS))


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
    env = cpu_devices_env(1)
    proc = subprocess.run([sys.executable, str(WORKER), str(workdir), *STEPS], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoint step 12 cannot be read (" in proc.stderr
    assert "moved it to " + str(checkpoints / "12.damaged-1") in proc.stderr
    # the damaged folder is kept aside, and training redid steps 9..12 from step 8
    assert (checkpoints / "12.damaged-1" / "state").is_dir()
    assert sorted(os.listdir(checkpoints)) == ["12", "12.damaged-1", "8"]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert_same_run(summary, workdir, straight)


@pytest.mark.slow
def test_no_readable_checkpoint_is_an_error_naming_the_folder_and_nothing_moves(straight, tmp_path):
    workdir = copy_run(straight, tmp_path / "run")
    checkpoints = workdir / "checkpoints"
    remove_file(checkpoints / "12")
    remove_file(checkpoints / "8")
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    env = cpu_devices_env(1)
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
    env = cpu_devices_env(1)
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


# --- remote work directories and atomic outputs ------------------------------------------------

@pytest.fixture
def fake_bucket(tmp_path, monkeypatch):
    """gs:// opened offline: fsspec's "gs"/"gcs" protocol served from a local folder, so etils.epath
    takes the same code path as for a real bucket. Returns the folder gs://bucket/ maps to."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    root = tmp_path / "bucket_root"
    root.mkdir()

    class LocalBucket(LocalFileSystem):
        protocol = ("gs", "gcs")

        @classmethod
        def _strip_protocol(cls, path):
            path = fsspec.utils.stringify_path(path)
            if path.startswith(("gs://", "gcs://")):
                path = str(root / path.split("://", 1)[1])
            return super()._strip_protocol(path)

    registry = sys.modules["fsspec.registry"]._registry  # `fsspec.registry` is a read-only view
    for protocol in ("gs", "gcs"):
        monkeypatch.setitem(registry, protocol, LocalBucket)
    monkeypatch.chdir(tmp_path)  # a collapsed `gs:/bucket` would appear here
    forget = type(epath.backend.fsspec_backend)._get_filesystem.cache_clear  # etils keeps one
    forget()
    yield root
    forget()


def test_a_gs_workdir_stays_a_url_for_config_metrics_outputs_and_checkpoints(fake_bucket,
                                                                             tmp_path):
    import ml_collections

    from distill import defaults
    from distill.models import ModelSpec
    from distill.tasks.common import atomic_output, prepare_workdir, write_json
    from distill.trainer import MetricWriter, checkpoint_dir, read_metrics
    from flaxbert.pretrained import save_pretrained

    cfg = ml_collections.ConfigDict()
    cfg.model = defaults.model("tiny", overrides={"vocab_size": 64, "max_position_embeddings": 16,
                                                  "num_hidden_layers": 1})
    cfg.trainer = defaults.trainer(num_steps=2, batch_size=2)
    cfg.optimizer = defaults.optimizer()
    cfg.mesh = defaults.mesh()
    workdir = prepare_workdir("gs://bucket/run", cfg)
    assert str(workdir) == "gs://bucket/run"
    writer = MetricWriter(workdir, resume_step=0)
    writer.write(1, {"loss": 2.5})
    writer.close()
    assert writer.tb is None  # TensorBoard events: local work directories only (documented)
    write_json(workdir / "result.json", {"acc": 0.5})
    spec = ModelSpec(cfg.model, ("mlm",))
    with atomic_output(workdir / "export") as local:
        save_pretrained(local, spec.model, __import__("flaxbert").init_params(spec.model, 0))
    # orbax itself needs google-cloud-storage and the network for gs:// (docs/multihost.md);
    # what the trainer hands it stays the URL
    assert str(checkpoint_dir(workdir)) == "gs://bucket/run/checkpoints"
    assert str(checkpoint_dir("relative")) == str(tmp_path / "relative" / "checkpoints")

    run = fake_bucket / "bucket" / "run"
    assert (run / "config.json").is_file()
    assert read_metrics("gs://bucket/run") == [{"step": 1, "loss": 2.5}]
    assert (run / "result.json").read_text() == '{\n  "acc": 0.5\n}\n'
    assert sorted(os.listdir(run / "export")) == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(run)) == ["config.json", "export", "metrics.jsonl",
                                       "result.json"]  # no temporary names left behind
    assert not (tmp_path / "gs:").exists()


def test_an_interrupted_output_leaves_the_previous_one_whole(tmp_path):
    from distill.tasks.common import atomic_output, write_json

    write_json(tmp_path / "result.json", {"step": 1})
    with atomic_output(tmp_path / "export") as folder:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "export") as folder:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # killed mid-write
    assert (tmp_path / "export" / "model.safetensors").read_bytes() == b"old"
    with atomic_output(tmp_path / "export") as folder:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"new")
    assert (tmp_path / "export" / "model.safetensors").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["export", "result.json"]


def test_state_checksums_change_with_any_byte_or_moved_word_of_every_dtype():
    rng = np.random.default_rng(0)
    state = {"f32": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32),
             "bf16": jnp.asarray(rng.normal(size=(16,)), jnp.bfloat16),
             "i32": jnp.arange(12, dtype=jnp.int32), "flag": jnp.asarray([True, False, True]),
             "key": jax.random.key(3)}
    base = jax.tree_util.tree_map(int, state_checksums(state))
    changed = {
        "f32": state["f32"].at[2, 5].set(np.nextafter(state["f32"][2, 5], np.float32(9))),
        "bf16": state["bf16"][::-1],                       # the same words, moved
        "i32": state["i32"].at[0].set(1 << 20),
        "flag": ~state["flag"],
        "key": jax.random.key(4),
    }
    for name, value in changed.items():
        sums = jax.tree_util.tree_map(int, state_checksums({**state, name: value}))
        assert [k for k in sums if sums[k] != base[k]] == [name]


# --- one writer per run folder (distill/run_lock.py) -------------------------------------------

@pytest.fixture
def sleeper():
    """A live process of this host that holds no lock: a lock file may name it."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def lock_record(**fields):
    """A run.lock record of another run (run_lock's fields), started a minute ago."""
    import socket

    from distill import run_lock

    minute_ago = time.time() - 60
    return {"host": socket.gethostname(), "boot_id": run_lock._boot_id(),
            "pid": 0, "process_started": run_lock._iso(minute_ago - 5),
            "started": run_lock._iso(minute_ago), "heartbeat": run_lock._iso(minute_ago),
            "lease_seconds": run_lock.LEASE_SECONDS, "token": "theirs", "command": "distill x"
            } | fields


def gone_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def live_holder(sleeper):
    from distill.run_lock import _iso, process_start_time
    return lock_record(pid=sleeper.pid, process_started=_iso(process_start_time(sleeper.pid)))


def reused_pid(sleeper):  # the pid runs, but its process started after the lock's
    return lock_record(pid=sleeper.pid)


def other_host_alive(sleeper):
    from distill.run_lock import _iso
    return lock_record(host="elsewhere", pid=1, heartbeat=_iso(time.time() - 10))


def other_host_silent(sleeper):
    from distill.run_lock import LEASE_SECONDS, _iso
    return lock_record(host="elsewhere", pid=1, heartbeat=_iso(time.time() - LEASE_SECONDS - 60))


@pytest.mark.parametrize("holder, taken_over_because", [
    (live_holder, None),
    (other_host_alive, None),
    (lambda sleeper: lock_record(pid=gone_pid()), "process {pid} is not running"),
    (reused_pid, "pid {pid} now belongs to another process, started "),
    (lambda sleeper: lock_record(boot_id="an earlier boot"), "its host has rebooted since"),
    (other_host_silent, "no heartbeat for 36"),
], ids=["live", "other-host-live", "gone", "pid-reused", "rebooted", "lease-expired"])
@pytest.mark.parametrize("where", ["local", "gs"])
def test_a_lock_is_refused_while_its_holder_lives_and_taken_over_with_a_warning_when_gone(
        tmp_path, sleeper, holder, taken_over_because, where, request, caplog):
    """A holder on this host lives while its pid runs a process started before the lock; on
    another host, while its heartbeat is younger than its lease."""
    from distill import run_lock
    from distill.files import as_path

    if where == "gs":
        request.getfixturevalue("fake_bucket")
        workdir = "gs://bucket/run"
    else:
        workdir = str(tmp_path / "run")
    lock_file = as_path(workdir) / "run.lock"
    lock_file.parent.mkdir(parents=True)
    record = holder(sleeper)
    lock_file.write_text(json.dumps(record))
    if taken_over_because is None:
        with pytest.raises(run_lock.RunFolderBusy) as refused, run_lock.hold(workdir):
            pass
        assert str(refused.value) == (
            f"{workdir} is in use by another run ({run_lock.describe(record)}); stop that run "
            f"first (`kill {record['pid']}` on {record['host']}), or delete {workdir}/run.lock "
            f"if you know that process is gone")
        assert f"pid {record['pid']}, started " in str(refused.value)
        assert json.loads(lock_file.read_text()) == record  # untouched
        return
    with caplog.at_level("WARNING", "distill.run_lock"), run_lock.hold(workdir) as lock:
        mine = json.loads(lock_file.read_text())
        assert mine["pid"] == os.getpid() and mine["token"] == lock.record["token"]
    reason = taken_over_because.format(pid=record["pid"])
    assert [r.getMessage() for r in caplog.records] == [lock.takeover]
    assert lock.takeover.startswith(f"took over {workdir}/run.lock from a run that is gone "
                                    f"({run_lock.describe(record)}): {reason}")
    assert not lock_file.exists()  # released


def test_a_lock_is_re_entrant_in_its_process_and_refreshes_its_heartbeat(tmp_path, monkeypatch):
    from distill import run_lock

    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.05)
    lock_file = tmp_path / "run" / "run.lock"
    with run_lock.hold(tmp_path / "run") as outer:
        first = json.loads(lock_file.read_text())
        with run_lock.hold(tmp_path / "run") as inner:  # a recipe and its stage's own check
            assert inner is outer
        assert lock_file.exists()
        time.sleep(0.3)
        later = json.loads(lock_file.read_text())
        assert later["heartbeat"] > first["heartbeat"]
        assert {k: v for k, v in later.items() if k != "heartbeat"} == {
            k: v for k, v in first.items() if k != "heartbeat"}
    assert not lock_file.exists()

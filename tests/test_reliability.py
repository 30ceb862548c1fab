"""Runs that survive what happens to real jobs: a damaged newest checkpoint, SIGTERM / Ctrl-C
mid-run (preemption), atomic outputs, a second writer in the same folder (refused) and stale
locks (taken over), kills during checkpoint writes, a full disk, and many kills in a row.

Each run is its own process, killed or damaged for real: tests/workers/train_worker.py against one
straight run of the same 12 steps (checkpoints every 4, the last two kept), and a tiny `distill
pretrain` through the CLI against its own straight run (40 steps, export at the end).
"""

import json
import os
import random
import re
import resource
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
from helpers import WORKER, build_once, cpu_devices_env, losses, run_worker, start_two_processes

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


def test_outputs_a_killed_run_left_half_written_are_cleared_by_the_next_writer(tmp_path, caplog):
    """A kill inside `atomic_output` leaves a staging copy (`.NAME.tmp-PID-*`), or between its
    two renames the old output moved aside (`.NAME.old-*`) with NAME missing."""
    import ml_collections

    from distill import run_lock
    from distill.tasks.common import prepare_workdir

    run = tmp_path / "run"
    for folder in ("export", ".export.tmp-4242-0a1b2c3d", ".best.old-89abcdef"):
        (run / folder).mkdir(parents=True)
        (run / folder / "model.safetensors").write_text(folder)
    for name in ("curves.png", ".curves.png.old-01234567", ".result.json.tmp-7-fedcba98",
                 ".keep-me"):
        (run / name).write_text(name)
    config = ml_collections.ConfigDict({"trainer": {"num_steps": 1}})
    before = snapshot(run)
    prepare_workdir(run, config)  # not holding the lock: another run may be writing them
    assert snapshot(run) == {**before, "config.json": (run / "config.json").read_bytes()}
    with run_lock.hold(run), caplog.at_level("WARNING", "distill.tasks.common"):
        prepare_workdir(run, config)
    assert sorted(os.listdir(run)) == [".keep-me", "best", "config.json", "curves.png", "export"]
    assert (run / "best" / "model.safetensors").read_text() == ".best.old-89abcdef"
    assert (run / "export" / "model.safetensors").read_text() == "export"
    assert [r.getMessage() for r in caplog.records] == [
        f"in {run}, outputs a killed run left half-written: .best.old-89abcdef put back as best; "
        f".curves.png.old-01234567 removed; .export.tmp-4242-0a1b2c3d removed; "
        f".result.json.tmp-7-fedcba98 removed"]


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


@pytest.mark.slow
def test_a_multi_process_job_holds_one_lock_taken_by_process_0(tmp_path, sleeper):
    """Two `jax.distributed` processes: process 0 takes the lock for both; when it cannot, both
    stop (process 1 pointing at process 0's log)."""
    def job(workdir):
        procs = start_two_processes(workdir, worker=WORKER.parent / "lock_worker.py")
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            outputs.append(json.loads(  # gloo prints to the same stdout, from C++
                next(line for line in out.splitlines() if line.startswith("{"))))
        return outputs

    first, second = job(tmp_path / "free")
    assert first == {"holds": True, "pid": first["pid"], "lock_pid": first["pid"]}
    assert second == {"holds": False, "pid": second["pid"], "lock_pid": first["pid"]}
    assert not (tmp_path / "free" / "run.lock").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "run.lock").write_text(json.dumps(live_holder(sleeper)))
    first, second = job(busy)
    assert first["refused"].startswith(f"{busy} is in use by another run (host ")
    assert f"`kill {sleeper.pid}` on " in first["refused"]
    assert second == {"refused": f"process 0 could not take the lock of {busy}; its log says why"}


@pytest.mark.slow
def test_sigterm_outside_training_still_releases_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom distill import run_lock\n"
         "with run_lock.hold(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(300)",
         str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    assert (tmp_path / "run" / "run.lock").exists()
    holder.terminate()
    assert holder.wait(timeout=60) == 128 + signal.SIGTERM
    assert not (tmp_path / "run" / "run.lock").exists()


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


# --- a tiny `distill pretrain`: refused, killed, out of disk -----------------------------------
# Hidden 32, 2 layers, dropout on (BERT's 0.1), a 3,000-token vocabulary; 40 steps of 8 rows,
# checkpoints every 4 steps (the last 2 kept), evaluation every 5, the export at the end.
TINY_STEPS, CHECKPOINT_EVERY, EVAL_EVERY = 40, 4, 5


@pytest.fixture(scope="session")
def tiny_pretrain(session_dir, minilm_dir, vader_dir):
    """`command(workdir)`: the command line of the tiny run; its input files made once."""
    def make(folder):
        vocab = (minilm_dir / "vocab.txt").read_text().splitlines()
        # the special tokens, the characters and the 1,000 most frequent words
        (folder / "vocab.txt").write_text("\n".join(vocab[:3000]) + "\n")
        for name, source, lines in (("train.txt", "tweets", 600), ("eval.txt", "movieReviewSnippets", 300)):
            text = (vader_dir / f"{source}_GroundTruth.txt").read_text(errors="replace")
            (folder / name).write_text("\n".join(text.splitlines()[:lines]) + "\n")
        return {}

    inputs, _ = build_once(session_dir, "tiny_pretrain_inputs", make)
    model = ("{'hidden_size': 32, 'num_hidden_layers': 2, 'num_attention_heads': 2, "
             "'intermediate_size': 64}")
    fields = {"model.overrides": model, "data.vocab": inputs / "vocab.txt",
              "data.train": f"vader:{inputs / 'train.txt'}",
              "data.eval": f"vader:{inputs / 'eval.txt'}", "data.max_seq_length": 32,
              "data.max_predictions_per_seq": 5, "data.dupe_factor": 1,
              "trainer.num_steps": TINY_STEPS, "trainer.batch_size": 8, "trainer.log_every": 1,
              "trainer.checkpoint_every": CHECKPOINT_EVERY, "trainer.eval_every": EVAL_EVERY}
    return lambda workdir: [sys.executable, "-m", "distill.cli", "pretrain",
                            "--config=pretrain.py:tiny", f"--workdir={workdir}",
                            *(f"--config.{k}={v}" for k, v in fields.items())]


def run_cli(command, timeout=600):
    return subprocess.run(command, env=cpu_devices_env(1), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def straight_pretrain(session_dir, tiny_pretrain):
    """The tiny run's work directory, run once straight through."""
    def run(workdir):
        proc = run_cli(tiny_pretrain(workdir))
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {}
    return build_once(session_dir, "straight_pretrain", run)[0]


def logged_losses(workdir):
    """Every loss and accuracy of metrics.jsonl, by step (timings left out)."""
    from distill.trainer import read_metrics
    return [{k: v for k, v in row.items() if k == "step" or "loss" in k or "accuracy" in k}
            for row in read_metrics(workdir)]


def assert_same_pretraining(workdir, reference):
    """The exported weights and the logged losses are bit-identical to the reference run's."""
    from safetensors.numpy import load_file

    want, got = (load_file(w / "export" / "model.safetensors") for w in (reference, workdir))
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    want_losses = logged_losses(reference)
    assert [r["step"] for r in want_losses if "loss" in r] == list(range(1, TINY_STEPS + 1))
    assert logged_losses(workdir) == want_losses


def wait_for(condition, proc, what, timeout=300, poll=0.001):
    """`condition()`'s first true value, checked every `poll` seconds while `proc` runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before {what}")
        time.sleep(poll)
    raise AssertionError(f"no {what} within {timeout} s")


def partial_checkpoints(checkpoints, since_ns=0):
    """Names of orbax's `<step>.orbax-checkpoint-tmp*` folders made after `since_ns`."""
    try:
        entries = list(os.scandir(checkpoints))
    except FileNotFoundError:
        return []
    return sorted(e.name for e in entries if ".orbax-checkpoint-tmp" in e.name
                  and e.stat().st_ctime_ns > since_ns)


def finished_checkpoints(checkpoints):
    return sorted(int(n) for n in os.listdir(checkpoints) if n.isdigit()) if checkpoints.is_dir() else []


def lock_holder(workdir):
    lock = workdir / "run.lock"
    return json.loads(lock.read_text())["pid"] if lock.exists() else None


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.slow
def test_a_second_run_in_a_live_run_folder_is_refused_naming_the_holder(tiny_pretrain, tmp_path):
    import socket

    from distill.run_lock import describe

    workdir = tmp_path / "run"
    with open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(tiny_pretrain(workdir), env=cpu_devices_env(1),
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: len(logged_losses(workdir)) >= 6, first, "six logged steps", poll=0.05)
        first.send_signal(signal.SIGSTOP)  # held still, so that its files can be compared
        before = snapshot(workdir)
        second = run_cli(tiny_pretrain(workdir))
        after = snapshot(workdir)
    finally:
        first.send_signal(signal.SIGCONT)
    holder = json.loads(before["run.lock"])
    host = socket.gethostname()
    assert holder["pid"] == first.pid and holder["host"] == host
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1] == (
        f"distill pretrain: {workdir} is in use by another run ({describe(holder)}); stop that "
        f"run first (`kill {first.pid}` on {host}), or delete {workdir / 'run.lock'} if you know "
        f"that process is gone")
    assert after == before  # not a byte written, no file made or removed
    assert first.wait(timeout=600) == 0, (tmp_path / "first.err").read_text()[-3000:]
    assert (workdir / "result.json").exists() and not (workdir / "run.lock").exists()


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_a_partial_folder_that_the_rerun_removes(
        tiny_pretrain, straight_pretrain, tmp_path):
    """SIGKILL while orbax writes a checkpoint after the first: the rerun takes over the lock of
    the gone process, removes the partial folder and resumes from the last complete checkpoint,
    ending bit-identical to the straight run."""
    workdir = tmp_path / "run"
    checkpoints = workdir / "checkpoints"
    for _ in range(3):  # a write may complete between being seen and the kill: try the next
        killed = subprocess.Popen(tiny_pretrain(workdir), env=cpu_devices_env(1),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: [n for n in partial_checkpoints(checkpoints)
                          if int(n.split(".")[0]) > CHECKPOINT_EVERY], killed,
                 "a checkpoint write after the first")
        killed.kill()
        killed.wait()
        partial = partial_checkpoints(checkpoints)
        if partial:
            break
    assert partial, "three kills during a checkpoint write all came after it completed"
    good = finished_checkpoints(checkpoints)[-1]
    assert (workdir / "run.lock").exists()
    rerun = run_cli(tiny_pretrain(workdir))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (f"warning: took over {workdir / 'run.lock'} from a run that is gone (host "
            in rerun.stderr)
    assert f"pid {killed.pid}, started " in rerun.stderr
    assert f"): process {killed.pid} is not running" in rerun.stderr
    assert (f"warning: removed {', '.join(partial)} in {checkpoints}: the partial checkpoint of "
            f"a write that did not finish") in rerun.stderr
    assert f"resumed from {checkpoints} at step {good}" in rerun.stderr
    assert not partial_checkpoints(checkpoints)
    assert_same_pretraining(workdir, straight_pretrain)


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB file system (tmpfs; mounting needs root, as `make test` has here)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def byte_count(text):
    number, unit = text.split()
    return float(number) * 1024 ** ["bytes", "KB", "MB", "GB"].index(unit)


@pytest.mark.slow
def test_a_full_disk_names_the_checkpoint_and_the_sizes_and_the_rerun_resumes_once_freed(
        tiny_pretrain, straight_pretrain, small_disk):
    """Checkpoints of 1.5 MB on a 4 MB disk: the third write fails with ENOSPC from the OS. The
    error names the step, the free space and the last good checkpoint's size, and removes the
    partial folder; with the disk made bigger the rerun resumes and ends bit-identical."""
    workdir = small_disk / "run"
    checkpoints = workdir / "checkpoints"
    full = run_cli(tiny_pretrain(workdir))
    assert full.returncode == 1
    errors = [line for line in full.stderr.splitlines() if line.startswith("distill pretrain: ")]
    size = r"(\d+ bytes|[\d.]+ [KMG]B)"
    match = re.fullmatch(
        rf"distill pretrain: checkpoint step (\d+) could not be written to "
        rf"{re.escape(str(checkpoints))}: no space left on the device \({size} free; {size} "
        rf"after removing its partial folder\); the last good checkpoint, step (\d+), takes "
        rf"{size}, and checkpoints need about 3 × that: 2 kept \(trainer.keep_checkpoints\) \+ "
        rf"the one being written. Free some space and rerun the same command: it resumes from "
        rf"step (\d+)", errors[-1])
    assert len(errors) == 1 and match, full.stderr[-3000:]
    assert not (workdir / "run.lock").exists()  # released on the error too
    failed, free_then, free_now, good, good_size, resume = match.groups()
    assert int(good) == int(resume) == int(failed) - CHECKPOINT_EVERY
    assert finished_checkpoints(checkpoints)[-1] == int(good) and not partial_checkpoints(checkpoints)
    checkpoint_bytes = sum(p.stat().st_size for p in (checkpoints / good).rglob("*") if p.is_file())
    assert abs(byte_count(good_size) - checkpoint_bytes) <= 0.05 * 2 ** 20
    assert byte_count(free_then) < checkpoint_bytes
    assert abs(byte_count(free_now) - shutil.disk_usage(small_disk).free) <= 64 * 1024

    subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)
    rerun = run_cli(tiny_pretrain(workdir))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {checkpoints} at step {good}" in rerun.stderr
    assert_same_pretraining(workdir, straight_pretrain)


# --- resume under many faults ------------------------------------------------------------------

def kill_plan(rng):
    """20 kills in the order the run reaches their targets: 5 right after a train step, 5 during
    a checkpoint write, 5 during an evaluation, 2 at a random moment after the start, then 3
    aimed at the export (more, up to 8, until one lands in it: it lasts a few milliseconds). A
    target is (phase, step, order within the step)."""
    steps = [("step", k, 0) for k in rng.sample(range(1, TINY_STEPS), 5)]
    evals = [("eval", e, 1) for e in rng.sample(range(EVAL_EVERY, TINY_STEPS + 1, EVAL_EVERY), 5)]
    writes = [("checkpoint write", c, 2) for c in rng.sample(
        range(CHECKPOINT_EVERY, TINY_STEPS + 1, CHECKPOINT_EVERY), 5)]
    plan = sorted(steps + evals + writes, key=lambda target: target[1:])
    for _ in range(2):
        plan.insert(rng.randrange(len(plan) + 1), ("any", 0, 0))
    return plan + [("export", TINY_STEPS, 3)] * 8


class WatchedStart:
    """One start of the run, watched through the files it writes; only what this start wrote
    counts (metrics rows past the checkpoint it resumes from, once the resume has cut the
    killed start's rows; folders made after it began)."""

    def __init__(self, command, workdir, log):
        self.workdir, self.checkpoints = workdir, workdir / "checkpoints"
        self.resumes_from = (finished_checkpoints(self.checkpoints) or [0])[-1]
        self.cut = max((r["step"] for r in logged_losses(workdir)), default=0) <= self.resumes_from
        self.began_ns = time.time_ns()
        self.proc = subprocess.Popen(command, env=cpu_devices_env(1), stdout=log, stderr=log)

    def rows(self):
        try:
            rows = logged_losses(self.workdir)
        except ValueError:  # a line being appended
            return []
        if not self.cut:  # the resume rewrites metrics.jsonl before its first new row
            self.cut = max((r["step"] for r in rows), default=0) <= self.resumes_from
        return [r for r in rows if r["step"] > self.resumes_from] if self.cut else []

    def trained(self):
        return [r["step"] for r in self.rows() if "loss" in r]

    def evaluated(self):
        return [r["step"] for r in self.rows() if "eval_mlm_loss" in r]

    def exporting(self):
        prefix = f".export.tmp-{self.proc.pid}-"
        return [n for n in os.listdir(self.workdir) if n.startswith(prefix)]

    def exported(self):
        export = self.workdir / "export"
        return export.exists() and export.stat().st_ctime_ns > self.began_ns

    def reached(self, phase, step):
        """True when the run is in the target's phase now."""
        if phase == "checkpoint write":
            return any(n.startswith(f"{step}.")
                       for n in partial_checkpoints(self.checkpoints, self.began_ns))
        if phase == "export":
            return bool(self.exporting())
        trained = self.trained()
        return step in trained and (phase == "step" or step not in self.evaluated())

    def passed(self, phase, step):
        """True when the run went past the target unseen (a phase shorter than a poll)."""
        if phase == "export":
            return self.exported()
        return max(self.trained(), default=0) >= step + 2

    def landed(self):
        """Where the kill landed, read from the files the killed run left."""
        where = set()
        if partial_checkpoints(self.checkpoints, self.began_ns):
            where.add("checkpoint write")
        if self.exporting():
            where.add("export")
        trained = self.trained()
        last = max(trained, default=0)
        if last % EVAL_EVERY == 0 < last and last not in self.evaluated():
            where.add("eval")
        elif 0 < last < TINY_STEPS:
            where.add("step")
        elif not where:
            where.add("after the export" if self.exported()
                      else "before training" if not trained and self.resumes_from < TINY_STEPS
                      else "between training and the export")
        return where


@pytest.mark.slow
def test_resume_is_bit_exact_after_20_kills_aimed_at_steps_checkpoint_writes_evals_and_export(
        tiny_pretrain, straight_pretrain, tmp_path):
    """SIGKILL, seeded, 20 times in a row (or more, until one lands in the export), each start resumed from what the last one left: the
    harness watches the run's own files (metrics rows, orbax's partial folders, the export's
    staging folder) and kills when a target phase is under way. The final export and every
    logged loss equal the straight run's bit for bit; each start after a kill took over the
    lock, and every partial checkpoint was removed."""
    rng = random.Random(32)
    workdir = tmp_path / "run"
    began, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    kills = []
    for i, (phase, step, _) in enumerate(kill_plan(rng)):
        if len(kills) >= 20 and any("export" in kill["landed"] for kill in kills):
            break
        with open(tmp_path / f"start{i}.log", "w") as log:
            start = WatchedStart(tiny_pretrain(workdir), workdir, log)
        what = f"kill {i + 1} ({phase} {step})"
        if phase == "any":
            deadline = time.perf_counter() + rng.uniform(2, 8)
            wait_for(lambda: time.perf_counter() > deadline, start.proc, what)
        else:
            wait_for(lambda: start.reached(phase, step) or start.passed(phase, step), start.proc,
                     what, poll=0 if phase == "export" else 0.001)  # the export takes ~5 ms
            time.sleep({"step": rng.uniform(0, 0.02), "eval": rng.uniform(0, 0.05)}.get(phase, 0))
        start.proc.kill()
        start.proc.wait()
        kills.append({"target": f"{phase} {step}" if step else phase, "landed": start.landed(),
                      "resumed from": start.resumes_from,
                      "partial": partial_checkpoints(workdir / "checkpoints"),
                      "pid": start.proc.pid, "held the lock": lock_holder(workdir) == start.proc.pid})
    with open(tmp_path / "final.log", "w") as log:
        final = WatchedStart(tiny_pretrain(workdir), workdir, log)
    assert final.proc.wait(timeout=600) == 0, (tmp_path / "final.log").read_text()[-3000:]
    seconds = time.perf_counter() - began
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime

    for kill in kills:
        print(kill)
    landed = [phase for kill in kills for phase in kill["landed"]]
    print(f"{len(kills)} kills in {seconds:.0f} s ({cpu_seconds:.0f} CPU-seconds); landed: "
          f"{ {phase: landed.count(phase) for phase in sorted(set(landed))} }")
    assert {"step", "checkpoint write", "eval", "export"} <= set(landed)
    assert_same_pretraining(workdir, straight_pretrain)
    logs = [tmp_path / f"start{i}.log" for i in range(len(kills))] + [tmp_path / "final.log"]
    warnings = [line for log in logs for line in log.read_text().splitlines()
                if line.startswith("warning: ")]
    for kill in kills:
        pid = kill["pid"]
        if kill["held the lock"]:  # taken over by the next start that got as far
            assert sum(bool(re.fullmatch(
                rf"warning: took over \S+ from a run that is gone \(host \S+, pid {pid}, "
                rf"started [^)]+\): process {pid} is not running", line))
                for line in warnings) == 1, f"the lock of {pid}"
        for partial in kill["partial"]:
            assert any(line.startswith("warning: removed ") and partial in line
                       for line in warnings), f"{partial} was never removed"
    assert not partial_checkpoints(workdir / "checkpoints")
    assert not (workdir / "run.lock").exists()
    assert not [n for n in os.listdir(workdir) if ".tmp-" in n]  # export staging cleared

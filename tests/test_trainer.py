"""The trainer: sharding over simulated devices, gradient accumulation, exact resume after SIGKILL.

Each run is a separate process (tests/workers/train_worker.py) so it can pick its device count and
be killed for real.
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import SINGLE, STEPS, WORKER, cpu_devices_env, losses, run_worker


@pytest.mark.slow
def test_meshes_match_single_device(tmp_path, topology_runs):
    """(data=8 alone, and tensor=8 / fsdp=8: tests/test_activation_sharding.py)"""
    base = run_worker(tmp_path / "single", *STEPS)
    assert len(base["losses"]) == 8 and base["devices"] == 1
    runs = {SINGLE: topology_runs["one"][1],
            "data=2,tensor=4": run_worker(tmp_path / "tensor", *STEPS, "--mesh", "data=2,tensor=4",
                                          devices=8)}
    for mesh, got in runs.items():
        assert got["devices"] == 8
        np.testing.assert_allclose(losses(got), losses(base), atol=1e-4, rtol=0, err_msg=mesh)
        # the intermediate kernel [128, 512] ('embed', 'mlp') really is split over the mesh
        expected_shape = {"data=2,fsdp=4": [32, 512], "data=2,tensor=4": [128, 128]}[mesh]
        assert got["kernel_shard_shape"] == expected_shape, mesh


def test_grad_accumulation_equals_one_large_batch(tmp_path):
    one = run_worker(tmp_path / "one", "--steps", "4", "--dropout", "0")
    accumulated = run_worker(tmp_path / "accum", "--steps", "4", "--dropout", "0",
                             "--grad-accum", "4")
    np.testing.assert_allclose(losses(accumulated), losses(one), atol=1e-5, rtol=0)
    a = np.load(tmp_path / "one" / "final_params.npz")
    b = np.load(tmp_path / "accum" / "final_params.npz")
    for name in a.files:
        np.testing.assert_allclose(b[name], a[name], atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.slow
def test_exact_resume_after_sigkill(tmp_path):
    steps = ["--steps", "30", "--checkpoint-every", "5"]
    straight = run_worker(tmp_path / "straight", *steps)
    workdir = tmp_path / "killed"
    env = cpu_devices_env(1)
    proc = subprocess.Popen([sys.executable, str(WORKER), str(workdir), *steps], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once a checkpoint exists and training went past it
        text = metrics.read_text() if metrics.exists() else ""
        if text.count("\n") >= 13:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = metrics.read_text().count("\n")
    assert 13 <= killed_at < 30, killed_at
    resumed = run_worker(workdir, *steps)
    np.testing.assert_allclose(losses(resumed), losses(straight), atol=1e-6, rtol=0)
    a = np.load(tmp_path / "straight" / "final_params.npz")
    b = np.load(workdir / "final_params.npz")
    for name in a.files:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def _tiny_trainer(tmp_path, **trainer):
    import ml_collections

    from distill import defaults
    from distill.models import ModelSpec
    from distill.tasks.pretrain import MaskedLMTask
    from distill.trainer import Trainer

    cfg = ml_collections.ConfigDict()
    cfg.model = defaults.model("tiny", overrides={"vocab_size": 256, "max_position_embeddings": 64,
                                                  "num_hidden_layers": 1})
    cfg.trainer = defaults.trainer(**{"num_steps": 6, "log_every": 1, "checkpoint_every": 2,
                                      "batch_size": 8, **trainer})
    cfg.optimizer = defaults.optimizer(lr=1e-3)
    cfg.mesh = defaults.mesh()
    return Trainer(MaskedLMTask(ModelSpec(cfg.model, ("mlm",)), nsp=False), cfg, tmp_path)


def test_batch_not_divisible_by_data_parallel_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=10 must be divisible by the data-parallel "
                                         r"size × grad_accum_steps = 1 × 4"):
        _tiny_trainer(tmp_path, batch_size=10, grad_accum_steps=4)


def test_nan_loss_stops_with_the_step_named_and_keeps_the_last_good_checkpoint(tmp_path):
    sys.path.insert(0, str(WORKER.parent))
    from train_worker import VOCAB, corpus

    from distill.data.pretraining import make_pretraining_dataset

    trainer = _tiny_trainer(tmp_path)
    data = iter(make_pretraining_dataset(corpus(), VOCAB, batch_size=8, max_seq_length=32,
                                         max_predictions_per_seq=5, nsp=False))

    def poisoned():
        for step, batch in enumerate(data):
            if step == 3:  # the 4th batch yields a NaN loss (its weights are NaN)
                batch = dict(batch, masked_lm_weights=batch["masked_lm_weights"] * np.nan)
            yield batch

    from distill.trainer import TrainingDiverged
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 4; the last good "
                                               r"checkpoint \(step 2\)"):
        trainer.fit(poisoned())
    assert trainer.checkpoints.latest_step() == 2


def test_bad_multihost_settings_are_clear_errors():
    from distill import distributed, sharding

    with pytest.raises(ValueError, match=r"--process_id=5 with --num_processes=2"):
        distributed.initialize("127.0.0.1:1", num_processes=2, process_id=5)
    with pytest.raises(ValueError, match=r"dcn sizes \[3, 1, 1\] must be >= 1 and divide"):
        sharding.make_mesh({"dcn_data": 3})
    with pytest.raises(ValueError, match=r"mesh axes \['dcn_pipeline'\] unknown"):
        sharding.make_mesh({"dcn_pipeline": 2})

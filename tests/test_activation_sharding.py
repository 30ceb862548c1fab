"""Activations are sharded by the same rules table as the parameters: on 8 simulated devices the
train step's per-device FLOPs (XLA's AOT cost analysis) under tensor / FSDP / mixed meshes stay
close to pure data parallelism's (for MLM, and for hidden-state distillation through a width
projection), FSDP needs no more temporaries than data parallelism and tensor parallelism little
more (the sequence between blocks is split too), XLA
never falls back to replicating a tensor to reshard it, and every mesh computes the one-device
losses."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import cpu_devices_env
from jax.sharding import PartitionSpec as P

from flaxbert.partitioning import activation_rules, constrain, fit_spec

WORKER = Path(__file__).parent / "workers" / "sharding_worker.py"
MESHES = ("data=8", "tensor=8", "fsdp=8", "data=2,tensor=4")


def run_worker(meshes, devices, distil_meshes=(), extra=()):
    env = cpu_devices_env(devices)
    proc = subprocess.run([sys.executable, str(WORKER), "--meshes", ";".join(meshes),
                           "--distil_meshes", ";".join(distil_meshes), *extra], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.slow
def test_meshes_split_the_work_and_match_one_device():
    single, _ = run_worker(["data=1"], devices=1)
    reports, stderr = run_worker(MESHES, devices=8, distil_meshes=("data=8", "tensor=8"))
    assert "rematerialization" not in stderr, [line for line in stderr.splitlines()
                                               if "rematerialization" in line][:3]
    data = reports["data=8"]
    for mesh in MESHES[1:]:
        ratio = reports[mesh]["flops"] / data["flops"]
        assert 0.7 < ratio <= 1.3, (mesh, ratio)
    # the projection of each student layer to the teacher's width splits over tensor too (whole,
    # it repeated on every device: ×1.65 here, ×1.69 for BERT-Large → BERT-Base)
    distil = reports["tensor=8"]["distil_flops"] / data["distil_flops"]
    assert 0.7 < distil <= 1.1, distil
    assert reports["fsdp=8"]["temp"] <= data["temp"], (reports["fsdp=8"]["temp"], data["temp"])
    # sequence parallelism: the residual stream between blocks is split over tensor, not held
    # whole on every tensor device (without it: ×1.44 data=8's temporaries here, ×1.18 with)
    assert reports["tensor=8"]["temp"] <= 1.3 * data["temp"], (reports["tensor=8"]["temp"],
                                                               data["temp"])
    # parameters really are split: FSDP holds an eighth of data parallelism's state
    assert reports["fsdp=8"]["argument"] < data["argument"] / 4
    for mesh in MESHES:
        np.testing.assert_allclose(reports[mesh]["losses"], single["data=1"]["losses"],
                                   atol=1e-4, rtol=0, err_msg=mesh)


def test_heads_that_do_not_divide_the_tensor_axis_still_split():
    """12 heads on tensor=8 (BERT-Base's case): the attention projections keep their heads axis
    (no flattened [M,K]×[K,N] matmul) so each device computes its own heads (flattened: ×1.26
    data=8's FLOPs here, ×1.15 for BERT-Large → BERT-Base)."""
    reports, _ = run_worker(["data=8", "tensor=8"], 8, extra=("--heads", "12", "--steps", "0"))
    ratio = reports["tensor=8"]["flops"] / reports["data=8"]["flops"]
    assert ratio <= 1.1, ratio


def test_constrain_is_a_no_op_without_rules_or_mesh():
    x = jax.numpy.ones((4, 8, 2, 3))
    assert constrain(x, ("batch", "length", "heads", "kv")) is x
    with activation_rules((("batch", "data"),)):
        assert constrain(x, ("batch", "length", "heads", "kv")) is x  # no mesh set


def test_fit_spec_leaves_indivisible_dimensions_unsplit():
    mesh = jax.sharding.AbstractMesh((2, 1, 8), ("data", "fsdp", "tensor"))
    # 12 heads on tensor=8 cannot split; 16 can; the batch of 6 splits over data=2
    assert fit_spec(P(("data", "fsdp"), None, "tensor"), (6, 5, 12), mesh) == P(
        ("data", "fsdp"), None, None)
    assert fit_spec(P(("data", "fsdp"), None, "tensor"), (6, 5, 16), mesh) == P(
        ("data", "fsdp"), None, "tensor")

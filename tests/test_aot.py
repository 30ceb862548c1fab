"""`distill compile`: the ahead-of-time check reports per-device memory for a BERT-Large teacher
and a BERT-Small student on an 8-device mesh without allocating or running anything."""

import json
import math
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import cpu_devices_env

from flaxbert import Model, abstract_params, get_config

pytestmark = pytest.mark.slow


def parameter_bytes(preset: str) -> int:
    leaves = jax.tree_util.tree_leaves(abstract_params(Model(get_config(preset), heads=())))
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in leaves)


def test_compile_reports_memory_per_device_for_large_teacher_and_small_student(tmp_path):
    env = cpu_devices_env(8)
    cmd = [sys.executable, "-m", "distill.cli", "compile", "--config",
           "distill/experiments/distill.py:tinybert", "--workdir", str(tmp_path),
           "--config.teacher.name=large", "--config.model.name=small",
           "--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.trainer.batch_size=32",
           "--config.data.max_seq_length=128"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "per device: arguments" in proc.stdout
    report = json.loads((tmp_path / "compile_report.json").read_text())
    assert report["devices"] == 8 and report["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
    # Arguments per device: the frozen teacher (fp32) and the student's params + two Adam moments,
    # each split 4 ways by fsdp (replicated over data), plus 1/8 of the batch.
    teacher, student = parameter_bytes("large"), parameter_bytes("small")
    batch = 32 * (3 * 128 * 4 + 3 * 4) / 8
    expected = (teacher + 3 * student) / 4 + batch
    assert 0.97 < report["argument"] / expected < 1.03, (report["argument"], expected)
    # the whole teacher alone would not fit this per-device figure: sharding really happened
    assert report["argument"] < teacher
    # training needs activations beyond the arguments; donated state is counted once
    assert report["temp"] > 0 and report["peak"] > report["argument"]
    assert report["alias"] > 0.9 * 3 * student / 4
    assert report["flops"] > 0


def test_compile_of_a_finetuning_config_from_a_google_release_folder_not_downloaded(tmp_path):
    """A fine-tuning config compiles too, its model named by a Google release folder that is not
    on this machine (the paper plan's teacher before the download): the arguments are the
    parameters, their two Adam moments and the batch, on one device."""
    from distill.cli import main
    from distill.tasks.aot import model_config

    assert model_config("/nowhere/uncased_L-24_H-1024_A-16") == get_config("bert_large_uncased")
    folder = "/nowhere/uncased_L-2_H-128_A-2"  # a compact model's release name
    main(["distill", "compile", "--config=distill/experiments/finetune.py:rte",
          f"--workdir={tmp_path}", f"--config.model.name={folder}",
          "--config.trainer.batch_size=8", "--config.data.max_seq_length=64"])
    report = json.loads((tmp_path / "compile_report.json").read_text())
    model = Model(get_config("bert_uncased_L-2_H-128_A-2"), heads=("classifier",), num_labels=2)
    params = sum(math.prod(x.shape) * 4 for x in jax.tree_util.tree_leaves(abstract_params(model)))
    batch = 8 * (3 * 64 * 4 + 3 * 4)
    assert 0.99 < report["argument"] / (3 * params + batch) < 1.01
    assert report["flops"] > 0 and report["compile_seconds"] > 0


def test_compile_builds_the_pretraining_objective_the_config_names(tmp_path):
    """`objective=electra` compiles ELECTRA's step (generator + discriminator + RTD head), not
    MLM's: its arguments hold the generator's parameters and their Adam moments too."""
    from distill.cli import main

    reports = {}
    for objective in ("mlm", "electra"):
        workdir = tmp_path / objective
        main(["distill", "compile", "--config=pretrain.py:tiny", f"--workdir={workdir}",
              f"--config.objective={objective}", "--config.trainer.batch_size=8",
              "--config.data.max_seq_length=64"])
        reports[objective] = json.loads((workdir / "compile_report.json").read_text())
    # the generator (1/4 width, embeddings shared with the discriminator) and its moments: small
    # beside BERT-Tiny's 30522-row embedding table, but there; MLM's step would be identical
    assert reports["electra"]["argument"] > reports["mlm"]["argument"], reports
    assert reports["electra"]["flops"] != reports["mlm"]["flops"], reports


def test_compile_builds_a_pkt_student_with_the_heads_it_carries(tmp_path):
    """PKT builds its student with the teacher's MLM and NSP heads (carried into the export for
    pre-training distillation): the compiled step holds them too, not only the heads its terms
    read (none: PKT's terms are all layer-wise)."""
    from distill.experiments import distill as recipes
    from distill.experiments.pretrain import NARROW_IB_BERT
    from distill.tasks import aot
    from flaxbert.mobilebert import MobileBertConfig

    config = recipes.get_config("mobilebert_pkt")
    teacher = tmp_path / "ib_bert.json"  # the recipe's narrow IB-BERT teacher, not trained here
    MobileBertConfig(**{**NARROW_IB_BERT, "vocab_size": 30522}).to_json_file(teacher)
    config.teacher.name = str(teacher)
    task = aot.build_task(config, tmp_path)
    assert {"mlm", "nsp"} <= set(task.student.heads)


def test_a_step_with_loops_reports_the_flops_of_all_its_iterations(tmp_path):
    """XLA's cost analysis counts a loop's body once: compiled as is, two gradient-accumulation
    micro-batches report half the step's FLOPs and scanned layers one layer's. The report counts
    them written out (the plan's FLOPs and device-hours with it), while its memory stays the
    looped step's: accumulation holds one micro-batch's activations."""
    from distill.cli import main

    reports = {}
    for name, loop in (("plain", []), ("accumulated", ["--config.trainer.grad_accum_steps=2"]),
                       ("scanned", ["--config.model.scan_layers=True"])):
        main(["distill", "compile", "--config=pretrain.py:tiny", f"--workdir={tmp_path / name}",
              "--config.trainer.batch_size=8", "--config.data.max_seq_length=64", *loop])
        reports[name] = json.loads((tmp_path / name / "compile_report.json").read_text())
    plain = reports["plain"]["flops"]
    assert plain > 0
    for name in ("accumulated", "scanned"):
        assert abs(reports[name]["flops"] / plain - 1) < 0.01, (name, reports[name]["flops"], plain)
    assert reports["accumulated"]["temp"] < reports["plain"]["temp"]

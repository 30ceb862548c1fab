"""`python -m build` makes a wheel that installs in a clean venv with working imports and commands.

The clean venv borrows the already-installed dependencies through a .pth file (no network at test
time); the project itself comes only from the wheel."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("flaxbert-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # dependencies from the test environment, appended after the venv's own site-packages
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    code = ("import flaxbert, distill, distill.tasks.recipe, flaxbert.checkpoints.google; "
            "print(flaxbert.__file__)")
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout
    assert str(venv) in out  # imported from the wheel, not the source tree
    for command in ("flaxbert", "distill"):
        proc = subprocess.run([str(venv / "bin" / command), "--help"], capture_output=True, text=True)
        assert "usage" in (proc.stdout + proc.stderr).lower(), command

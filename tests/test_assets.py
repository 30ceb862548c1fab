"""`distill assets`, offline: a second run over the fetched assets fetches nothing, and a package
pip cannot fetch is named. pip is pointed at an index that does not exist (its own PIP_INDEX_URL
setting; port 9 of this host refuses connections), so any attempt to download fails at once."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import ASSETS

from distill.assets import ASSETS as FETCHED

ROOT = Path(__file__).parents[1]
DEAD_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
              "PIP_FIND_LINKS": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
              "PIP_NO_CACHE_DIR": "1", "PIP_CONFIG_FILE": os.devnull}


def distill_assets(*args, cwd, **env):
    env = {**os.environ, **DEAD_INDEX, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "distill.cli", "assets", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_second_run_fetches_nothing(tmp_path):
    for asset in FETCHED:
        assert (ASSETS / asset.done).is_file(), f"run `make assets`: {asset.done} is missing"
    proc = distill_assets("--dest", str(ASSETS), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for asset in FETCHED:
        assert f"{asset.name}: present" in proc.stdout
    assert "corpora: present" in proc.stdout
    assert "fetching" not in proc.stdout
    assert proc.stdout.strip().endswith("nothing to fetch")


def test_failure_names_the_package(tmp_path):
    dest = tmp_path / "assets"
    proc = distill_assets(cwd=tmp_path, FLAXBERT_ASSETS=str(dest))  # the default --dest
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    first = FETCHED[0]
    assert error.startswith(f"distill assets: could not fetch {first.requirement}: "), error
    assert "No matching distribution" in error  # pip's own last line
    assert f"{first.name}: fetching {first.requirement}" in proc.stdout
    assert not (dest / first.done).exists()  # a failed asset is not marked done

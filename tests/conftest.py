"""Shared fixtures: the real offline assets fetched by `make assets` (see shared/REFERENCES.md)."""

import os
from pathlib import Path

import pytest
from helpers import (
    DISTILL_STEPS,
    FAST_COMPILE,
    MULTI,
    SINGLE,
    STEPS,
    build_once,
    run_worker,
    start_two_processes,
    start_worker,
    summary_of,
)

# Many tests compile the same small programs; a persistent compilation cache shares them
# across tests and subprocesses (workers inherit the environment).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache/flaxbert/jax"))
# Every program, however quick to compile: the worker subprocesses each compile dozens of
# small ones (initializers, eager ops) that the others have compiled before.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE)  # LLVM's expensive passes off (helpers.py says why)


def pytest_collection_modifyitems(items):
    """The slow tail first: xdist hands out work in collection order, so the long tests start at
    once and the short ones fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory, worker_id) -> Path:
    """A folder every xdist worker of this session shares (each worker's basetemp is a child)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def topology_runs(session_dir):
    """The same pre-training in one process with 8 devices (data=2 × fsdp=4) and in two
    `jax.distributed` processes with 4 each: {"one"|"two": (workdir, summary)}, checkpoints at
    steps 4 and 8 (tests/test_multihost.py, and tests/test_trainer.py's mesh check)."""
    def build(root):  # both at once: three processes keep the cores busy while others wait
        one = start_worker(root / "one", *STEPS, "--mesh", SINGLE, devices=8)
        try:
            two = summary_of(start_two_processes(root / "two", *STEPS, "--mesh", MULTI))
        finally:
            one_summary = summary_of([one])
        return {"one": one_summary, "two": two}

    root, summaries = build_once(session_dir, "topologies", build)
    assert summaries["two"]["processes"] == 2 and summaries["two"]["devices"] == 8
    return {name: (root / name, summary) for name, summary in summaries.items()}


@pytest.fixture(scope="session")
def sharded_distill_run(session_dir):
    """Distillation on 8 devices (data=2 × fsdp=4): (workdir, summary), for the one-device and the
    two-process comparisons."""
    return build_once(session_dir, "sharded_distill", lambda workdir: run_worker(
        workdir, *DISTILL_STEPS, "--mesh", SINGLE, devices=8))


ASSETS = Path(os.environ.get("FLAXBERT_ASSETS", Path.home() / ".cache/flaxbert/assets"))


def _asset(name: str) -> Path:
    path = ASSETS / name
    if not (path / ".done").exists():
        # A missing asset is a failure, not a skip: run `make assets` (make test does).
        pytest.fail(f"asset {path} is missing; run `make assets` (FLAXBERT_ASSETS={ASSETS})")
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 BERT in HF format (config.json, model.safetensors, vocab.txt)."""
    return _asset("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def vader_dir() -> Path:
    """The VADER human-rated sentences: *_GroundTruth.txt, TSV id<TAB>rating<TAB>text."""
    return _asset("vader")


def read_vader(path: Path) -> list[tuple[float, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.rstrip("\r").split("\t")
        if len(parts) >= 3:
            rows.append((float(parts[1]), "\t".join(parts[2:])))
    return rows


@pytest.fixture(scope="session")
def movie_sentences(vader_dir) -> list[str]:
    """10,605 real Rotten Tomatoes sentences, in file order."""
    return [text for _, text in read_vader(vader_dir / "movieReviewSnippets_GroundTruth.txt")]

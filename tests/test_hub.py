"""Hugging Face hub ids read from a local hub cache laid out as huggingface_hub writes it:
`models--org--name/blobs/<hash>` holds the files, `snapshots/<commit>/<file>` are relative
symlinks into blobs/, `refs/main` names the commit. Built here from the real all-MiniLM-L6-v2
asset folder; nothing is downloaded."""

import hashlib
import os
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from distill.models import ModelSpec
from flaxbert import cli, hub
from flaxbert.pretrained import from_pretrained

REPO = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = hashlib.sha1(b"a commit").hexdigest()
OLD_COMMIT = hashlib.sha1(b"an older commit").hexdigest()


def fill_cache(cache, folder, repo=REPO, commit=COMMIT):
    """`folder`'s files as the hub caches revision `commit` of `repo`, `refs/main` naming it."""
    model = cache / f"models--{repo.replace('/', '--')}"
    (model / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = model / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in sorted(folder.iterdir()):
        if file.name.startswith("."):
            continue
        data = file.read_bytes()
        blob = model / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (model / "refs").mkdir(exist_ok=True)
    (model / "refs" / "main").write_text(commit)  # no newline, as the hub writes it
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, minilm_dir, monkeypatch):
    cache = tmp_path / "hub"
    fill_cache(cache, minilm_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # no local folder of the id's name
    return cache


def assert_same(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_cached_id_loads_the_folders_weights(hub_cache, minilm_dir):
    snapshot = hub.snapshot(REPO)
    assert snapshot == hub_cache / f"models--{REPO.replace('/', '--')}/snapshots/{COMMIT}"
    assert (snapshot / "model.safetensors").is_symlink()
    model, params, tokenizer = from_pretrained(REPO)
    _, folder_params, folder_tokenizer = from_pretrained(minilm_dir)
    assert model.config.hidden_size == 384
    assert_same(params, folder_params)
    assert tokenizer.encode("a gorgeous film") == folder_tokenizer.encode("a gorgeous film")


def test_revision_names_a_ref_or_a_commit(hub_cache, minilm_dir):
    model_dir = hub_cache / f"models--{REPO.replace('/', '--')}"
    fill_cache(hub_cache, minilm_dir, commit=OLD_COMMIT)  # refs/main now names the old one
    (model_dir / "refs" / "main").write_text(COMMIT)
    (model_dir / "refs" / "v1").write_text(OLD_COMMIT)
    assert hub.snapshot(REPO).name == COMMIT
    assert hub.snapshot(f"{REPO}@v1").name == OLD_COMMIT
    assert hub.snapshot(f"{REPO}@{OLD_COMMIT}").name == OLD_COMMIT
    with pytest.raises(FileNotFoundError, match="refs/v2"):
        hub.snapshot(f"{REPO}@v2")


def test_cache_folder_follows_the_hubs_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert hub.cache_dir() == tmp_path / "user/.cache/huggingface/hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub.cache_dir() == tmp_path / "hf/hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub.cache_dir() == tmp_path / "elsewhere"


def test_uncached_id_names_the_id_the_cache_and_the_fix(hub_cache):
    missing = "google/bert_uncased_L-2_H-128_A-2"
    with pytest.raises(FileNotFoundError) as error:
        from_pretrained(missing)
    message = str(error.value)
    assert message.startswith(f"{missing}: ")
    assert f"not in the Hugging Face cache {hub_cache}" in message
    assert f"huggingface-cli download {missing}" in message and f"hf download {missing}" in message
    with pytest.raises(SystemExit, match=f"flaxbert info: {missing}: .*huggingface-cli download"):
        cli.main(["info", missing])


def test_a_local_path_wins_over_the_id(hub_cache, tmp_path):
    local = tmp_path / REPO
    local.mkdir(parents=True)
    assert hub.resolve(REPO) == local.relative_to(tmp_path)
    assert hub.resolve("tiny") == Path("tiny")  # a preset name is no id: left as it is
    assert not hub.is_hub_id("org/config.json") and not hub.is_hub_id("runs/pt/export")


def test_a_config_naming_the_id_loads_it(hub_cache, minilm_dir, capsys):
    spec = ModelSpec(ml_collections.ConfigDict(dict(name=REPO, dtype="float32")), heads=())
    _, folder_params, _ = from_pretrained(minilm_dir, heads=())
    assert_same(spec.initial_params, folder_params)
    assert spec.tokenizer is not None
    cli.main(["info", REPO])
    assert "hidden            384" in capsys.readouterr().out


def test_a_pytorch_only_repository_loads_through_torch(tmp_path, minilm_dir, monkeypatch):
    """google/bert_uncased_L-* and prajjwal1/bert-* hold `pytorch_model.bin` and no safetensors:
    the same weights written by torch load as the safetensors folder does."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pytorch_only"
    folder.mkdir()
    for file in minilm_dir.iterdir():
        if file.name not in ("model.safetensors",) and not file.name.startswith("."):
            (folder / file.name).write_bytes(file.read_bytes())
    torch.save(load_file(str(minilm_dir / "model.safetensors")), folder / "pytorch_model.bin")
    cache = tmp_path / "hub"
    fill_cache(cache, folder, repo="google/bert_uncased_L-6_H-384_A-12")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    _, params, _ = from_pretrained("google/bert_uncased_L-6_H-384_A-12")
    assert_same(params, from_pretrained(minilm_dir)[1])
    (folder / "pytorch_model.bin").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="pytorch_model.bin: not a readable PyTorch weights file"):
        from_pretrained(folder)

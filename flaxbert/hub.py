"""Hugging Face hub ids (`org/name`, `org/name@revision`) read from the local hub cache, offline.

The cache is the folder `huggingface-cli download` / `hf download` (and transformers) fill:
`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. A model `org/name` lives
in `models--org--name/`: `refs/main` holds the commit hash of the `main` revision, and
`snapshots/<hash>/` the files of that commit (symlinks into `blobs/`). `org/name@rev` picks another
ref (a branch or tag name under `refs/`) or a commit hash. Nothing is downloaded: an id that is
not in the cache is an error saying how to fill it. An existing local path always wins over an id.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: `org/name` or `org/name@revision`, as the hub spells repository ids.
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")


def cache_dir() -> Path:
    """The hub cache folder, as huggingface_hub chooses it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path.home() / ".cache/huggingface"
    return Path(home).expanduser() / "hub"


def is_hub_id(name: str) -> bool:
    """Whether `name` is spelled like a hub model id (a config .json path never is)."""
    return bool(HUB_ID.match(str(name))) and not str(name).endswith(".json")


def snapshot(hub_id: str) -> Path:
    """The cached snapshot folder of `org/name[@revision]`; FileNotFoundError (naming the id, the
    cache folder searched and how to fill it) when it is not there."""
    match = HUB_ID.match(hub_id)
    if not match:
        raise ValueError(f"{hub_id!r} is not a hub id; expected org/name or org/name@revision")
    repo, revision = match["repo"], match["revision"] or "main"
    cache = cache_dir()
    folder = cache / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    found = folder / "snapshots" / commit
    if not found.is_dir():
        looked = found if ref.is_file() else ref
        raise FileNotFoundError(
            f"{hub_id}: no such local folder, and not in the Hugging Face cache {cache} (no "
            f"{looked}); nothing is downloaded here — fill the cache on a machine with network "
            f"(`huggingface-cli download {repo}` or `hf download {repo}`"
            f"{f' --revision {revision}' if match['revision'] else ''}) and copy its "
            f"{folder.name} folder into {cache} (or set HF_HUB_CACHE / HF_HOME), or pass a model "
            f"folder")
    return found


def resolve(name: str | Path) -> Path:
    """A local path (`~` expanded; a TF checkpoint prefix `ckpt` of `ckpt.index` too) as it is;
    else a hub id's cached snapshot (`snapshot`); else the path, for the caller to report."""
    path = Path(name).expanduser()
    if path.exists() or Path(f"{path}.index").is_file() or not is_hub_id(str(name)):
        return path
    return snapshot(str(name))

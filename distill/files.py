"""Work-directory files: paths that keep URLs as URLs, and outputs written atomically.

A work directory may be local or any URL `etils.epath` opens (gs://, s3://, ...): `as_path`
keeps it a URL where `pathlib.Path` would turn `gs://b/run` into the local folder `gs:/b/run`.
Outputs a later step or user loads (exports, `best/`, `result.json`, tables) go through
`atomic_output`: written under a temporary name and renamed, so a kill leaves either the old
output or the new one, never a half-written model.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import uuid
from typing import Any, Iterator

import numpy as np
from etils import epath


def is_remote(path) -> bool:
    """A URL (gs://, s3://, ...) rather than a local path."""
    return "://" in str(path)


def as_path(path) -> epath.Path:
    """A work-directory path that keeps URLs as URLs (pathlib turns `gs://b/x` into `gs:/b/x`)."""
    return path if isinstance(path, epath.Path) else epath.Path(path)


@contextlib.contextmanager
def atomic_output(target) -> Iterator[pathlib.Path]:
    """Yields a temporary local path to write a file or folder to; when the block finishes it
    replaces `target` by a rename, so a kill leaves the old output or the new one, never half
    of one. A remote `target` (gs://...) is written locally first and copied next to it."""
    target = as_path(target)
    suffix = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = target.parent / f".{target.name}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(target):
        with tempfile.TemporaryDirectory() as local:
            yield pathlib.Path(local) / target.name
            _copy_tree(pathlib.Path(local) / target.name, staging)
            _replace(staging, target)
        return
    local = pathlib.Path(os.fspath(staging))
    try:
        yield local
    except BaseException:
        if local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        elif local.exists():
            local.unlink()
        raise
    _replace(staging, target)


#: What `atomic_output` writes beside its target: the staging copy, and the old output moved aside.
_BESIDE = re.compile(r"\.(?P<name>.+)\.(?:(?P<old>old)|tmp-\d+)-[0-9a-f]{8}")


def remove_partial_outputs(folder) -> list[str]:
    """Clears what killed `atomic_output`s left in `folder`: staging copies (`.NAME.tmp-*`,
    never renamed) are removed, and an old output moved aside (`.NAME.old-*`) is removed, or put
    back when NAME is missing (the kill fell between the two renames). Only for the folder's one
    writer (`run_lock`); returns what it changed."""
    folder = as_path(folder)
    changed = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else ():
        match = _BESIDE.fullmatch(entry.name)
        if match is None:
            continue
        target = folder / match["name"]
        if match["old"] and not target.exists():
            entry.rename(target)
            changed.append(f"{entry.name} put back as {target.name}")
        else:
            entry.rmtree() if entry.is_dir() else entry.unlink()
            changed.append(f"{entry.name} removed")
    return changed


def _copy_tree(source: pathlib.Path, dest: epath.Path) -> None:
    if source.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        for child in source.iterdir():
            _copy_tree(child, dest / child.name)
    else:
        dest.write_bytes(source.read_bytes())


def _replace(staging: epath.Path, target: epath.Path) -> None:
    """A file replaces in one rename; a folder moves the old one aside first."""
    if not staging.is_dir():
        staging.replace(target)
        return
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(old)
    staging.rename(target)
    if old is not None:
        old.rmtree() if old.is_dir() else old.unlink()


def write_text(path, text: str) -> None:
    """Writes a text file atomically (see `atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def write_json(path, data: Any) -> None:
    """Writes JSON atomically (see `atomic_output`)."""
    write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"{type(x)} is not JSON serialisable")

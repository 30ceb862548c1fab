"""The teacher's outputs computed once and stored with a fingerprint of the data and the teacher,
so a student trains from them without running (or loading) the teacher again.

Two caches:

- task distillation: the classifier logits over a fixed transfer set, one `.npz`
  (`cached_teacher_logits`);
- general distillation: the teacher's **top-k MLM logits** and their vocabulary ids at the
  masked positions of `epochs` masked passes over the raw-text instances (and its NSP logits
  with NSP data), in sharded folders (`TopKCache`). Masks are therefore static over the cached
  passes (as google-research/bert's dupe_factor), where `distill pretrain` draws new ones every
  epoch. The KD loss renormalises teacher and student over the teacher's top k
  (`losses.top_k_kl_divergence`).

Layout of a top-k cache folder (local disk; arrays memory-mapped when read):

    <cache>/<split>/p<process>-<shard>/<field>.npy   one folder per `rows_per_shard` rows,
                                                     renamed into place when whole
    <cache>/<split>/fingerprint-p<process>           the data, teacher and settings it holds
    <cache>/<split>/manifest-p<process>.json         written last: the fingerprint and shards

A run killed while writing keeps its whole shards and the rerun writes only the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np

from flaxbert.params import flatten


def teacher_identity(teacher_model) -> str:
    """What, besides its weights, decides the teacher's outputs: architecture, heads and compute
    dtype. Not its path: a run moved or copied elsewhere keeps its cache."""
    return json.dumps({"config": dataclasses.asdict(teacher_model.config),
                       "heads": list(teacher_model.heads), "num_labels": teacher_model.num_labels,
                       "dtype": str(teacher_model.dtype)}, sort_keys=True, default=str)


def _hash_teacher(h, teacher_params, teacher_identity: str) -> None:
    h.update(teacher_identity.encode())
    for name, value in sorted(flatten(jax.device_get(teacher_params)).items()):
        h.update(name.encode())
        h.update(np.asarray(value, np.float32).tobytes())


def fingerprint(features: dict[str, np.ndarray], teacher_params, teacher_identity: str) -> str:
    h = hashlib.sha256()
    _hash_teacher(h, teacher_params, teacher_identity)
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        h.update(np.ascontiguousarray(features[key]).tobytes())
    return h.hexdigest()


def cached_teacher_logits(path: Path, print_: str, compute) -> np.ndarray:
    """The teacher's logits from `path` if its fingerprint matches, else computed and stored."""
    if path.exists():
        stored = np.load(path)
        if str(stored["fingerprint"]) != print_:
            raise ValueError(f"teacher-output cache {path} was made for other data or another "
                             f"teacher (fingerprint mismatch); delete it or point distill.cache "
                             f"elsewhere")
        return stored["logits"]
    logits = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, logits=logits, fingerprint=np.asarray(print_))
    return logits


def teacher_logits(teacher_model, teacher_params, features: dict[str, np.ndarray],
                   batch_size: int) -> np.ndarray:
    """The teacher's classifier logits over `features`, in file order (unsharded, whole batches
    in every process)."""
    from distill.data.features import eval_batches, in_file_order, num_examples
    from distill.trainer import progress_bar

    apply = jax.jit(lambda p, b: teacher_model.apply(
        {"params": p}, b["input_word_ids"], b["input_mask"], b["input_type_ids"])["logits"])
    batches = eval_batches(features, batch_size, process_index=0, process_count=1)
    outputs = []
    with progress_bar(-(-num_examples(features) // batch_size), "teacher logits",
                      unit="batch") as bar:
        for batch in batches:
            outputs.append({"logits": np.asarray(apply(teacher_params, batch))})
            bar.update()
    return in_file_order(outputs, "logits", features, batch_size)


# --- the top-k MLM-logit cache for general distillation ------------------------------------------
def _source_files(spec: str) -> list[Path]:
    """The local files a source spec reads (none for a tfds dataset)."""
    from distill.data.sources import parse_spec

    kind, target = parse_spec(spec)
    files = []
    for part in target.split(",") if kind != "tfds" else ():
        if not part.strip():  # no source (Path("") would be the working directory)
            continue
        path = Path(part.strip())
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(f for f in path.rglob("*") if f.is_file()))
    return files


def top_k_fingerprint(data_config: dict, teacher_params, teacher_identity: str, **settings) -> str:
    """The teacher, the data block, the source files' bytes and the cache settings (k, passes,
    batch and process layout): anything that changes a cached row changes the fingerprint. The
    source files and the vocabulary count by their contents and order, not their paths: a corpus
    moved or copied elsewhere keeps its cache."""
    h = hashlib.sha256()
    _hash_teacher(h, teacher_params, teacher_identity)
    sources = ("train", "eval", "vocab")
    rest = {key: value for key, value in data_config.items() if key not in sources}
    h.update(json.dumps({"data": rest, **settings}, sort_keys=True, default=str).encode())
    for key in sources:
        h.update(key.encode())
        for path in _source_files(str(data_config.get(key, ""))):
            file_hash = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    file_hash.update(block)
            h.update(file_hash.digest())
    return h.hexdigest()


class TopKCache:
    """One split (train or eval) of a top-k cache, for this process's rows."""

    def __init__(self, root, split: str, print_: str, *, process_index: int = 0):
        self.dir = Path(root) / split
        self.print_, self.process = print_, process_index
        self.manifest = self.dir / f"manifest-p{process_index:03d}.json"
        self.stamp = self.dir / f"fingerprint-p{process_index:03d}"

    def complete(self) -> bool:
        """True when this process's rows are all written for this fingerprint. Rows of another
        fingerprint (other data, another teacher) are refused, never reused or deleted."""
        if self.stamp.exists() and self.stamp.read_text() != self.print_:
            raise ValueError(f"teacher cache {self.dir.parent} was made for other data, another "
                             f"teacher or other cache settings (fingerprint mismatch); delete it "
                             f"or point distill.cache elsewhere")
        return self.manifest.exists()

    def write(self, batches, teacher_step, rows_per_shard: int) -> None:
        """Runs `teacher_step(batch) -> {field: [B, ...]}` over `batches` and stores each row
        with its teacher outputs. Shards already on disk (a killed earlier run, same fingerprint)
        are kept and their batches skipped without running the teacher."""
        from distill.trainer import progress_bar

        self.dir.mkdir(parents=True, exist_ok=True)
        self.stamp.write_text(self.print_)
        shards, pending, rows = [], [], 0
        with progress_bar(None, f"teacher top-k ({self.dir.name})", unit="batch") as bar:
            for batch in batches:
                folder = self.dir / f"p{self.process:03d}-{len(shards):05d}"
                if not (folder / "rows").exists():
                    pending.append({**batch, **teacher_step(batch)})
                rows += len(batch["input_word_ids"])
                bar.update()
                if rows >= rows_per_shard:
                    shards.append(self._flush(folder, pending, rows))
                    pending, rows = [], 0
        if rows:
            shards.append(self._flush(self.dir / f"p{self.process:03d}-{len(shards):05d}",
                                      pending, rows))
        if not shards:
            raise ValueError(f"teacher cache {self.dir}: the data gave no rows to cache")
        tmp = self.manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": self.print_, "shards": shards}, indent=1))
        os.replace(tmp, self.manifest)

    @staticmethod
    def _flush(folder: Path, batches: list[dict], rows: int) -> dict:
        """Writes one shard under a temporary name and renames it (no-op when already there)."""
        if batches:
            tmp = folder.with_name(f".{folder.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for key in batches[0]:
                np.save(tmp / f"{key}.npy", np.concatenate([b[key] for b in batches]))
            (tmp / "rows").write_text(str(rows))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        return {"name": folder.name, "rows": rows}

    def source(self) -> "TopKSource":
        return TopKSource(self.dir, json.loads(self.manifest.read_text())["shards"])


class TopKSource:
    """A grain random-access source over a cache split's rows (memory-mapped shards)."""

    def __init__(self, folder: Path, shards: list[dict]):
        self.fields = [dict((p.stem, np.load(p, mmap_mode="r"))
                            for p in sorted((folder / s["name"]).glob("*.npy"))) for s in shards]
        self.ends = np.cumsum([s["rows"] for s in shards])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        shard = int(np.searchsorted(self.ends, index, side="right"))
        row = index - (int(self.ends[shard - 1]) if shard else 0)
        return {k: np.asarray(v[row]) for k, v in self.fields[shard].items()}


def top_k_batches(source: TopKSource, batch_size: int, *, seed: int | None, repeat: bool):
    """Batches of cached rows: shuffled and repeated for training (a grain iterator, so the
    trainer checkpoints its position and a resumed run reads on exactly), in order for eval."""
    import grain

    ds = grain.MapDataset.source(source)
    if seed is not None:
        ds = ds.shuffle(seed=seed)
    if repeat:
        ds = ds.repeat(None)
    return ds.batch(batch_size, drop_remainder=True).to_iter_dataset()


def local_mesh(mesh_config):
    """This process's devices: the batch over all of them, tensor parallelism as configured."""
    from distill import sharding
    return sharding.make_mesh({"data": -1, "tensor": int(mesh_config.get("tensor", 1))},
                              devices=jax.local_devices())


def teacher_top_k_step(teacher_model, teacher_params, mesh, k: int, nsp: bool,
                       batch_size: int):
    """`batch (host numpy) -> {teacher_topk_logits, teacher_topk_ids[, teacher_nsp_logits]}`
    for this host's rows (`batch_size` of them, or fewer in a last batch): the teacher sharded
    on `mesh` by the rules table, top-k on the device. Give it a mesh of this process's devices
    (`local_mesh`): hosts hold different numbers of rows and must not wait on each other."""
    from distill import losses, sharding
    from distill.trainer import place_batch
    from flaxbert.params import logical_axes

    param_sharding = sharding.logical_to_sharding(logical_axes(teacher_model), teacher_params, mesh)
    params = jax.device_put(teacher_params, param_sharding)
    rows = sharding.batch_sharding(mesh)

    def forward(p, batch):
        out = teacher_model.apply({"params": p}, batch["input_word_ids"], batch["input_mask"],
                                  batch["input_type_ids"], batch["masked_lm_positions"],
                                  input_positions=batch.get("input_positions"))
        values, ids = losses.top_k(out["mlm_logits"], k)
        result = {"teacher_topk_logits": values, "teacher_topk_ids": ids}
        if nsp:
            result["teacher_nsp_logits"] = out["nsp_logits"].astype(np.float32)
        return result

    step = jax.jit(sharding.traced_in_rules(forward, mesh), in_shardings=(param_sharding, rows),
                   out_shardings=rows)

    def run(batch):
        n = len(batch["input_word_ids"])  # a last partial batch is padded with its last row
        full = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)]) for k, v in batch.items()}
        with jax.set_mesh(mesh):
            out = step(params, place_batch(full, rows))
        return {k: v[:n] for k, v in jax.device_get(out).items()}

    return run

"""The teacher's outputs over a fixed transfer set, computed once and stored with a fingerprint of
the data and the teacher, so a student can train from them without loading the teacher again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import numpy as np

from flaxbert.params import flatten


def fingerprint(features: dict[str, np.ndarray], teacher_params, teacher_name: str) -> str:
    h = hashlib.sha256(teacher_name.encode())
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        h.update(np.ascontiguousarray(features[key]).tobytes())
    for name, value in sorted(flatten(jax.device_get(teacher_params)).items()):
        h.update(name.encode())
        h.update(np.asarray(value, np.float32).tobytes())
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
    from distill.data.features import eval_batches, in_file_order

    apply = jax.jit(lambda p, b: teacher_model.apply(
        {"params": p}, b["input_word_ids"], b["input_mask"], b["input_type_ids"])["logits"])
    batches = eval_batches(features, batch_size, process_index=0, process_count=1)
    return in_file_order([{"logits": np.asarray(apply(teacher_params, b))} for b in batches],
                         "logits", features, batch_size)

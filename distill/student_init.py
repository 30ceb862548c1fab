"""Student initialisation from the teacher: whole layers (DistilBERT), or the embedding tables."""

from __future__ import annotations

import numpy as np


def truncated_from_teacher(teacher_params, teacher_cfg, student_cfg, how: str) -> dict:
    """Student backbone from teacher layers ("first": 1..k, "every_other": 2, 4, ...), as
    DistilBERT initialises its student; needs equal widths."""
    if (teacher_cfg.hidden_size, teacher_cfg.intermediate_size) != (
            student_cfg.hidden_size, student_cfg.intermediate_size):
        raise ValueError(f"student init from teacher layers needs equal widths: teacher "
                         f"{teacher_cfg.hidden_size}/{teacher_cfg.intermediate_size}, student "
                         f"{student_cfg.hidden_size}/{student_cfg.intermediate_size}")
    k = student_cfg.num_hidden_layers
    chosen = {"first": range(k), "every_other": range(1, 2 * k, 2)}.get(how)
    if chosen is None:
        raise ValueError(f"distill.student_init={how!r}; expected random, first, every_other or a folder")
    if max(chosen) >= teacher_cfg.num_hidden_layers:
        raise ValueError(f"teacher has {teacher_cfg.num_hidden_layers} layers; cannot take {how} {k}")
    backbone = dict(teacher_params["backbone"])
    layers = {f"layer_{i}": backbone.pop(f"layer_{t}") for i, t in enumerate(chosen)}
    backbone = {k_: v for k_, v in backbone.items() if not k_.startswith("layer_")}
    return {**{k_: v for k_, v in teacher_params.items() if k_ != "backbone"},
            "backbone": {**backbone, **layers}}


def embeddings_from_teacher(teacher_params, student_params) -> dict:
    """The student's embeddings and heads from the teacher's: every array whose path and shape
    match is copied verbatim (equal widths, MobileBERT from IB-BERT: the whole embedding block
    and the MLM head); at a narrower width the word, position and token-type tables are the
    teacher's projected onto the top principal directions of its word embeddings, which gives a
    narrow student the teacher's lexical geometry from step 0. The rest keeps its own init."""
    t_emb = teacher_params["backbone"]["embeddings"]
    s_emb = student_params["backbone"]["embeddings"]
    words = np.asarray(t_emb["word_embeddings"]["embedding"], np.float32)
    s_words = s_emb["word_embeddings"]["embedding"]
    if s_words.shape[0] != words.shape[0] or s_words.shape[1] > words.shape[1]:
        raise ValueError(f"student_init=teacher_embeddings needs the teacher's vocab and a width "
                         f"<= the teacher's: teacher {words.shape}, student {s_words.shape}")
    copied = _copy_matching(t_emb, s_emb)
    if s_words.shape != words.shape:
        _, _, directions = np.linalg.svd(words - words.mean(0), full_matrices=False)
        basis = directions[:s_words.shape[1]].T  # [teacher width, student width]
        for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            rows = s_emb[table]["embedding"].shape[0]
            copied[table] = {"embedding": np.asarray(t_emb[table]["embedding"],
                                                     np.float32)[:rows] @ basis}
    heads = {k: _copy_matching(teacher_params[k], v) if k in teacher_params else v
             for k, v in student_params.items() if k != "backbone"}
    return {**heads, "backbone": {**student_params["backbone"], "embeddings": copied}}


def _copy_matching(source, target):
    """`target` with each leaf replaced by `source`'s at the same path when the shapes agree."""
    if isinstance(target, dict):
        return {k: _copy_matching(source[k], v) if isinstance(source, dict) and k in source else v
                for k, v in target.items()}
    if np.shape(source) == np.shape(target):
        return np.asarray(source, np.asarray(target).dtype)
    return target

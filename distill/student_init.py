"""The student's initial parameters: from the teacher (DistilBERT's chosen layers, MobileBERT's
variables outside the encoder, the embedding tables), from a folder, or random; and the learned
projections a distillation run carries to the next (TinyBERT's `fit_dense`)."""

from __future__ import annotations

import logging
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np

from flaxbert.params import flatten, unflatten

log = logging.getLogger(__name__)

INITS = ("model", "first", "every_other", "teacher_embeddings", "teacher_outside_encoder")
# Saved next to an export's weights: the projections of its run's terms, by term name
PROJECTIONS_FILE = "distill_projections.npz"


def distilbert_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher layers (0-based) a DistilBERT student of `student_layers` starts from: the
    first and the last and evenly spaced between, round(i·(Lt − 1)/(Ls − 1)) (halves round up),
    which is scripts/extract_distilbert.py's [0, 2, 4, 7, 9, 11] for 6 of 12; [0] for one."""
    if student_layers == 1:
        return [0]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [int(np.floor(i * step + 0.5)) for i in range(student_layers)]


def truncated_from_teacher(teacher_params, teacher_cfg, student_cfg, how: str) -> dict:
    """Student backbone from teacher layers ("first": 1..k, "every_other": `distilbert_layers`),
    everything else (embeddings, heads) the teacher's, as DistilBERT initialises its student;
    needs equal widths."""
    if (teacher_cfg.hidden_size, teacher_cfg.intermediate_size) != (
            student_cfg.hidden_size, student_cfg.intermediate_size):
        raise ValueError(f"student init from teacher layers needs equal widths: teacher "
                         f"{teacher_cfg.hidden_size}/{teacher_cfg.intermediate_size}, student "
                         f"{student_cfg.hidden_size}/{student_cfg.intermediate_size}")
    k, depth = student_cfg.num_hidden_layers, teacher_cfg.num_hidden_layers
    if how not in ("first", "every_other"):
        raise ValueError(f"distill.student_init={how!r}; expected first or every_other")
    if k > depth:
        raise ValueError(f"teacher has {depth} layers; cannot take {how} {k}")
    chosen = range(k) if how == "first" else distilbert_layers(depth, k)
    backbone = dict(teacher_params["backbone"])
    layers = {f"layer_{i}": backbone.pop(f"layer_{t}") for i, t in enumerate(chosen)}
    backbone = {k_: v for k_, v in backbone.items() if not k_.startswith("layer_")}
    return {**{k_: v for k_, v in teacher_params.items() if k_ != "backbone"},
            "backbone": {**backbone, **layers}}


def embeddings_from_teacher(teacher_params, student_params) -> dict:
    """The student's embeddings and heads from the teacher's: every array whose path and shape
    match is copied verbatim; at a narrower width the word, position and token-type tables are
    the teacher's projected onto the top principal directions of its word embeddings, which gives
    a narrow student the teacher's lexical geometry from step 0. The rest keeps its own init."""
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


def outside_encoder_from_teacher(teacher_params, student_params) -> dict:
    """Every student variable outside the encoder layers (embeddings, pooler, MLM and NSP heads)
    replaced by the teacher's at the same path where the shapes agree; the layers keep their own
    init. MobileBERT's run_pretraining.py initialises the student from the IB-BERT teacher's
    checkpoint this way (all of it but `bert/encoder`, which the shapes rule out)."""
    outside = {k: v for k, v in student_params.items() if k != "backbone"}
    outside["backbone"] = {k: v for k, v in student_params["backbone"].items()
                           if not k.startswith("layer_")}
    copied = _copy_matching(teacher_params, outside)
    kept = sorted(name for name, value in flatten(copied).items()
                  if value is flatten(outside)[name])
    if kept:
        log.warning("teacher_outside_encoder: shapes differ, kept the student's own init for %s",
                    kept)
    return {**copied, "backbone": {**student_params["backbone"], **copied["backbone"]}}


def _copy_matching(source, target):
    """`target` with each leaf replaced by `source`'s at the same path when the shapes agree."""
    if isinstance(target, dict):
        return {k: _copy_matching(source[k], v) if isinstance(source, dict) and k in source else v
                for k, v in target.items()}
    if np.shape(source) == np.shape(target):
        return np.asarray(source, np.asarray(target).dtype)
    return target


def student_heads(init: str, needed, teacher_heads) -> tuple[str, ...]:
    """The heads the student is built with: those its terms read, and for
    `teacher_outside_encoder` the teacher's pre-training heads too (carried into the export, so
    pre-training distillation starts from them)."""
    carried = set(teacher_heads) & {"mlm", "nsp"} if init == "teacher_outside_encoder" else set()
    return tuple(h for h in ("mlm", "nsp", "classifier") if h in set(needed) | carried)


def initial_student(init: str, seed: int, student, teacher_model, teacher_params):
    """The student's initial parameters (per-layer layout), `init` one of INITS: model = what
    model.name gives (a preset's random init, or a folder's weights); first / every_other = the
    teacher's layers (truncated_from_teacher) and everything else of the teacher's the student
    has; teacher_embeddings = embeddings_from_teacher; teacher_outside_encoder =
    outside_encoder_from_teacher. `teacher_params` are all the teacher's weights, heads included."""
    if init not in INITS:
        raise ValueError(f"distill.student_init={init!r}; expected model (whatever model.name "
                         f"gives: a preset or a folder), {', '.join(INITS[1:])}")
    if init == "model":
        return student.initial_params
    teacher_params = jax.device_get(teacher_params)
    fresh = nn.unbox(student.init_params(jax.random.PRNGKey(seed)))
    if init in ("first", "every_other"):
        params = truncated_from_teacher(teacher_params, teacher_model.config, student.config, init)
        # the teacher's heads where the student has them, the student's own init otherwise
        return student.layout({k: params.get(k, v) for k, v in fresh.items()})
    if init == "teacher_embeddings":
        return student.layout(embeddings_from_teacher(teacher_params, fresh))
    return student.layout(outside_encoder_from_teacher(teacher_params, fresh))


def save_projections(folder: Path, projections) -> None:
    np.savez(Path(folder) / PROJECTIONS_FILE,
             **{k: np.asarray(v) for k, v in flatten(jax.device_get(projections)).items()})


def carried_projections(model_name: str, initial: dict) -> dict:
    """`initial` (projections by term name) with those a previous run saved in the student's
    folder (`PROJECTIONS_FILE`) where the term name and shapes agree: TinyBERT's task phase
    starts from the general phase's `fit_dense`."""
    path = Path(str(model_name)) / PROJECTIONS_FILE
    if not path.is_file():
        return initial
    with np.load(path) as saved:
        saved = unflatten(dict(saved))
    carried = _copy_matching(saved, initial)
    log.info("projections carried from %s: %s", path,
             sorted(name for name in initial if name in saved))
    return carried

"""`flaxbert convert SRC DST --to {hf,orbax}`: any readable model folder → HF or Orbax layout.

    >>> convert("uncased_L-2_H-128_A-2", "tiny-hf", to="hf")      # a Google TF1 checkpoint
    PosixPath('tiny-hf')

SRC is anything `flaxbert.pretrained.from_pretrained` reads: an HF folder, a google-research
TF1 checkpoint (folder or prefix, with bert_config.json), a TF Hub v1 module or a TF2 SavedModel.

  hf     config.json + model.safetensors (+ vocab.txt): loads in transformers with no missing keys
  orbax  DST/params (an Orbax PyTree checkpoint of the parameter tree), DST/config.json (HF
         layout), DST/flaxbert.json ({"heads": [...], "pooler": bool}) and the tokenizer files
"""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = ("hf", "orbax")


def convert(src: str | Path, dst: str | Path, to: str = "hf", config=None) -> Path:
    """Converts the model at `src` into `dst` (created; must not hold a model already)."""
    from flaxbert.pretrained import from_pretrained, save_pretrained

    if to not in TARGETS:
        raise ValueError(f"--to {to!r}: expected one of {TARGETS}")
    src, dst = Path(src), Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} exists and is not empty; choose a new output folder")
    if config is not None:
        from flaxbert.checkpoints import google

        model, params, tokenizer = google.from_pretrained(src, config=config)
    else:
        model, params, tokenizer = from_pretrained(src)
    if to == "hf":
        return save_pretrained(dst, model, params, tokenizer)
    import jax
    import orbax.checkpoint as ocp

    dst.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(dst.resolve() / "params", jax.device_get(params))
    data = model.config.to_hf_dict()
    (dst / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (dst / "flaxbert.json").write_text(
        json.dumps(
            {"heads": list(model.heads), "pooler": model.pooler, "num_labels": model.num_labels},
            indent=2,
        )
        + "\n"
    )
    if tokenizer is not None:
        tokenizer.save(dst)
    return dst

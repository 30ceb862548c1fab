"""`from_pretrained` / `save_pretrained`: a model folder in, (model, params, tokenizer) out.

    >>> model, params, tokenizer = from_pretrained("path/to/all-MiniLM-L6-v2")
    >>> batch = Preprocessor(tokenizer, seq_length=64)(["a sentence", "another"])
    >>> out = model.apply({"params": params}, **batch)
    >>> out["pooled_output"].shape
    (2, 384)

`path` may also be a Hugging Face hub id, `org/name[@revision]`, read from the local hub cache
with no network (`flaxbert.hub`; an existing local path wins). A folder in HF's layout holds
`config.json`, `model.safetensors` (or `pytorch_model.bin`, read through torch: many hub
repositories of the compact BERTs hold only that) and `vocab.txt` or `tokenizer.json`. Heads
present in the weights are loaded; `heads=` picks a subset or asks for new
ones (a fresh classifier for fine-tuning, say), which are initialised randomly and reported.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from flaxbert import hub
from flaxbert.checkpoints import huggingface as hf
from flaxbert.configs import load_config
from flaxbert.heads import Model
from flaxbert.params import abstract_params, flatten, init_params, unflatten, unstack_layers

log = logging.getLogger(__name__)


class Pretrained(NamedTuple):
    model: Model
    params: dict[str, Any]
    tokenizer: Any


def _head_of(path: str) -> str:
    return path.split("/", 1)[0]


def from_pretrained(path: str | Path, heads: Sequence[str] | None = None, num_labels: int | None = None,
                    *, dtype=jnp.float32, param_dtype=jnp.float32, tokenizer: bool = True,
                    seed: int = 0) -> Pretrained:
    """Loads a model folder (or a cached hub id). `heads=None` keeps the heads the weights have."""
    path = hub.resolve(path)
    is_prefix = Path(f"{path}.index").is_file() or (path.suffix == ".index" and path.is_file())
    if is_prefix or (path.is_dir() and not (path / "config.json").is_file()):
        # Google formats (TF1 checkpoint, TF Hub v1 module, TF2 SavedModel): see checkpoints.google
        from flaxbert.checkpoints import google

        if google.detect_format(path) != "hf":
            return Pretrained(*google.from_pretrained(
                path, heads, num_labels, dtype=dtype, param_dtype=param_dtype, tokenizer=tokenizer,
                seed=seed))
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    config = load_config(path / "config.json")
    tensors = hf.read_weights(path)
    layout = hf.detect_layout(tensors, config.model_type)
    heads = tuple(layout["heads"] if heads is None else heads)
    if num_labels is None:
        id2label = config.extra_dict.get("id2label")
        num_labels = layout["num_labels"] if "classifier" in layout["heads"] else (
            len(id2label) if id2label else 2)
    model = Model(config, heads=heads, num_labels=num_labels, pooler=layout["pooler"],
                  dtype=dtype, param_dtype=param_dtype)
    abstract = flatten(abstract_params(model))
    loaded_heads = {"backbone", *(h for h in heads if h in layout["heads"])}
    # Tensors of heads the caller did not ask for are dropped on purpose; all others must match.
    dropped = set(layout["heads"]) - set(heads)
    keep = {name: t for name, t in tensors.items()
            if not any(name.startswith(_hf_head_prefix(h)) for h in dropped)}
    subset = unflatten({p: s for p, s in abstract.items() if _head_of(p) in loaded_heads})
    params = flatten(hf.params_from_hf(keep, subset, config.model_type, layout["backbone_prefix"],
                                       source=str(path)))
    fresh = sorted(set(heads) - set(layout["heads"]))
    if fresh:
        log.warning("%s: heads %s are not in the weights; initialised randomly (seed %d)",
                    path, fresh, seed)
        params.update(flatten(init_params(model, jax.random.PRNGKey(seed),
                                          keep=lambda name: _head_of(name) in fresh)))
    params = jax.tree_util.tree_map(jnp.asarray, unflatten(params))
    tok = _load_tokenizer(path, config) if tokenizer else None
    return Pretrained(model, params, tok)


def _hf_head_prefix(head: str) -> str:
    return {"mlm": "cls.predictions.", "nsp": "cls.seq_relationship.", "classifier": "classifier.",
            "span": "qa_outputs."}[head]


def _load_tokenizer(path: Path, config):
    from flaxbert.tokenization import load_tokenizer

    tok = load_tokenizer(path)
    if tok.vocab_size != config.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {tok.vocab_size} tokens but the word "
                         f"embeddings have vocab_size={config.vocab_size}; they must agree")
    return tok


def save_pretrained(path: str | Path, model: Model, params, tokenizer=None) -> Path:
    """Writes `config.json`, `model.safetensors` (and the tokenizer) in HF's layout (per-layer
    names, also for a model built with `scan_layers=True`)."""
    if model.scan_layers:
        params = unstack_layers(jax.device_get(params))
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = model.config
    arch = hf.architecture(config.model_type, model.heads)
    data = config.to_hf_dict()
    data["architectures"] = [arch]
    if "classifier" in model.heads:
        id2label = data.get("id2label")
        if not id2label or len(id2label) != model.num_labels:
            data["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_labels)}
            data["label2id"] = {v: int(k) for k, v in data["id2label"].items()}
        if model.num_labels == 1:
            data["problem_type"] = "regression"
    prefix = hf.BACKBONE_PREFIX[config.model_type] if model.heads else ""
    tensors = hf.params_to_hf(jax.device_get(params), config.model_type, prefix)
    hf.write_safetensors(path / "model.safetensors", tensors)
    (path / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save(path)
    return path


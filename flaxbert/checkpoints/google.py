"""Google's own checkpoint formats → flaxbert parameters, without TensorFlow.

    >>> config, heads, params = load_google_checkpoint("uncased_L-2_H-128_A-2")  # bert_model.ckpt
    >>> heads
    ('mlm', 'nsp')

Sources (each read with `flaxbert.checkpoints.tf_bundle`):

  google      google-research/bert and google-research/mobilebert TF1 checkpoints
              (`bert_model.ckpt.index/.data-*` + `bert_config.json`), names `bert/...`, `cls/...`
  tfhub_v1    TF Hub v1 modules (`tfhub_module.pb`, `variables/variables.*`, `assets/vocab.txt`):
              the same names as the TF1 checkpoints (a leading `module/` scope is dropped)
  tf2         TF2 SavedModels / checkpoints of the TF Model Garden's `BertEncoder` (TF Hub
              `bert_en_uncased_L-*/4`), with the `mlm` subobject: variables are found through the
              object graph stored in the bundle and named by their TF names
              (`transformer/layer_0/self_attention/query/kernel`, ...)

Name maps are tables of (regex on our flat parameter path → source name template). TF kernels
are [in, out] like ours, so a tensor only changes by a reshape (attention heads: [H, A·D] →
[H, A, D]) — except NSP's `cls/seq_relationship/output_weights`, stored [2, H] and transposed.

Activation: Google's code computes "gelu" with the tanh approximation (google-research/bert
modeling.py `gelu`; the Model Garden's `tf_utils.get_activation("gelu")` too), while flaxbert and
HF read "gelu" as the exact erf form. Configs loaded here therefore say `hidden_act="gelu_new"`
(the tanh form) so the outputs match TensorFlow's; exporting to HF keeps that meaning.

Loading is strict: every source tensor is either mapped or dropped by an explicit SKIP rule
(optimizer slots, `global_step`, ...); a parameter the model needs that the source lacks, a
source tensor no rule explains, or a shape that cannot be reshaped is an error naming them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flaxbert.checkpoints.tf_bundle import (
    OBJECT_GRAPH_KEY,
    Bundle,
    BundleError,
    read_object_graph,
    resolve_prefix,
)
from flaxbert.configs import config_from_dict, get_config, load_config
from flaxbert.params import abstract_params, flatten, unflatten

log = logging.getLogger(__name__)

FORMATS = ("hf", "google", "tfhub_v1", "tf2")

# Tensors that are not model weights (optimizer state, counters, bookkeeping): dropped on purpose.
SKIP = re.compile(
    r"(^|/)(adam_[mv]|Adam(_\d+)?|Momentum|LAMB(_\d+)?|ExponentialMovingAverage)$"
    r"|^(global_step|beta[12]_power(_\d+)?|save_counter|good_steps|current_loss_scale)$"
    r"|^_CHECKPOINTABLE_OBJECT_GRAPH$|\.OPTIMIZER_SLOT|^optimizer/|^do_lower_case$"
    r"|(^|/)(loss_scale|iterations|learning_rate|decay|beta_[12])$"
)

_LEAF_TF = {"kernel": "kernel", "bias": "bias", "scale": "gamma", "embedding": ""}

# --- BERT --------------------------------------------------------------------------------------------
# (our module path regex, TF1 module name); leaves map through _LEAF_TF.
GOOGLE_BERT = [
    (
        r"backbone/embeddings/(word|position|token_type)_embeddings",
        r"bert/embeddings/\1_embeddings",
    ),
    (r"backbone/embeddings/layer_norm", "bert/embeddings/LayerNorm"),
    (
        r"backbone/layer_(\d+)/attention/(query|key|value)",
        r"bert/encoder/layer_\1/attention/self/\2",
    ),
    (r"backbone/layer_(\d+)/attention_output", r"bert/encoder/layer_\1/attention/output/dense"),
    (r"backbone/layer_(\d+)/attention_norm", r"bert/encoder/layer_\1/attention/output/LayerNorm"),
    (r"backbone/layer_(\d+)/intermediate", r"bert/encoder/layer_\1/intermediate/dense"),
    (r"backbone/layer_(\d+)/output", r"bert/encoder/layer_\1/output/dense"),
    (r"backbone/layer_(\d+)/output_norm", r"bert/encoder/layer_\1/output/LayerNorm"),
    (r"backbone/pooler", "bert/pooler/dense"),
]
GOOGLE_HEADS = [
    (r"mlm/transform", "cls/predictions/transform/dense"),
    (r"mlm/transform_norm", "cls/predictions/transform/LayerNorm"),
]
# Full-path rules (no leaf mapping): (our path, TF name, transpose?)
GOOGLE_DIRECT = {
    "mlm/output_bias": ("cls/predictions/output_bias", False),
    "nsp/kernel": ("cls/seq_relationship/output_weights", True),  # stored [2, H]
    "nsp/bias": ("cls/seq_relationship/output_bias", False),
}

# The TF Model Garden's BertEncoder (TF2 SavedModels on TF Hub) — TF variable names.
TF2_BERT = [
    (r"backbone/embeddings/word_embeddings", "word_embeddings/embeddings"),
    (r"backbone/embeddings/position_embeddings", "position_embedding/embeddings"),
    (r"backbone/embeddings/token_type_embeddings", "type_embeddings/embeddings"),
    (r"backbone/embeddings/layer_norm", "embeddings/layer_norm"),
    (
        r"backbone/layer_(\d+)/attention/(query|key|value)",
        r"transformer/layer_\1/self_attention/\2",
    ),
    (
        r"backbone/layer_(\d+)/attention_output",
        r"transformer/layer_\1/self_attention/attention_output",
    ),
    (r"backbone/layer_(\d+)/attention_norm", r"transformer/layer_\1/self_attention_layer_norm"),
    (r"backbone/layer_(\d+)/intermediate", r"transformer/layer_\1/intermediate"),
    (r"backbone/layer_(\d+)/output", r"transformer/layer_\1/output"),
    (r"backbone/layer_(\d+)/output_norm", r"transformer/layer_\1/output_layer_norm"),
    (r"backbone/pooler", "pooler_transform"),
    (r"mlm/transform", "cls/predictions/transform/dense"),
    (r"mlm/transform_norm", "cls/predictions/transform/LayerNorm"),
]
TF2_DIRECT = {"mlm/output_bias": ("cls/predictions/output_bias/bias", False)}
_TF2_LEAF = {"kernel": "kernel", "bias": "bias", "scale": "gamma", "embedding": ""}

# --- MobileBERT (google-research/mobilebert names) --------------------------------------------------
# Our MobileBERT tree is defined in flaxbert/mobilebert.py; the TF names follow the original
# modeling.py (also read by the TF Model Garden's projects/mobilebert checkpoint converter).
# `{norm}` is FakeLayerNorm for normalization_type=no_norm, else LayerNorm. The first F − 1
# stacked FFNs are `ffn_layer_{j}`; the last is the block's own intermediate/output.
GOOGLE_MOBILEBERT = [
    (r"backbone/embeddings/word_embeddings", "bert/embeddings/word_embeddings"),
    (r"backbone/embeddings/(position|token_type)_embeddings", r"bert/embeddings/\1_embeddings"),
    (r"backbone/embeddings/embedding_transformation", "bert/embeddings/embedding_transformation"),
    (r"backbone/embeddings/norm", "bert/embeddings/{norm}"),
    (r"backbone/layer_(\d+)/bottleneck_input", r"bert/encoder/layer_\1/bottleneck/input/dense"),
    (
        r"backbone/layer_(\d+)/bottleneck_input_norm",
        r"bert/encoder/layer_\1/bottleneck/input/{norm}",
    ),
    (
        r"backbone/layer_(\d+)/bottleneck_attention",
        r"bert/encoder/layer_\1/bottleneck/attention/dense",
    ),
    (
        r"backbone/layer_(\d+)/bottleneck_attention_norm",
        r"bert/encoder/layer_\1/bottleneck/attention/{norm}",
    ),
    (
        r"backbone/layer_(\d+)/attention/(query|key|value)",
        r"bert/encoder/layer_\1/attention/self/\2",
    ),
    (r"backbone/layer_(\d+)/attention_output", r"bert/encoder/layer_\1/attention/output/dense"),
    (r"backbone/layer_(\d+)/attention_norm", r"bert/encoder/layer_\1/attention/output/{norm}"),
    (r"backbone/layer_(\d+)/intermediate", r"bert/encoder/layer_\1/intermediate/dense"),
    (r"backbone/layer_(\d+)/output", r"bert/encoder/layer_\1/output/dense"),
    (r"backbone/layer_(\d+)/output_norm", r"bert/encoder/layer_\1/output/{norm}"),
    (
        r"backbone/layer_(\d+)/ffn_(\d+)_intermediate",
        r"bert/encoder/layer_\1/ffn_layer_\2/intermediate/dense",
    ),
    (r"backbone/layer_(\d+)/ffn_(\d+)_output", r"bert/encoder/layer_\1/ffn_layer_\2/output/dense"),
    (
        r"backbone/layer_(\d+)/ffn_(\d+)_output_norm",
        r"bert/encoder/layer_\1/ffn_layer_\2/output/{norm}",
    ),
    (r"backbone/layer_(\d+)/bottleneck_output", r"bert/encoder/layer_\1/output/bottleneck/dense"),
    (
        r"backbone/layer_(\d+)/bottleneck_output_norm",
        r"bert/encoder/layer_\1/output/bottleneck/{norm}",
    ),
    (r"backbone/pooler", "bert/pooler/dense"),
]
GOOGLE_MOBILEBERT_DIRECT = {
    "mlm/extra_output_weights": ("cls/predictions/extra_output_weights", False),  # [V, H - E]
}


class ConversionError(ValueError):
    """Source tensors and the model's parameters do not correspond."""


# --- format detection --------------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    """'hf', 'google' (TF1 checkpoint), 'tfhub_v1' or 'tf2' (SavedModel / object checkpoint)."""
    path = Path(path)
    if (
        path.is_dir()
        and (path / "model.safetensors").is_file()
        and (path / "config.json").is_file()
    ):
        return "hf"
    if path.is_dir() and (path / "tfhub_module.pb").is_file():
        return "tfhub_v1"
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "tf2"
    try:
        prefix = resolve_prefix(path)
    except BundleError as e:
        raise FileNotFoundError(
            f"{path}: not a model folder flaxbert can read: expected HF (config.json + "
            f"model.safetensors), a TF1 checkpoint (bert_model.ckpt.index + .data-* + "
            f"bert_config.json), a TF Hub v1 module (tfhub_module.pb) or a TF2 SavedModel "
            f"(saved_model.pb + variables/) [{e}]"
        ) from None
    bundle = Bundle(prefix)
    return "tf2" if OBJECT_GRAPH_KEY in bundle else "google"


# --- generic mapping ---------------------------------------------------------------------------------
def _rules_name(path: str, rules, direct, leaf_names, subst: dict[str, str]) -> tuple[str, bool]:
    if path in direct:
        return direct[path]
    module, leaf = path.rsplit("/", 1)
    for pattern, template in rules:
        pattern = pattern.replace("{last}", subst.get("last", "LAST"))
        match = re.fullmatch(pattern, module)
        if match:
            name = match.expand(template)
            for key, value in subst.items():
                name = name.replace("{" + key + "}", value)
            is_norm = re.search(r"(LayerNorm|layer_norm)$", name) is not None
            suffix = {"scale": "gamma", "bias": "beta"}[leaf] if is_norm else leaf_names[leaf]
            return (f"{name}/{suffix}" if suffix else name), False
    raise ConversionError(f"no TF name for parameter {path!r}")


def _convert(
    tensors: dict[str, np.ndarray],
    abstract: dict[str, Any],
    name_of,
    source: str,
    ignore: re.Pattern | None = None,
) -> dict[str, np.ndarray]:
    """Builds our flat params from `tensors` (source name → array), strictly."""
    flat = flatten(abstract)
    params, missing, bad, used = {}, [], [], set()
    for path, spec in flat.items():
        name, transpose = name_of(path)
        if name not in tensors:
            missing.append(f"{name} (for {path})")
            continue
        used.add(name)
        value = np.asarray(tensors[name])
        if transpose:
            value = value.T
        if value.size != int(np.prod(spec.shape)):
            bad.append(
                f"{name}: source has {tuple(np.shape(tensors[name]))}, {path} needs "
                f"{tuple(spec.shape)}"
            )
            continue
        params[path] = np.ascontiguousarray(value.reshape(spec.shape)).astype(spec.dtype)
    unexpected = sorted(
        n
        for n in tensors
        if n not in used and not SKIP.search(n) and not (ignore is not None and ignore.search(n))
    )
    problems = []
    if missing:
        problems.append(f"missing tensors: {missing}")
    if unexpected:
        problems.append(f"tensors no rule maps or skips: {unexpected}")
    if bad:
        problems.append("shape mismatches: " + "; ".join(bad))
    if problems:
        raise ConversionError(
            f"{source}: weights do not match the config:\n  " + "\n  ".join(problems)
        )
    return params


def _model(config, heads, pooler):
    from flaxbert.heads import Model

    return Model(config, heads=tuple(heads), pooler=pooler)


def _resolve_config(config, path: Path, candidates: Sequence[Path]):
    """A config object from: an object, a preset name, a JSON path, or a file beside the weights."""
    if config is None:
        for c in candidates:
            if c.is_file():
                return load_config(c)
        return None
    if isinstance(config, (str, Path)):
        if Path(config).is_file():
            return load_config(config)
        return get_config(str(config))
    if isinstance(config, dict):
        return config_from_dict(config, source=f"config for {path}")
    return config


def google_activation(config):
    """Google's "gelu" is the tanh approximation: name it so (see the module docstring)."""
    if getattr(config, "hidden_act", None) == "gelu":
        return config.replace(hidden_act="gelu_new")
    return config


# --- TF1 (google-research) checkpoints and TF Hub v1 modules ---------------------------------------
def _tf1_names(names: Sequence[str]) -> dict[str, str]:
    """Drops a scope every weight shares (`module/` of hub.Module exports)."""
    weights = [n for n in names if not SKIP.search(n)]
    if weights and all(n.startswith("module/") for n in weights):
        return {n: n[len("module/") :] for n in names}
    return {n: n for n in names}


def _tf1_layout(names, config) -> tuple[tuple[str, ...], bool]:
    heads = []
    if any(n.startswith("cls/predictions/") and not SKIP.search(n) for n in names):
        heads.append("mlm")
    if any(n.startswith("cls/seq_relationship/") and not SKIP.search(n) for n in names):
        heads.append("nsp")
    pooler = any(n.startswith("bert/pooler/") for n in names)
    return tuple(heads), pooler


def _tf1_name_of(config):
    if config.model_type == "bert":
        rules, direct, subst = GOOGLE_BERT + GOOGLE_HEADS, GOOGLE_DIRECT, {}
    elif config.model_type == "mobilebert":
        norm = (
            "FakeLayerNorm"
            if getattr(config, "normalization_type", "") == "no_norm"
            else "LayerNorm"
        )
        rules = GOOGLE_MOBILEBERT + GOOGLE_HEADS
        direct = {**GOOGLE_DIRECT, **GOOGLE_MOBILEBERT_DIRECT}
        subst = {"norm": norm}
    else:
        raise ConversionError(f"no Google name map for model_type={config.model_type!r}")
    return lambda path: _rules_name(path, rules, direct, _LEAF_TF, subst)


def _load_tf1(prefix: Path, config, heads_filter, source: str):
    bundle = Bundle(prefix)
    rename = _tf1_names(list(bundle.variables()))
    tensors = {
        rename[n]: bundle.read(n)
        for n, (dtype, _) in bundle.variables().items()
        if dtype != np.dtype(object) and not SKIP.search(rename[n])
    }
    heads, pooler = _tf1_layout(tensors, config)
    if heads_filter is not None:
        heads = tuple(h for h in heads if h in heads_filter)
    model = _model(config, heads, pooler)
    dropped = _dropped_heads_pattern(heads, tensors)
    params = _convert(tensors, abstract_params(model), _tf1_name_of(config), source, dropped)
    return heads, pooler, unflatten(params)


def _dropped_heads_pattern(heads, tensors) -> re.Pattern | None:
    drop = []
    if "mlm" not in heads:
        drop.append(r"^cls/predictions/")
    if "nsp" not in heads:
        drop.append(r"^cls/seq_relationship/")
    return re.compile("|".join(drop)) if drop else None


def load_google_checkpoint(prefix_or_dir: str | Path, config=None):
    """A google-research BERT / MobileBERT checkpoint → (config, heads, params).

    `prefix_or_dir`: `.../bert_model.ckpt`, its `.index` file, or the folder holding it (and
    `bert_config.json`). `config`: a config object, preset name or JSON path; by default
    `bert_config.json` beside the checkpoint. Heads present in the checkpoint (`cls/predictions`
    → "mlm", `cls/seq_relationship` → "nsp") are loaded; Adam slots and `global_step` are dropped.
    """
    path = Path(prefix_or_dir)
    prefix = resolve_prefix(path)
    folder = path if path.is_dir() else prefix.parent
    config = _resolve_config(config, path, [folder / "bert_config.json", folder / "config.json"])
    if config is None:
        raise FileNotFoundError(
            f"{folder}: no bert_config.json beside the checkpoint; pass "
            f"config= (a config, a preset name or a JSON file)"
        )
    config = google_activation(config)
    heads, _pooler, params = _load_tf1(prefix, config, None, str(prefix) + ".index")
    return config, heads, params


def load_tfhub_module(path: str | Path, config=None):
    """A TF Hub v1 BERT module folder → (config, heads, params). A hub module carries no
    `bert_config.json` and its TF1 kernels do not reveal the head count, so pass `config` (a
    config, a preset name like "bert_uncased_L-12_H-768_A-12", or a JSON file) unless a
    `bert_config.json` sits in the folder or in `assets/`."""
    path = Path(path)
    if not (path / "variables" / "variables.index").is_file():
        raise FileNotFoundError(f"{path}: not a TF Hub module (no variables/variables.index)")
    config = _resolve_config(
        config, path, [path / "bert_config.json", path / "assets" / "bert_config.json"]
    )
    if config is None:
        raise ValueError(
            f"{path}: a TF Hub v1 module does not record its configuration (the "
            f"number of attention heads cannot be read from TF1 kernels); pass "
            f"config= a preset name such as 'bert_uncased_L-12_H-768_A-12' or a "
            f"bert_config.json"
        )
    config = google_activation(config)
    heads, _pooler, params = _load_tf1(
        path / "variables" / "variables", config, None, str(path / "variables" / "variables.index")
    )
    return config, heads, params


# --- TF2 SavedModels / object-based checkpoints -------------------------------------------------------
def _tf2_tensors(bundle: Bundle) -> dict[str, np.ndarray]:
    """{TF variable name: array} through the object graph (full_name, else the graph path)."""
    graph = read_object_graph(bundle)
    out = {}
    for key, info in graph.items():
        if key not in bundle or SKIP.search(key) or SKIP.search(info["path"]):
            continue
        name = info["full_name"] or info["path"]
        name = re.sub(r"^bert/(?=cls/)", "", name)  # the Model Garden scopes its MLM as bert/cls
        if name in out:
            raise ConversionError(f"{bundle.index_path}: two variables are named {name!r}")
        out[name] = bundle.read(key)
    return out


def _infer_tf2_config(tensors: dict[str, np.ndarray], source: str):
    from flaxbert.configs import BertConfig

    try:
        vocab, hidden = tensors["word_embeddings/embeddings"].shape
        layers = len(
            {m.group(1) for n in tensors if (m := re.match(r"transformer/layer_(\d+)/", n))}
        )
        _, heads, _ = tensors["transformer/layer_0/self_attention/query/kernel"].shape
        inner = tensors["transformer/layer_0/intermediate/kernel"].shape[1]
        positions = tensors["position_embedding/embeddings"].shape[0]
        types = tensors["type_embeddings/embeddings"].shape[0]
    except KeyError as e:
        raise ConversionError(
            f"{source}: not a Model Garden BertEncoder (no {e}); pass config="
        ) from None
    return BertConfig(
        vocab_size=int(vocab),
        hidden_size=int(hidden),
        num_hidden_layers=layers,
        num_attention_heads=int(heads),
        intermediate_size=int(inner),
        max_position_embeddings=int(positions),
        type_vocab_size=int(types),
    )


def load_tf2_savedmodel(path: str | Path, config=None):
    """A TF2 SavedModel (or object-based checkpoint) of the Model Garden's BertEncoder, with its
    `mlm` subobject when exported `with_mlm` → (config, heads, params). Without `config`, it is
    read from the shapes (hidden_act "gelu", as the TF Hub BERT encoders)."""
    path = Path(path)
    prefix = resolve_prefix(path)
    bundle = Bundle(prefix)
    source = str(bundle.index_path)
    tensors = _tf2_tensors(bundle)
    config = _resolve_config(config, path, [path / "bert_config.json"] if path.is_dir() else [])
    if config is None:
        config = _infer_tf2_config(tensors, source)
    config = google_activation(config)
    if config.model_type != "bert":
        raise ConversionError(
            f"{source}: TF2 SavedModels are read for BERT only, not {config.model_type}"
        )
    heads = ("mlm",) if any(n.startswith("cls/predictions/") for n in tensors) else ()
    pooler = "pooler_transform/kernel" in tensors
    model = _model(config, heads, pooler)

    def name_of(p):
        return _rules_name(p, TF2_BERT, TF2_DIRECT, _TF2_LEAF, {})

    params = _convert(
        tensors, abstract_params(model), name_of, source, _dropped_heads_pattern(heads, tensors)
    )
    return config, heads, unflatten(params)


def tf2_do_lower_case(path: Path) -> bool | None:
    """The `do_lower_case` variable a TF Hub BERT SavedModel stores, if any."""
    try:
        bundle = Bundle(resolve_prefix(path))
        graph = read_object_graph(bundle)
    except (BundleError, FileNotFoundError):
        return None
    for key, info in graph.items():
        if info["path"] == "do_lower_case" and key in bundle:
            return bool(bundle.read(key))
    return None


# --- from_pretrained for these formats ---------------------------------------------------------------
def load(path: str | Path, config=None, fmt: str | None = None):
    """Any Google format → (config, heads, pooler, params, vocab folder)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "google":
        config, heads, params = load_google_checkpoint(path, config)
        vocab = path if path.is_dir() else resolve_prefix(path).parent
    elif fmt == "tfhub_v1":
        config, heads, params = load_tfhub_module(path, config)
        vocab = path / "assets"
    elif fmt == "tf2":
        config, heads, params = load_tf2_savedmodel(path, config)
        vocab = path / "assets" if (path / "assets").is_dir() else path
    else:
        raise ValueError(
            f"{path}: format {fmt!r} is not a Google format; expected one of {FORMATS[1:]}"
        )
    pooler = "pooler" in params.get("backbone", {})
    return config, heads, pooler, params, vocab, fmt


def from_pretrained(
    path: str | Path,
    heads=None,
    num_labels: int | None = None,
    *,
    config=None,
    dtype=None,
    param_dtype=None,
    tokenizer: bool = True,
    seed: int = 0,
):
    """`flaxbert.pretrained.from_pretrained`'s work for Google formats: (model, params, tokenizer)."""
    import jax
    import jax.numpy as jnp

    from flaxbert.heads import Model
    from flaxbert.params import init_params

    path = Path(path)
    config, have, pooler, params, vocab_dir, fmt = load(path, config)
    heads = tuple(have if heads is None else heads)
    model = Model(
        config,
        heads=heads,
        num_labels=2 if num_labels is None else num_labels,
        pooler=pooler,
        dtype=dtype or jnp.float32,
        param_dtype=param_dtype or jnp.float32,
    )
    flat = {p: v for p, v in flatten(params).items() if p.split("/", 1)[0] in {"backbone", *heads}}
    fresh = sorted(set(heads) - set(have))
    if fresh:
        log.warning(
            "%s: heads %s are not in the weights; initialised randomly (seed %d)", path, fresh, seed
        )
        random = flatten(init_params(model, jax.random.PRNGKey(seed)))
        flat.update({p: v for p, v in random.items() if p.split("/", 1)[0] in fresh})
    pdt = param_dtype or jnp.float32
    tree = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=pdt), unflatten(flat))
    tok = None
    if tokenizer:
        tok = _tokenizer(vocab_dir, config, path, fmt)
    return model, tree, tok


def _tokenizer(vocab_dir: Path, config, path: Path, fmt: str):
    from flaxbert.tokenization import load_tokenizer

    vocab = vocab_dir / "vocab.txt"
    if not vocab.is_file():
        raise FileNotFoundError(
            f"{path}: no vocab.txt (looked in {vocab_dir}); a {fmt} model "
            f"needs its WordPiece vocabulary (pass tokenizer=False to skip)"
        )
    lowercase = tf2_do_lower_case(path) if fmt == "tf2" else None
    tok = load_tokenizer(vocab, lowercase=lowercase)
    if tok.vocab_size != config.vocab_size:
        raise ValueError(
            f"{vocab}: the tokenizer has {tok.vocab_size} tokens but the word "
            f"embeddings have vocab_size={config.vocab_size}; they must agree"
        )
    return tok

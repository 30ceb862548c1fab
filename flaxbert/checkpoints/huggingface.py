"""HF transformers' safetensors layout, both ways.

Our parameter paths map to HF names through one table of regex rules per model family
(`HF_RULES[model_type]`). A PyTorch `nn.Linear` stores `weight` as [out, in]; our kernels are
[in..., out...] (attention kernels keep their head axis: query [H, A, D], output [A, D, H]), so a
kernel converts as `W.T` reshaped, and back as "flatten the input axes, transpose".

Loading is strict: a parameter the model needs that the file lacks, a tensor the file has that
the model does not use, or a shape that disagrees is an error naming the tensors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from flaxbert.params import flatten, unflatten

# (our path regex, HF name template with {bb} for the backbone prefix). The leaf (kernel, bias,
# scale, embedding) is mapped separately by LEAF_NAMES.
BERT_RULES = [
    (r"backbone/embeddings/(word|position|token_type)_embeddings", r"{bb}embeddings.\1_embeddings"),
    (r"backbone/embeddings/layer_norm", "{bb}embeddings.LayerNorm"),
    (r"backbone/layer_(\d+)/attention/(query|key|value)", r"{bb}encoder.layer.\1.attention.self.\2"),
    (r"backbone/layer_(\d+)/attention_output", r"{bb}encoder.layer.\1.attention.output.dense"),
    (r"backbone/layer_(\d+)/attention_norm", r"{bb}encoder.layer.\1.attention.output.LayerNorm"),
    (r"backbone/layer_(\d+)/intermediate", r"{bb}encoder.layer.\1.intermediate.dense"),
    (r"backbone/layer_(\d+)/output", r"{bb}encoder.layer.\1.output.dense"),
    (r"backbone/layer_(\d+)/output_norm", r"{bb}encoder.layer.\1.output.LayerNorm"),
    (r"backbone/pooler", "{bb}pooler.dense"),
]
HEAD_RULES = [
    (r"mlm/transform", "cls.predictions.transform.dense"),
    (r"mlm/transform_norm", "cls.predictions.transform.LayerNorm"),
    (r"nsp", "cls.seq_relationship"),
    (r"classifier", "classifier"),
    (r"span", "qa_outputs"),
]
_MB = r"backbone/layer_(\d+)/"
_MB_HF = r"{bb}encoder.layer.\1."
MOBILEBERT_RULES = [
    (r"backbone/embeddings/(word|position|token_type)_embeddings", r"{bb}embeddings.\1_embeddings"),
    (r"backbone/embeddings/embedding_transformation", "{bb}embeddings.embedding_transformation"),
    (r"backbone/embeddings/norm", "{bb}embeddings.LayerNorm"),
    (_MB + r"bottleneck_(input|attention)", _MB_HF + r"bottleneck.\2.dense"),
    (_MB + r"bottleneck_(input|attention)_norm", _MB_HF + r"bottleneck.\2.LayerNorm"),
    (_MB + r"attention/(query|key|value)", _MB_HF + r"attention.self.\2"),
    (_MB + r"attention_output", _MB_HF + "attention.output.dense"),
    (_MB + r"attention_norm", _MB_HF + "attention.output.LayerNorm"),
    (_MB + r"ffn_(\d+)_intermediate", _MB_HF + r"ffn.\2.intermediate.dense"),
    (_MB + r"ffn_(\d+)_output", _MB_HF + r"ffn.\2.output.dense"),
    (_MB + r"ffn_(\d+)_output_norm", _MB_HF + r"ffn.\2.output.LayerNorm"),
    (_MB + r"intermediate", _MB_HF + "intermediate.dense"),
    (_MB + r"output", _MB_HF + "output.dense"),
    (_MB + r"output_norm", _MB_HF + "output.LayerNorm"),
    (_MB + r"bottleneck_output", _MB_HF + "output.bottleneck.dense"),
    (_MB + r"bottleneck_output_norm", _MB_HF + "output.bottleneck.LayerNorm"),
    (r"backbone/pooler", "{bb}pooler.dense"),
]
HF_RULES: dict[str, list[tuple[str, str]]] = {"bert": BERT_RULES + HEAD_RULES,
                                              "mobilebert": MOBILEBERT_RULES + HEAD_RULES}
BACKBONE_PREFIX = {"bert": "bert.", "mobilebert": "mobilebert."}
LEAF_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight"}
# Parameters that sit directly on a module (not in a Dense/LayerNorm/Embed), by full path.
DIRECT_NAMES = {"mlm/output_bias": "cls.predictions.bias",
                "mlm/extra_output_weights": "cls.predictions.dense.weight"}
# Direct parameters stored transposed by HF (an nn.Linear(vocab, H - E) weight).
TRANSPOSED = {"mlm/extra_output_weights"}
# Kernels whose input side spans two of our axes (heads × head_dim).
TWO_AXIS_INPUT = re.compile(r"attention_output/kernel$")

# HF tensors that carry no information of their own: buffers, and the MLM decoder tied to the
# word embeddings / output bias (older checkpoints store them).
IGNORED = re.compile(r"(^|\.)position_ids$|^cls\.predictions\.decoder\.(weight|bias)$")

HF_ARCHITECTURES = {
    # (family, frozenset(heads)) -> HF class name written to config.json
    ("bert", frozenset()): "BertModel",
    ("bert", frozenset({"mlm", "nsp"})): "BertForPreTraining",
    ("bert", frozenset({"mlm"})): "BertForMaskedLM",
    ("bert", frozenset({"classifier"})): "BertForSequenceClassification",
    ("bert", frozenset({"span"})): "BertForQuestionAnswering",
    ("bert", frozenset({"nsp"})): "BertForNextSentencePrediction",
    ("mobilebert", frozenset()): "MobileBertModel",
    ("mobilebert", frozenset({"mlm", "nsp"})): "MobileBertForPreTraining",
    ("mobilebert", frozenset({"mlm"})): "MobileBertForMaskedLM",
    ("mobilebert", frozenset({"classifier"})): "MobileBertForSequenceClassification",
    ("mobilebert", frozenset({"span"})): "MobileBertForQuestionAnswering",
    ("mobilebert", frozenset({"nsp"})): "MobileBertForNextSentencePrediction",
}


def hf_name(model_type: str, path: str, backbone_prefix: str) -> str:
    """Our flat path ('backbone/layer_0/attention/query/kernel') → the HF tensor name."""
    if path in DIRECT_NAMES:
        return DIRECT_NAMES[path]
    module, leaf = path.rsplit("/", 1)
    for pattern, template in HF_RULES[model_type]:
        match = re.fullmatch(pattern, module)
        if match:
            return match.expand(template.replace("{bb}", backbone_prefix)) + "." + LEAF_NAMES[leaf]
    raise KeyError(f"no HF name for parameter {path!r} of a {model_type} model")


def to_hf_tensor(path: str, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value, dtype=np.float32)
    if path.endswith("/kernel") or path in TRANSPOSED:
        n_in = 2 if TWO_AXIS_INPUT.search(path) else 1
        return np.ascontiguousarray(value.reshape(int(np.prod(value.shape[:n_in])), -1).T)
    if path.endswith(("/bias", "/scale")):  # per-head biases [A, D] are flat [A·D] in HF
        return value.reshape(-1)
    return np.ascontiguousarray(value)


def from_hf_tensor(path: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if path.endswith("/kernel") or path in TRANSPOSED:
        value = value.T
    if int(np.prod(value.shape)) != int(np.prod(shape)):
        raise ValueError(f"shape {value.shape} cannot become {shape}")
    return np.ascontiguousarray(value.reshape(shape))


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as float32 numpy arrays (bf16/fp16 upcast)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {name: np.asarray(f.get_tensor(name), dtype=np.float32) for name in f.keys()}
    except (SafetensorError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); is it truncated?") from None
    except TypeError:  # numpy has no bfloat16: read through torch-free ml_dtypes via flax
        with safe_open(str(path), framework="flax") as f:
            return {name: np.asarray(f.get_tensor(name), dtype=np.float32) for name in f.keys()}


def read_pytorch_bin(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a PyTorch `pytorch_model.bin` as float32 numpy arrays, read by torch itself
    (`weights_only`: tensors only, no code runs). Many hub repositories of the compact BERTs
    (google/bert_uncased_L-*, prajjwal1/bert-*) hold only this file."""
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path}: a PyTorch weights file; reading it needs torch (pip install "
                         "torch), or save the model as safetensors with transformers first") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"{path}: not a readable PyTorch weights file ({e})") from None
    return {name: t.float().numpy() for name, t in state.items() if hasattr(t, "float")}


def read_weights(folder: str | Path) -> dict[str, np.ndarray]:
    """The weights of a folder in HF's layout: `model.safetensors`, else `pytorch_model.bin`."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return read_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return read_pytorch_bin(folder / "pytorch_model.bin")
    raise FileNotFoundError(f"{folder} has neither model.safetensors nor pytorch_model.bin")


def detect_layout(tensors: dict[str, Any], model_type: str) -> dict[str, Any]:
    """Which heads, backbone prefix, pooler and label count an HF state dict implies."""
    prefix = BACKBONE_PREFIX[model_type]
    has_prefix = any(name.startswith(prefix) for name in tensors)
    bb = prefix if has_prefix else ""
    heads = []
    if any(n.startswith("cls.predictions.") for n in tensors):
        heads.append("mlm")
    if any(n.startswith("cls.seq_relationship.") for n in tensors):
        heads.append("nsp")
    if "classifier.weight" in tensors:
        heads.append("classifier")
    if "qa_outputs.weight" in tensors:
        heads.append("span")
    num_labels = tensors["classifier.weight"].shape[0] if "classifier.weight" in tensors else 2
    return {"backbone_prefix": bb, "heads": tuple(heads), "num_labels": int(num_labels),
            "pooler": any(n.startswith(f"{bb}pooler.") for n in tensors)}


def params_from_hf(tensors: dict[str, np.ndarray], abstract: dict[str, Any], model_type: str,
                   backbone_prefix: str, source: str = "state dict") -> dict[str, Any]:
    """Builds our param pytree (shapes from `abstract`) from an HF state dict, strictly."""
    flat = flatten(abstract)
    params, missing, bad_shapes, used = {}, [], [], set()
    for path, spec in flat.items():
        name = hf_name(model_type, path, backbone_prefix)
        if name not in tensors:
            missing.append(name)
            continue
        used.add(name)
        try:
            params[path] = from_hf_tensor(path, tensors[name], tuple(spec.shape)).astype(spec.dtype)
        except ValueError:
            bad_shapes.append(f"{name}: file has {tuple(tensors[name].shape)}, model needs "
                              f"{tuple(to_hf_tensor(path, np.zeros(spec.shape)).shape)}")
    unexpected = sorted(n for n in tensors if n not in used and not IGNORED.search(n))
    problems = []
    if missing:
        problems.append(f"missing tensors: {missing}")
    if unexpected:
        problems.append(f"unexpected tensors (not used by the model): {unexpected}")
    if bad_shapes:
        problems.append("shape mismatches: " + "; ".join(bad_shapes))
    if problems:
        raise ValueError(f"{source}: weights do not match the config:\n  " + "\n  ".join(problems))
    _check_tied_decoder(tensors, params, backbone_prefix, source)
    return unflatten(params)


def _check_tied_decoder(tensors, params, bb, source):
    """An untied MLM decoder cannot be represented: refuse it instead of silently tying."""
    decoder = tensors.get("cls.predictions.decoder.weight")
    words = params.get("backbone/embeddings/word_embeddings/embedding")
    if decoder is not None and words is not None and not np.allclose(decoder, words):
        raise ValueError(f"{source}: cls.predictions.decoder.weight differs from "
                         f"{bb}embeddings.word_embeddings.weight; flaxbert ties them as BERT does")


def params_to_hf(params: dict[str, Any], model_type: str, backbone_prefix: str) -> dict[str, np.ndarray]:
    return {hf_name(model_type, path, backbone_prefix): to_hf_tensor(path, np.asarray(value))
            for path, value in flatten(params).items()}


def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray]) -> None:
    save_file(tensors, str(path), metadata={"format": "pt"})


def architecture(model_type: str, heads) -> str:
    key = (model_type, frozenset(heads))
    if key not in HF_ARCHITECTURES:
        raise ValueError(f"no HF architecture for a {model_type} model with heads {sorted(heads)}; "
                         f"supported: {[sorted(h) for (t, h) in HF_ARCHITECTURES if t == model_type]}")
    return HF_ARCHITECTURES[key]

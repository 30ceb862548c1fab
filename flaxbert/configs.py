"""Model configurations: BERT's `bert_config.json` / HF `config.json`, and the named presets.

A config is a frozen dataclass: hashable, so it can sit on a Flax module as a static field.
`from_dict` reads both Google's and HF's JSON layouts; `to_google_dict` / `to_hf_dict` write them.
Keys a format carries that do not change the network (HF's `architectures`, `torch_dtype`, Google's
`pooler_fc_size`, ...) are kept in `extra` and written back, so a round trip loses nothing.

    >>> cfg = get_config("bert_uncased_L-4_H-256_A-4")      # or "mini"
    >>> cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim
    (256, 4, 64)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "relu6", "silu", "swish", "tanh")

# HF keys with a fixed meaning we only accept at one value: anything else is a different network.
_REQUIRED_VALUES = {
    "position_embedding_type": "absolute",
    "is_decoder": False,
    "add_cross_attention": False,
}


def _check_positive(name: str, value: Any, source: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{source}: `{name}` must be a positive integer, got {value!r}")


def _check_probability(name: str, value: Any, source: str) -> None:
    if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
        raise ValueError(f"{source}: `{name}` must be a probability in [0, 1), got {value!r}")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of Google's `bert_config.json` plus HF's `BertConfig` (defaults: BERT-Base)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None
    # Format-specific keys that do not change the network, as (key, json-encoded value) pairs
    # so that the config stays hashable.
    extra: tuple[tuple[str, str], ...] = ()

    model_type = "bert"

    def __post_init__(self):
        self.validate()

    def validate(self, source: str = "BertConfig") -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            _check_positive(name, getattr(self, name), source)
        if self.true_hidden_size % self.num_attention_heads:
            width = ("hidden_size" if self.true_hidden_size == self.hidden_size
                     else "the attention width (intra_bottleneck_size)")
            raise ValueError(
                f"{source}: {width}={self.true_hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"{source}: hidden_act={self.hidden_act!r}; expected one of {ACTIVATIONS}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            _check_probability(name, getattr(self, name), source)

    @staticmethod
    def matches_google(data: dict[str, Any]) -> bool:
        """Whether a Google config (no `model_type`) describes this family."""
        return "intra_bottleneck_size" not in data

    @property
    def true_hidden_size(self) -> int:
        """The width attention runs at (MobileBERT narrows it with bottlenecks)."""
        return self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.true_hidden_size // self.num_attention_heads

    @property
    def extra_dict(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.extra}

    def replace(self, **changes) -> "BertConfig":
        return dataclasses.replace(self, **changes)

    # --- JSON in/out -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "BertConfig":
        """Reads Google's `bert_config.json` or HF's `config.json` (unknown keys kept in `extra`)."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known, extra = {}, {}
        for key, value in data.items():
            if key in _REQUIRED_VALUES:
                if value != _REQUIRED_VALUES[key]:
                    raise ValueError(f"{source}: `{key}`={value!r} is not supported by flaxbert "
                                     f"(expected {_REQUIRED_VALUES[key]!r})")
            elif key in names:
                known[key] = value
            elif key == "model_type" and value != cls.model_type:
                raise ValueError(f"{source}: model_type={value!r}, expected {cls.model_type!r}")
            elif key != "model_type":
                extra[key] = value
        missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers",
                               "num_attention_heads", "intermediate_size") if n not in known]
        if missing:
            raise ValueError(f"{source}: missing required field(s) {missing}")
        try:
            config = cls(**known, extra=tuple(sorted((k, json.dumps(v)) for k, v in extra.items())))
        except ValueError as e:  # re-raise with the file named
            raise ValueError(str(e).replace(cls.__name__, source, 1)) from None
        return config

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        return cls.from_dict(read_json_object(path), source=str(path))

    def _network_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}

    def to_google_dict(self) -> dict[str, Any]:
        """Google's `bert_config.json` layout: the original eleven keys (+ extras it carried)."""
        google_keys = ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
                       "hidden_size", "initializer_range", "intermediate_size",
                       "max_position_embeddings", "num_attention_heads", "num_hidden_layers",
                       "type_vocab_size", "vocab_size")
        out = {k: getattr(self, k) for k in google_keys}
        out.update({k: v for k, v in self.extra_dict.items() if k.startswith(("pooler_", "direction"))})
        return out

    def to_hf_dict(self) -> dict[str, Any]:
        """HF's `config.json` layout (transformers' `BertConfig`)."""
        out = dict(self.extra_dict)
        out.update(self._network_fields())
        out.update(model_type=self.model_type, position_embedding_type="absolute")
        return dict(sorted(out.items()))

    def to_json_file(self, path: str | Path, layout: str = "hf") -> None:
        if layout not in ("hf", "google"):
            raise ValueError(f"layout={layout!r}; expected 'hf' or 'google'")
        data = self.to_hf_dict() if layout == "hf" else self.to_google_dict()
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


# --- Presets -------------------------------------------------------------------------------------
COMPACT_LAYERS = (2, 4, 6, 8, 10, 12)
COMPACT_WIDTHS = (128, 256, 512, 768)


def _bert(layers: int, hidden: int, heads: int | None = None, vocab: int = 30522, **kw) -> BertConfig:
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads or hidden // 64, intermediate_size=4 * hidden, **kw)


PRESETS: dict[str, Any] = {}
# The 24 compact models of Turc et al. 2019 (uncased, WordPiece vocab 30522, A = H/64, FFN = 4H).
for _l in COMPACT_LAYERS:
    for _h in COMPACT_WIDTHS:
        PRESETS[f"bert_uncased_L-{_l}_H-{_h}_A-{_h // 64}"] = _bert(_l, _h)
PRESETS.update({
    "bert_base_uncased": _bert(12, 768),
    "bert_base_cased": _bert(12, 768, vocab=28996),
    "bert_large_uncased": _bert(24, 1024, heads=16),
    "bert_large_cased": _bert(24, 1024, heads=16, vocab=28996),
    "bert_base_chinese": _bert(12, 768, vocab=21128),
    "bert_base_multilingual_cased": _bert(12, 768, vocab=119547),
})
ALIASES = {
    "tiny": "bert_uncased_L-2_H-128_A-2",
    "mini": "bert_uncased_L-4_H-256_A-4",
    "small": "bert_uncased_L-4_H-512_A-8",
    "medium": "bert_uncased_L-8_H-512_A-8",
    "base": "bert_base_uncased",
    "large": "bert_large_uncased",
}
for _alias, _name in list(ALIASES.items()):
    ALIASES[f"bert_{_alias}"] = _name


def register_preset(name: str, config: Any) -> None:
    """Adds a named preset (model families other than BERT register theirs on import)."""
    PRESETS[name] = config


def preset_names() -> list[str]:
    return sorted(PRESETS) + sorted(ALIASES)


def get_config(name: str) -> Any:
    """A preset by name or alias (`tiny`, `bert_uncased_L-4_H-256_A-4`, `bert_base_cased`, ...)."""
    key = ALIASES.get(name, name)
    if key in PRESETS:
        return PRESETS[key]
    close = difflib.get_close_matches(name, preset_names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown model preset {name!r}{hint} "
                     f"(see flaxbert.configs.preset_names() for all {len(preset_names())})")


def config_from_dict(data: dict[str, Any], source: str = "config") -> Any:
    """Dispatches on `model_type` (HF) or on MobileBERT's own keys (Google) to the right class."""
    model_type = data.get("model_type")
    for cls in CONFIG_CLASSES:
        if model_type == cls.model_type or (model_type is None and cls.matches_google(data)):
            return cls.from_dict(data, source=source)
    raise ValueError(f"{source}: model_type={model_type!r} is not supported; expected one of "
                     f"{[c.model_type for c in CONFIG_CLASSES]}")


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A config file's JSON object, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def load_config(path: str | Path) -> Any:
    """Reads a `config.json` / `bert_config.json` of any supported family."""
    return config_from_dict(read_json_object(path), source=str(path))


# Families register here (flaxbert.mobilebert appends MobileBertConfig on import).
CONFIG_CLASSES: list[type] = [BertConfig]

"""The model a config's `model` block names, ready to train: a preset (random init), a
`config.json`, or a weights folder `from_pretrained` reads (a Hugging Face hub id `org/name` is
read from the local hub cache: `flaxbert.hub`) — with its training layout (scan,
remat), compute dtype and logical axis names."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxbert import hub
from flaxbert.configs import get_config, load_config
from flaxbert.heads import Model
from flaxbert.params import dummy_inputs, logical_axes, stack_layers
from flaxbert.pretrained import from_pretrained

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[name]


class ModelSpec:
    """The model a `config.model` block names: a preset (random init), a `config.json`, or a
    folder `from_pretrained` reads, or a hub id in the local Hugging Face cache (weights loaded).
    Heads requested but absent start random."""

    def __init__(self, model_cfg, heads: Sequence[str], num_labels: int = 2, vocab_size=None):
        self.heads, self.num_labels = tuple(heads), num_labels
        compute = dtype(model_cfg.get("dtype", "float32"))
        name = model_cfg.name
        self.initial_params = None
        self.tokenizer = None
        overrides = dict(model_cfg.get("overrides", {}) or {})
        folder = hub.resolve(name)
        if folder.is_dir():
            loaded = from_pretrained(folder, heads=self.heads, num_labels=num_labels, dtype=compute,
                                     tokenizer=True)
            self.model, self.initial_params, self.tokenizer = loaded
            self.config = self.model.config.replace(**_dropout_overrides(name, self.model.config,
                                                                         overrides))
            self.model = self.model.clone(config=self.config)
        else:
            config = load_config(name) if name.endswith(".json") else get_config(name)
            if vocab_size is not None and config.vocab_size != vocab_size:
                overrides.setdefault("vocab_size", vocab_size)
            self.config = config.replace(**overrides) if overrides else config
            self.model = Model(self.config, heads=self.heads, num_labels=num_labels, dtype=compute)
        # training-time layout / memory knobs: the parameters keep their values
        self.scan = bool(model_cfg.get("scan_layers", False))
        self.model = self.model.clone(remat_policy=model_cfg.get("remat_policy", "none"),
                                      scan_layers=self.scan)
        self.initial_params = self.layout(self.initial_params)

    def layout(self, params):
        """Per-layer parameters (as checkpoints hold them) in this model's layout."""
        return stack_layers(params) if self.scan and params is not None else params

    def init_params(self, rng):
        """Boxed (logically partitioned) random parameters."""
        return self.model.init(rng, **dummy_inputs(self.model))["params"]

    def axes(self):
        return logical_axes(self.model)

    def boxed(self, params):
        """Loaded arrays wrapped with the model's logical axis names."""
        return box(params, self.axes())


DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


def _dropout_overrides(folder: str, config, overrides: dict) -> dict:
    """The overrides a loaded model can take: dropout rates. Anything else must equal the
    checkpoint's value — its weights fix the architecture, and ignoring the request would train
    a different model than the config says."""
    differ = {key: value for key, value in overrides.items()
              if key not in DROPOUT_FIELDS and getattr(config, key, None) != value}
    if differ:
        there = ", ".join(f"{key}={getattr(config, key, None)!r} there, {value!r} asked"
                          for key, value in differ.items())
        raise ValueError(f"config.model.overrides: model.name={folder} is a weights folder, whose "
                         f"architecture is fixed ({there}); only {', '.join(DROPOUT_FIELDS)} may "
                         "be overridden — drop the others or start from a preset name")
    return {key: value for key, value in overrides.items() if key in DROPOUT_FIELDS}


def check_model_overrides(model_cfg) -> None:
    """`_dropout_overrides`' check before anything is built or written, for a weights folder in
    the HF layout (its config.json is cheap to read; other formats are checked as they load)."""
    folder = hub.resolve(str(model_cfg.get("name", "")))
    overrides = dict(model_cfg.get("overrides", {}) or {})
    if overrides and (folder / "config.json").is_file():
        _dropout_overrides(str(folder), load_config(folder / "config.json"), overrides)


def box(params, specs):
    return jax.tree_util.tree_map(
        lambda x, spec: nn.LogicallyPartitioned(x, tuple(spec)), params, specs,
        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))

"""What the task programs share: resolving the model a config names, the run folder, plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import flax.linen as nn

from flaxbert.configs import get_config, load_config
from flaxbert.heads import Model
from flaxbert.params import dummy_inputs, logical_axes, stack_layers
from flaxbert.pretrained import from_pretrained

log = logging.getLogger(__name__)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[name]


class ModelSpec:
    """The model a `config.model` block names: a preset (random init), a `config.json`, or a
    folder `from_pretrained` reads (weights loaded). Heads requested but absent start random."""

    def __init__(self, model_cfg, heads: Sequence[str], num_labels: int = 2, vocab_size=None):
        self.heads, self.num_labels = tuple(heads), num_labels
        compute = dtype(model_cfg.get("dtype", "float32"))
        name = model_cfg.name
        self.initial_params = None
        self.tokenizer = None
        if Path(name).is_dir():
            loaded = from_pretrained(name, heads=self.heads, num_labels=num_labels, dtype=compute,
                                     tokenizer=True)
            self.model, self.initial_params, self.tokenizer = loaded
            self.config = self.model.config
        else:
            config = load_config(name) if name.endswith(".json") else get_config(name)
            overrides = dict(model_cfg.get("overrides", {}) or {})
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


def box(params, specs):
    return jax.tree_util.tree_map(
        lambda x, spec: nn.LogicallyPartitioned(x, tuple(spec)), params, specs,
        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))


def prepare_workdir(workdir: str | Path, config: ml_collections.ConfigDict) -> Path:
    """Creates the run folder and keeps a copy of the config (the first run's, on resume)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    saved = workdir / "config.json"
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if saved.exists() and saved.read_text() != text:
        log.warning("%s differs from the config of this run; resuming with the new config", saved)
    saved.write_text(text)
    return workdir


def plot_curves(workdir: str | Path, keys: Sequence[str], filename: str = "curves.png") -> Path | None:
    """A PNG with one panel per metric in `keys`, read from metrics.jsonl (process 0 only)."""
    from distill.trainer import read_metrics

    if jax.process_index() != 0:
        return None
    rows = read_metrics(workdir)
    series = {k: [(r["step"], r[k]) for r in rows if k in r] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (name, points) in zip(axes[0], series.items()):
        steps, values = zip(*points)
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(workdir) / filename
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"{type(x)} is not JSON serialisable")

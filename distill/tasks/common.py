"""What the task programs share: resolving the model a config names, the run folder, plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from etils import epath

from distill.files import as_path, atomic_output, write_json, write_text  # noqa: F401 (re-exported)
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
        overrides = dict(model_cfg.get("overrides", {}) or {})
        if Path(name).is_dir():
            loaded = from_pretrained(name, heads=self.heads, num_labels=num_labels, dtype=compute,
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
    folder = Path(str(model_cfg.get("name", "")))
    overrides = dict(model_cfg.get("overrides", {}) or {})
    if overrides and (folder / "config.json").is_file():
        _dropout_overrides(str(folder), load_config(folder / "config.json"), overrides)


def box(params, specs):
    return jax.tree_util.tree_map(
        lambda x, spec: nn.LogicallyPartitioned(x, tuple(spec)), params, specs,
        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))


#: Config fields a resumed run may change: how long it trains, how often it evaluates, logs and
#: saves, the device layout (checkpoints reshard onto any mesh) and rematerialisation. Matched
#: by the last component of a dotted path, or by any component for whole blocks.
RESUMABLE_FIELDS = ("num_steps", "num_epochs", "eval_every", "log_every", "checkpoint_every",
                    "keep_checkpoints", "peak_flops", "remat_policy")
RESUMABLE_BLOCKS = ("mesh",)
#: Recipe / sweep grids may grow: every run of the grid checks its own folder.
RESUMABLE_PATHS = ("recipe.students", "recipe.seeds", "recipe.methods",
                   "recipe.pretrain_checkpoints", "sweep.learning_rates", "sweep.batch_sizes",
                   "sweep.seeds")


def _flatten(tree, prefix="") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def resumable(field: str) -> bool:
    parts = field.split(".")
    return (parts[-1] in RESUMABLE_FIELDS or any(p in RESUMABLE_BLOCKS for p in parts)
            or any(field == p or field.startswith(p + ".") for p in RESUMABLE_PATHS))


def config_changes(saved: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{dotted field: (saved value, new value)} for every field that differs."""
    a, b = _flatten(saved), _flatten(new)
    missing = "(absent)"
    return {k: (a.get(k, missing), b.get(k, missing)) for k in sorted(a.keys() | b.keys())
            if a.get(k, missing) != b.get(k, missing)}


def check_workdir(workdir, config: ml_collections.ConfigDict | None) -> dict[str, tuple[Any, Any]]:
    """Refuses, before anything is built or written, a work directory that is a file or that holds
    a run of another config (fields other than the resumable ones differ; `config=None` skips
    that, for programs that only read the folder). Returns the resumable changes (empty for a
    new folder or the same config)."""
    workdir = as_path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--workdir {workdir} is an existing file; expected a folder (created "
                         f"if missing)")
    saved_file = workdir / "config.json"
    if config is None or not saved_file.exists():
        return {}
    try:
        saved = json.loads(saved_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{saved_file} is not readable JSON ({e}); it records what was trained "
                         f"in {workdir}: use a new --workdir") from None
    changes = config_changes(saved, json.loads(config.to_json_best_effort()))
    refused = {k: v for k, v in changes.items() if not resumable(k)}
    if refused:
        lines = "\n".join(f"  {k}: {old!r} there, {new!r} in this run"
                          for k, (old, new) in refused.items())
        raise ValueError(
            f"{workdir} was trained with another config ({saved_file}); the fields that "
            f"differ:\n{lines}\nuse a new --workdir for this run (or the saved values to resume "
            f"it). Fields that may change on resume: {', '.join(RESUMABLE_FIELDS)}, "
            f"{', '.join(b + '.*' for b in RESUMABLE_BLOCKS)}.")
    return changes


def prepare_workdir(workdir, config: ml_collections.ConfigDict) -> epath.Path:
    """Checks the run folder (`check_workdir`), creates it and keeps a copy of the config."""
    workdir = as_path(workdir)
    changes = check_workdir(workdir, config)
    if changes:
        log.warning("resuming %s with changed %s", workdir, "; ".join(
            f"{k}: {old!r} → {new!r}" for k, (old, new) in changes.items()))
    workdir.mkdir(parents=True, exist_ok=True)
    write_text(workdir / "config.json", config.to_json_best_effort(indent=2, sort_keys=True))
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
    path = as_path(workdir) / filename
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path

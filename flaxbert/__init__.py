"""flaxbert: compact BERT and MobileBERT in JAX/Flax."""

from flaxbert.configs import BertConfig, get_config, load_config, preset_names
from flaxbert.heads import Model
from flaxbert.params import abstract_params, count_params, init_params, logical_axes

__version__ = "0.1.0"
__all__ = ["BertConfig", "Model", "abstract_params", "count_params", "get_config",
           "init_params", "load_config", "logical_axes", "preset_names"]

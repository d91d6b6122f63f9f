"""Typed config: `load_config(["config=tiny", "train.epochs=3"])`."""
from .loader import (ConfigError, apply_overrides, field_docs, flatten, from_dict, help_text, load_config,
                     load_saved_config, preset_names, save_config, to_dict)
from .schema import (Config, DataConfig, DecodeConfig, DeepSpeedConfig, EvalConfig, LossConfig, ModelConfig,
                     OptimConfig, RunConfig, StorageConfig, TrainConfig)

__all__ = [
    "Config", "ConfigError", "DataConfig", "DecodeConfig", "DeepSpeedConfig", "EvalConfig", "LossConfig",
    "ModelConfig", "OptimConfig", "RunConfig", "StorageConfig", "TrainConfig", "apply_overrides", "field_docs",
    "flatten", "from_dict", "help_text", "load_config", "load_saved_config", "preset_names", "save_config", "to_dict",
]

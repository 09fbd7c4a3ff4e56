"""Typed training configuration, loaded from YAML and validated once, at the edge.

One file per concept: the sections (``task``, ``model``, ``algorithms``, ``replay``,
``resources``, ``run``) and ``schema.TrainConfig`` joining them are the only schema and the only
defaults; ``files`` finds configs by short name (``tmaze/arelit`` ->
``configs/tmaze/arelit.yaml``), ``loading`` merges ``base:`` chains and ``key=value`` overrides,
``checks`` adds the core and env checks and phrases every error by dotted key, ``describe``
lists the schema. Nothing here imports memrl.rllib or an entrypoint; the core and env checks ask
memrl.models and memrl.envs lazily.
"""

from memrl.config.algorithms import (
    SCHEDULE_KEYS,
    PPOHyperparameters,
    R2D2Hyperparameters,
    TD3Hyperparameters,
)
from memrl.config.describe import describe_schema
from memrl.config.errors import ConfigError
from memrl.config.files import config_dirs, list_configs, resolve_config_path
from memrl.config.loading import (
    BASE_KEY,
    apply_overrides,
    config_from_dict,
    deep_merge,
    load_config,
    load_yaml_tree,
    parse_overrides,
)
from memrl.config.model import ACTIVATIONS, ModelConfig, NetworkConfig
from memrl.config.replay import ReplaySection
from memrl.config.resources import ResourcesConfig
from memrl.config.run import CheckpointConfig, EvaluationConfig, LoggingConfig, StopConfig
from memrl.config.schema import ALGOS, TrainConfig
from memrl.config.section import Section
from memrl.config.task import TASK_RESERVED, TaskConfig

__all__ = [
    "ACTIVATIONS",
    "ALGOS",
    "BASE_KEY",
    "SCHEDULE_KEYS",
    "TASK_RESERVED",
    "CheckpointConfig",
    "ConfigError",
    "EvaluationConfig",
    "LoggingConfig",
    "ModelConfig",
    "NetworkConfig",
    "PPOHyperparameters",
    "R2D2Hyperparameters",
    "ReplaySection",
    "ResourcesConfig",
    "Section",
    "StopConfig",
    "TD3Hyperparameters",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "config_dirs",
    "config_from_dict",
    "deep_merge",
    "describe_schema",
    "list_configs",
    "load_config",
    "load_yaml_tree",
    "parse_overrides",
    "resolve_config_path",
]

"""Offline datasets: episodes on disk (Minari's local Parquet layout) and replay checkpoints.

Layer: between ``memrl.replay`` and ``memrl.rllib`` (numpy + pyarrow + gymnasium, no torch).
"""

from memrl.data.dataset import (
    DatasetError,
    DatasetInfo,
    DatasetWriter,
    iter_episodes,
    load_episodes,
    read_info,
)
from memrl.data.episode import Episode
from memrl.data.merge import merge_datasets
from memrl.data.replay_checkpoint import episodes_from_replay_checkpoint, read_shard_tables

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "DatasetWriter",
    "Episode",
    "episodes_from_replay_checkpoint",
    "iter_episodes",
    "load_episodes",
    "merge_datasets",
    "read_info",
    "read_shard_tables",
]

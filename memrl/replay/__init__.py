"""Sequence replay with per-timestep recurrent state (layer 3: imports memrl.models and the
config schema only).

Plain-Python pieces (no Ray): ``ReplayShard`` (storage, priorities, sampling with state
reconstruction, Arrow checkpoints), ``ChunkWriter`` (cuts env steps into chunks), ``SumTree``.
Ray pieces live in ``memrl.replay.distributed`` (imported on demand so that the storage can be
used and tested without Ray): ``create_shards``, ``replay_writer``, ``PrefetchSampler``;
``memrl.replay.shard_writer`` holds the one writer of the acknowledged protocol.
"""

from memrl.replay.batch import Chunk, SequenceBatch, importance_weights, sequence_priority
from memrl.replay.config import ChunkConfig, ReplayConfig
from memrl.replay.persist import CheckpointError
from memrl.replay.shard import ReplayShard
from memrl.replay.sum_tree import SumTree
from memrl.replay.writer import ChunkWriter

__all__ = [
    "CheckpointError",
    "Chunk",
    "ChunkConfig",
    "ChunkWriter",
    "ReplayConfig",
    "ReplayShard",
    "SequenceBatch",
    "SumTree",
    "importance_weights",
    "sequence_priority",
]

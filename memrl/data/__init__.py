"""Offline datasets: episodes on disk (Minari's local Parquet layout) and replay checkpoints.

Layer: between ``memrl.replay`` and ``memrl.rllib`` (numpy + pyarrow + gymnasium, no torch).
"""

from memrl.data.episode import Episode

__all__ = ["Episode"]

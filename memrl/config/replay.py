"""The ``replay`` section: sharded sequence replay of the off-policy algorithms."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from memrl.config.section import Section


class ReplaySection(Section):
    """Sharded sequence replay of the off-policy algorithms (r2d2, td3): the ``replay`` section,
    held as is by ``OffPolicyConfig.replay``."""

    model_config = ConfigDict(frozen=True)
    label = "replay"

    capacity: int = Field(131072, gt=0, description="steps held per shard")
    num_shards: int = Field(1, gt=0, description="replay shard actors")
    burn_in: int = Field(40, ge=0, description="steps per sequence that only warm the state up")
    seq_len: int = Field(80, gt=0, description="training steps per sequence (after the burn-in)")
    chunk_overlap: int = Field(40, ge=0, description="steps chunks sent to replay overlap by")
    prioritized: bool = Field(True, description="prioritized (True) or uniform sampling")
    alpha: float = Field(0.9, ge=0, description="priority exponent")
    beta: float = Field(0.6, ge=0, le=1, description="importance-sampling exponent")
    eta: float = Field(0.9, ge=0, le=1, description="priority = eta*max|td| + (1-eta)*mean|td|")
    state_storage: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of stored recurrent state"
    )
    prefetch: int = Field(3, gt=0, description="sample rounds the learner keeps in flight")
    checkpoint_every: int = Field(
        1, ge=0, description="save the replay with every K-th checkpoint (0 = never)"
    )
    rollout_fragment_length: int = Field(
        40, gt=0, description="env steps each env adds per iteration"
    )
    checkpoint_every_steps: int = Field(
        50000, ge=0, description="fault tolerance: checkpoint a shard every N new steps (0 = never)"
    )
    checkpoint_dir: str | None = Field(
        None,
        description="fault-tolerance checkpoints dir (null = <output_dir>/replay_shards/<name>)",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> ReplaySection:
        if self.chunk_overlap >= self.seq_len:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be < seq_len ({self.seq_len})"
            )
        return self

    def with_checkpoint_dir(self, default: Path | None) -> ReplaySection:
        """This section with ``checkpoint_dir`` filled in by ``default`` where it is null."""
        if self.checkpoint_dir is not None or default is None:
            return self
        return self.model_copy(update={"checkpoint_dir": str(default)})

"""Typed, validated configuration of a replay shard and of the chunks writers send it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from memrl.config.replay import ReplaySection

STATE_STORAGES = ("float32", "bfloat16", "float16")
# The replay section's defaults are the shard's: one place for each number.
_SECTION = ReplaySection()


@dataclass(frozen=True)
class ReplayConfig:
    """Everything a shard needs besides the core's state spec. Validated on construction.

    The defaults are the ``replay`` config section's (:class:`memrl.config.ReplaySection`,
    following R2D2, Kapturowski et al. 2019, table 2).
    """

    capacity: int = _SECTION.capacity
    """Steps one shard holds (all streams together); split evenly into ``max_streams`` lanes."""
    max_streams: int = 16
    """Streams (one per env of a writer) a shard holds at once; a new stream beyond that evicts
    the least recently written one."""
    burn_in: int = _SECTION.burn_in
    """Steps at the head of each sampled sequence used only to warm the state up."""
    seq_len: int = _SECTION.seq_len
    """Training steps after the burn-in; a sample holds ``burn_in + seq_len`` steps."""
    obs_shape: tuple[int, ...] = (1,)
    """Shape of one observation."""
    obs_dtype: str = "float32"
    """numpy dtype name of observations."""
    action_shape: tuple[int, ...] = ()
    """Shape of one action (``()`` for a discrete action)."""
    action_dtype: str = "int64"
    """numpy dtype name of actions."""
    state_storage: str = _SECTION.state_storage
    """How state values and slices are stored: ``float32``, ``bfloat16`` or ``float16``."""
    prioritized: bool = _SECTION.prioritized
    """Sample proportionally to priority (True) or uniformly over valid starts (False)."""
    alpha: float = _SECTION.alpha
    """Priority exponent: sampling probability is proportional to ``priority ** alpha``."""
    beta: float = _SECTION.beta
    """Importance-sampling exponent of the returned weights."""
    eta: float = _SECTION.eta
    """Sequence priority mix: ``eta * max|delta| + (1 - eta) * mean|delta|``."""
    min_priority: float = 1e-6
    """Floor on a priority, so that a valid start never becomes unsampleable."""
    seed: int | None = None
    """Seed of the shard's sampling generator (None: from OS entropy)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Not used by the shard; kept with checkpoints (e.g. the core's name and kwargs)."""

    def __post_init__(self) -> None:
        for name in ("capacity", "max_streams", "seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ReplayConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise ValueError(f"ReplayConfig.burn_in must be an int >= 0, got {self.burn_in!r}")
        if self.capacity % self.max_streams:
            raise ValueError(
                f"ReplayConfig.capacity ({self.capacity}) must be a multiple of "
                f"max_streams ({self.max_streams})"
            )
        if self.state_storage not in STATE_STORAGES:
            raise ValueError(
                f"ReplayConfig.state_storage must be one of {STATE_STORAGES}, "
                f"got {self.state_storage!r}"
            )
        for name in ("obs_dtype", "action_dtype"):
            try:
                np.dtype(getattr(self, name))
            except TypeError as err:
                raise ValueError(
                    f"ReplayConfig.{name} must be a numpy dtype name, got {getattr(self, name)!r}"
                ) from err
        for name in ("obs_shape", "action_shape"):
            shape = getattr(self, name)
            if not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError(
                    f"ReplayConfig.{name} must be a tuple of positive ints, got {shape!r}"
                )
            object.__setattr__(self, name, tuple(shape))
        if self.alpha < 0.0:
            raise ValueError(f"ReplayConfig.alpha must be >= 0, got {self.alpha}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"ReplayConfig.beta must be in [0, 1], got {self.beta}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"ReplayConfig.eta must be in [0, 1], got {self.eta}")
        if not self.min_priority > 0.0:
            raise ValueError(f"ReplayConfig.min_priority must be > 0, got {self.min_priority}")

    @property
    def lane_capacity(self) -> int:
        """Steps one stream keeps."""
        return self.capacity // self.max_streams

    @property
    def sample_len(self) -> int:
        """Steps of one sampled sequence: burn-in plus training steps."""
        return self.burn_in + self.seq_len

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples become lists)."""
        out = asdict(self)
        out["obs_shape"] = list(self.obs_shape)
        out["action_shape"] = list(self.action_shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayConfig:
        """Inverse of ``to_dict``; an unknown key raises ValueError listing the valid keys."""
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown ReplayConfig key(s) {unknown}; valid: {sorted(valid)}")
        data = dict(data)
        for name in ("obs_shape", "action_shape"):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)


@dataclass(frozen=True)
class ChunkConfig:
    """How a writer cuts each env's step stream into chunks (R2D2: 80 steps, overlap 40).

    A shard stores each step once (it drops the overlap it already holds), so the overlap costs
    transport only; any stored step can start a sequence.
    """

    length: int = _SECTION.seq_len
    overlap: int = _SECTION.chunk_overlap

    def __post_init__(self) -> None:
        if not isinstance(self.length, int) or self.length <= 0:
            raise ValueError(f"ChunkConfig.length must be a positive int, got {self.length!r}")
        if not isinstance(self.overlap, int) or not 0 <= self.overlap < self.length:
            raise ValueError(
                f"ChunkConfig.overlap must be an int in [0, length={self.length}), "
                f"got {self.overlap!r}"
            )

    @property
    def stride(self) -> int:
        """New steps per chunk once the first chunk is sent."""
        return self.length - self.overlap

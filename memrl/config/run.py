"""How a run goes: the ``stop``, ``checkpoint``, ``logging`` and ``evaluation`` sections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from memrl.config.section import Section


class StopConfig(Section):
    """When training ends: the first condition reached (at least one must be set)."""

    iterations: int | None = Field(None, gt=0, description="training iterations")
    timesteps: int | None = Field(
        None, gt=0, description="env steps sampled (lifetime; offline: dataset steps trained on)"
    )
    time_s: float | None = Field(None, gt=0, description="wall-clock seconds of training")
    episode_return_mean: float | None = Field(
        None,
        description="stop once an iteration's training episode_return_mean (RLlib's mean over "
        "recent episodes) reaches this: a solved task stops early (with another limit set too)",
    )
    episode_return_iterations: int = Field(
        1,
        gt=0,
        description="consecutive iterations whose training return must reach "
        "stop.episode_return_mean before the run stops (PPO's return can drop right after "
        "a first crossing)",
    )

    def return_target_met(self, returns: Sequence[float | None]) -> bool:
        """Whether the last ``episode_return_iterations`` training returns (per iteration,
        oldest first; None or NaN where no episode ended) all reached ``episode_return_mean``
        (False without a target)."""
        target, streak = self.episode_return_mean, self.episode_return_iterations
        recent = list(returns)[-streak:]
        return (
            target is not None
            and len(recent) == streak
            and all(r is not None and not math.isnan(r) and r >= target for r in recent)
        )

    @model_validator(mode="after")
    def _one_set(self) -> StopConfig:
        # A return target alone could run forever on a task that is never solved.
        if self.iterations is None and self.timesteps is None and self.time_s is None:
            raise ValueError(
                "set at least one of stop.iterations, stop.timesteps, stop.time_s "
                "(stop.episode_return_mean needs one of them as a limit)"
            )
        return self


class CheckpointConfig(Section):
    """Checkpoints under ``<output_dir>/checkpoints/<name>/iter_NNNNNN``."""

    every: int = Field(10, ge=0, description="save every K iterations (0 = only at the end)")
    keep: int = Field(3, gt=0, description="most recent checkpoints kept on disk")
    at_end: bool = Field(True, description="save when training stops")


class LoggingConfig(Section):
    """What a run reports."""

    tensorboard: bool = Field(True, description="write scalars under <output_dir>/runs/<name>")
    progress_every: int = Field(1, gt=0, description="print a progress line every K iterations")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")


class EvaluationConfig(Section):
    """How ``memrl eval`` scores episodes (see memrl.evaluate for the success rule)."""

    episodes: int = Field(100, gt=0, description="episodes when --episodes is not given")
    success_final_reward: float | None = Field(
        None, description="an episode whose last reward is >= this succeeded (T-Maze: 4.0)"
    )
    success_threshold: float | None = Field(
        None, description="an episode whose return is > this succeeded"
    )

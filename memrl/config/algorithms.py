"""Hyperparameters of the algorithms: the ``ppo``, ``r2d2`` and ``td3`` sections."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from memrl.config.section import Section

# R2D2 keys that set the off-policy schedule (RLlib's lr, the batch, when to start, how often),
# not the loss.
SCHEDULE_KEYS = ("lr", "batch_size", "learning_starts", "updates_per_iteration")


# A piecewise-linear schedule as RLlib takes it: [[env_steps, value], ...], starting at step 0,
# held at the last value after the last point.
Schedule = list[tuple[int, float]]


def check_schedule(name: str, value: float | Schedule, positive: bool) -> float | Schedule:
    """``value`` (a number or a :data:`Schedule`) if every number is > 0 (``positive``) or >= 0,
    and a schedule starts at env step 0 with increasing steps; else a ValueError naming ``name``."""
    bound = "> 0" if positive else ">= 0"
    points = [(0, value)] if isinstance(value, (int, float)) else value
    if not points:
        raise ValueError(f"{name}: a schedule needs at least one [env_steps, value] point")
    if points[0][0] != 0:
        raise ValueError(f"{name}: a schedule starts at env step 0, got {points[0][0]}")
    steps = [t for t, _ in points]
    if any(b <= a for a, b in zip(steps[:-1], steps[1:], strict=True)):
        raise ValueError(f"{name}: schedule env steps must increase, got {steps}")
    for _, v in points:
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise ValueError(f"{name} must be {bound}, got {v}")
    return value


class PPOHyperparameters(Section):
    """PPO settings, passed to ``PPOConfig.training``. ``lr`` and ``entropy_coeff`` take a number
    or a piecewise-linear schedule over env steps sampled, RLlib's format:
    ``[[0, 1e-4], [40000, 1e-3]]`` (linear in between, the last value after the last point)."""

    lr: float | Schedule = Field(3e-4, description="Adam learning rate (or a schedule)")
    gamma: float = Field(0.99, ge=0, le=1, description="discount factor")
    lambda_: float = Field(0.95, ge=0, le=1, alias="lambda", description="GAE lambda")
    clip_param: float = Field(0.2, gt=0, description="PPO ratio clip epsilon")
    vf_clip_param: float = Field(10.0, gt=0, description="value-loss clip (in reward units)")
    num_epochs: int = Field(4, gt=0, description="passes over each train batch")
    minibatch_size: int = Field(256, gt=0, description="steps per SGD minibatch")
    train_batch_size_per_learner: int = Field(
        2048, gt=0, description="env steps per iteration and learner"
    )
    entropy_coeff: float | Schedule = Field(
        0.01, description="entropy bonus weight (or a schedule)"
    )
    vf_loss_coeff: float = Field(0.5, ge=0, description="value-loss weight")
    grad_clip: float | None = Field(0.5, gt=0, description="global grad-norm clip (null = off)")
    use_kl_loss: bool = Field(False, description="add RLlib's adaptive KL penalty")
    kl_coeff: float = Field(0.2, ge=0, description="initial KL penalty weight (use_kl_loss)")

    @field_validator("lr", "entropy_coeff")
    @classmethod
    def _check_schedules(cls, value: float | Schedule, info: Any) -> float | Schedule:
        return check_schedule(info.field_name, value, positive=info.field_name == "lr")

    @model_validator(mode="after")
    def _minibatch_fits(self) -> PPOHyperparameters:
        if self.minibatch_size > self.train_batch_size_per_learner:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must be <= "
                f"train_batch_size_per_learner ({self.train_batch_size_per_learner})"
            )
        return self

    def training_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``PPOConfig.training`` (RLlib spells GAE lambda ``lambda_``;
        a schedule goes as lists of [env_steps, value])."""
        out = self.model_dump(by_alias=False)
        for key in ("lr", "entropy_coeff"):
            if isinstance(out[key], list):
                out[key] = [list(point) for point in out[key]]
        return out


class R2D2Hyperparameters(Section):
    """Recurrent Q-learning (R2D2, Kapturowski et al. 2019; defaults from its table 2)."""

    label = "r2d2"

    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    adam_eps: float = Field(1e-3, gt=0, description="Adam epsilon")
    gamma: float = Field(0.997, ge=0, le=1, description="discount factor")
    n_step: int = Field(5, gt=0, description="steps of reward before bootstrapping")
    value_rescaling: bool = Field(True, description="train on h(Q): sign(x)(sqrt(|x|+1)-1)+eps x")
    rescale_eps: float = Field(1e-3, gt=0, description="eps of the value rescaling h")
    target_update_period: int = Field(2500, gt=0, description="updates between target copies")
    double_q: bool = Field(True, description="bootstrap with the online net's argmax (double Q)")
    dueling: bool = Field(True, description="dueling Q head (value + advantage)")
    epsilon: float = Field(0.4, ge=0, le=1, description="Ape-X base epsilon of the actors")
    epsilon_alpha: float = Field(7.0, ge=0, description="Ape-X: eps_i = eps^(1+i/(N-1)*alpha)")
    batch_size: int = Field(64, gt=0, description="sequences per learner update")
    learning_starts: int = Field(5000, ge=0, description="replay steps before the first update")
    updates_per_iteration: int = Field(4, gt=0, description="learner updates per iteration")
    grad_clip: float | None = Field(40.0, gt=0, description="global grad-norm clip (null = off)")
    delta_q_every: int = Field(100, ge=0, description="measure ΔQ every K updates (0 = never)")

    def r2d2_kwargs(self) -> dict[str, Any]:
        """The ``r2d2`` dict of ``memrl.rllib.r2d2.r2d2_config`` (the schedule keys stay out)."""
        return {k: v for k, v in self.model_dump().items() if k not in SCHEDULE_KEYS}


class TD3Hyperparameters(Section):
    """Recurrent TD3 (Fujimoto et al. 2018; Ni et al. 2022) for Box actions: the ``td3``
    section, passed as is to the TD3 learner and update."""

    model_config = ConfigDict(allow_inf_nan=False, frozen=True)
    label = "td3"

    actor_lr: float = Field(3e-4, gt=0, description="actor Adam learning rate")
    critic_lr: float = Field(3e-4, gt=0, description="critic Adam learning rate")
    gamma: float = Field(0.99, ge=0, le=1, description="discount factor")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak rate of the target networks")
    policy_delay: int = Field(2, gt=0, description="critic updates per actor/target update")
    target_noise: float = Field(
        0.2, ge=0, description="std of the target-policy smoothing noise, in half action ranges"
    )
    target_noise_clip: float = Field(0.5, ge=0, description="clip of the target-policy noise")
    exploration_noise: float = Field(0.1, ge=0, description="std of the actors' Gaussian noise")
    shared_core: bool = Field(False, description="actor and critics share one memory core")
    batch_size: int = Field(32, gt=0, description="sequences per learner update")
    learning_starts: int = Field(1000, ge=0, description="replay steps before the first update")
    updates_per_iteration: int = Field(1, gt=0, description="learner updates per iteration")
    grad_clip: float | None = Field(None, gt=0, description="global grad-norm clip (null = off)")

"""Continuous-action POMDPs for recurrent TD3/SAC (Ni et al., 2022, "Recurrent model-free RL can
be a strong baseline for many POMDPs"): a task with part of its state hidden.

- ``-P`` keeps positions only (velocities hidden), ``-V`` keeps velocities only (positions
  hidden), ``-F`` keeps the full observation (the MDP, for reference).
- Pendulum (gymnasium ``Pendulum-v1``, 200 steps): obs ``[cos th, sin th, th_dot]``; ``-P`` keeps
  ``[cos th, sin th]``, ``-V`` keeps ``[th_dot]``. Action ``Box(-2, 2, (1,), float32)``.
- CartPoleContinuous (no MuJoCo; 500 steps): the classic cart-pole dynamics with a force
  ``action * 10 N``, action ``Box(-1, 1, (1,), float32)``, +1 per step, terminated when the pole
  passes 12 degrees or the cart leaves [-2.4, 2.4]. Obs ``[x, x_dot, th, th_dot]``; ``-P`` keeps
  ``[x, th]``, ``-V`` keeps ``[x_dot, th_dot]``.

Time limits are truncations (gymnasium ``TimeLimit``); spaces are exact slices of the full one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from gymnasium.wrappers import TimeLimit

# variant -> indices of the full observation that stay visible
PENDULUM_VIEWS: dict[str, tuple[int, ...]] = {"F": (0, 1, 2), "P": (0, 1), "V": (2,)}
CARTPOLE_VIEWS: dict[str, tuple[int, ...]] = {"F": (0, 1, 2, 3), "P": (0, 2), "V": (1, 3)}


class MaskObservation(gym.ObservationWrapper):
    """Keeps the entries ``keep`` of a 1-D Box observation; the space is the same slice.

    Raises:
        ValueError: the observation space is not a 1-D Box, or ``keep`` is empty or out of range.
    """

    def __init__(self, env: gym.Env, keep: Sequence[int]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"MaskObservation needs a 1-D Box observation space, got {space}")
        keep = tuple(int(i) for i in keep)
        if not keep or not all(0 <= i < space.shape[0] for i in keep):
            raise ValueError(f"keep must be non-empty indices in [0, {space.shape[0]}), got {keep}")
        self._keep = np.array(keep)
        self.observation_space = spaces.Box(
            space.low[self._keep], space.high[self._keep], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self._keep]


class ContinuousCartPoleEnv(gym.Env[np.ndarray, np.ndarray]):
    """Cart-pole with a continuous force; the classic dynamics (Barto et al., 1983) with Euler
    integration at 50 Hz, as in gymnasium's discrete ``CartPole-v1``.

    Observation ``Box([-4.8, -inf, -0.419, -inf], [4.8, inf, 0.419, inf], (4,), float32)``;
    action ``Box(-1, 1, (1,), float32)`` scaled to +-10 N (clipped to the box).
    """

    metadata: dict[str, Any] = {"render_modes": []}
    gravity, cart_mass, pole_mass, half_length, force_mag, dt = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_limit = 12 * 2 * math.pi / 360
    x_limit = 2.4

    def __init__(self) -> None:
        high = np.array([self.x_limit * 2, np.inf, self.theta_limit * 2, np.inf], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self._state = np.zeros(4)
        self._done = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-0.05, 0.05, size=4)
        self._done = False
        return self._state.astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("ContinuousCartPoleEnv.step called after termination; reset()")
        force = self.force_mag * float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        x, x_dot, theta, theta_dot = self._state
        cos, sin = math.cos(theta), math.sin(theta)
        total_mass = self.cart_mass + self.pole_mass
        pole_ml = self.pole_mass * self.half_length
        temp = (force + pole_ml * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.half_length * (4.0 / 3.0 - self.pole_mass * cos**2 / total_mass)
        )
        x_acc = temp - pole_ml * theta_acc * cos / total_mass
        x, x_dot = x + self.dt * x_dot, x_dot + self.dt * x_acc
        theta, theta_dot = theta + self.dt * theta_dot, theta_dot + self.dt * theta_acc
        self._state = np.array([x, x_dot, theta, theta_dot])
        terminated = bool(abs(x) > self.x_limit or abs(theta) > self.theta_limit)
        self._done = terminated
        return self._state.astype(np.float32), 1.0, terminated, False, {}


def _check_variant(variant: str, views: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    if variant not in views:
        raise ValueError(f"variant must be one of {sorted(views)}, got {variant!r}")
    return views[variant]


def make_pendulum(variant: str = "P", max_episode_steps: int = 200) -> gym.Env:
    """Pendulum with ``variant`` ``"F"``, ``"P"`` or ``"V"`` (see module docstring)."""
    keep = _check_variant(variant, PENDULUM_VIEWS)
    return MaskObservation(TimeLimit(PendulumEnv(), max_episode_steps), keep)


def make_cartpole(variant: str = "P", max_episode_steps: int = 500) -> gym.Env:
    """Continuous-force CartPole with ``variant`` ``"F"``, ``"P"`` or ``"V"``."""
    keep = _check_variant(variant, CARTPOLE_VIEWS)
    return MaskObservation(TimeLimit(ContinuousCartPoleEnv(), max_episode_steps), keep)

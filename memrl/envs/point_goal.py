"""PointGoalMemory: a 2-D point mass must reach a goal that is shown only at the first step.

Pure numpy. The agent accelerates a point in the square ``[-1, 1]^2`` (action
``Box(-1, 1, (2,), float32)``): ``v <- damping * v + accel * a``, ``p <- clip(p + v, -1, 1)``
(the velocity component into a wall is zeroed). Each episode starts at the centre, at rest,
with a goal drawn on the circle of radius ``goal_radius`` (one of ``num_goals`` evenly spaced
points, or anywhere on it when ``num_goals = 0``). Observation (float32, 7):
``[x, y, vx, vy, cue * gx, cue * gy, cue]`` with ``cue = 1`` at the first step only, so after
it the goal exists only in the agent's memory. Reward per step ``max(0, 1 - |p - g| / scale)``
(in [0, 1]: no termination, the episode is truncated after ``max_episode_steps``); the best
policy goes to the goal and stays there. An agent that forgot the goal can do no better than
waiting at the centre (``1 - goal_radius / scale`` per step).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit


class PointGoalMemoryEnv(gym.Env[np.ndarray, np.ndarray]):
    """See the module docstring. Raises ValueError for bad parameters."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        num_goals: int = 4,
        goal_radius: float = 0.6,
        damping: float = 0.8,
        accel: float = 0.1,
        scale: float = 1.0,
    ) -> None:
        if not isinstance(num_goals, int) or num_goals < 0:
            raise ValueError(f"num_goals must be an int >= 0 (0: continuous), got {num_goals!r}")
        if not 0.0 < goal_radius <= 1.0:
            raise ValueError(f"goal_radius must be in (0, 1], got {goal_radius}")
        if not 0.0 <= damping < 1.0 or accel <= 0.0 or scale <= 0.0:
            raise ValueError(
                f"need 0 <= damping < 1, accel > 0, scale > 0; got {damping}, {accel}, {scale}"
            )
        self.num_goals, self.goal_radius = num_goals, float(goal_radius)
        self.damping, self.accel, self.scale = float(damping), float(accel), float(scale)
        vmax = accel / (1.0 - damping)
        high = np.array([1, 1, vmax, vmax, 1, 1, 1], dtype=np.float32)
        low = np.array([-1, -1, -vmax, -vmax, -1, -1, 0], dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._pos = np.zeros(2)
        self._vel = np.zeros(2)
        self.goal = np.zeros(2)

    def _obs(self, cue: bool) -> np.ndarray:
        shown = self.goal if cue else np.zeros(2)
        vmax = self.observation_space.high[2]
        vel = np.clip(self._vel, -vmax, vmax)
        return np.concatenate([self._pos, vel, shown, [float(cue)]]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.num_goals:
            angle = 2 * math.pi * int(self.np_random.integers(self.num_goals)) / self.num_goals
        else:
            angle = float(self.np_random.uniform(0.0, 2 * math.pi))
        self.goal = self.goal_radius * np.array([math.cos(angle), math.sin(angle)])
        self._pos, self._vel = np.zeros(2), np.zeros(2)
        return self._obs(cue=True), {"goal": self.goal.copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self._vel = self.damping * self._vel + self.accel * a
        pos = self._pos + self._vel
        hit = np.abs(pos) > 1.0
        self._vel[hit] = 0.0
        self._pos = np.clip(pos, -1.0, 1.0)
        distance = float(np.linalg.norm(self._pos - self.goal))
        reward = max(0.0, 1.0 - distance / self.scale)
        return self._obs(cue=False), reward, False, False, {"distance": distance}


def make_point_goal(
    max_episode_steps: int = 50,
    num_goals: int = 4,
    goal_radius: float = 0.6,
    damping: float = 0.8,
    accel: float = 0.1,
    scale: float = 1.0,
) -> gym.Env:
    """:class:`PointGoalMemoryEnv` with a time limit (truncation) of ``max_episode_steps``."""
    env = PointGoalMemoryEnv(num_goals, goal_radius, damping, accel, scale)
    return TimeLimit(env, max_episode_steps)

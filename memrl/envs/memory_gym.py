"""Memory Gym (Pleines et al.): Mystery Path, Mortar Mayhem, Searing Spotlights, as memrl ids.

Install: ``bash scripts/setup_envs.sh`` (``memory-gym`` with ``--no-deps`` plus ``pygame-ce``; its
wheel pins gymnasium 0.29 and pygame 2.4, yet it runs unchanged on gymnasium 1.x).

Each id ``memrl/<Task>-v0`` wraps Memory Gym's ``<Task>-v0`` and fixes three things:

- **truncation**: Memory Gym reports its time limit as ``terminated``; here the wrapped env gets
  no limit (reset parameter ``max_steps=-1``) and this wrapper cuts the episode off at
  ``max_steps`` with ``truncated=True``. Reaching a goal, dying or failing a command is
  ``terminated``.
- **copies**: some tasks return the same array object from consecutive calls; every observation
  handed out here is a fresh copy.
- **errors**: an unknown reset option is a ValueError listing the valid ones (Memory Gym asserts).

The ``-Easy-v0`` ids are the ReLiT repository's easier Mystery Path: reset options
``show_origin=True, show_goal=True, reward_path_progress=0.1``.

Observation ``Box(0, 255, (84, 84, 3), uint8)`` (MortarMayhemB: a Dict adding a 180-dim command
one-hot); actions ``Discrete(4)`` for Grid tasks, ``MultiDiscrete([3, 3])`` otherwise (as the task
declares). Memory Gym draws into pygame's single display surface, so keep **one env per process**
(one per RLlib env-runner, or a spawn-based vector env).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import gymnasium as gym
import numpy as np

# task id -> the reset options that define the memrl id (on top of Memory Gym's defaults)
TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "MysteryPath-v0": ("MysteryPath-v0", {}),
    "MysteryPath-Grid-v0": ("MysteryPath-Grid-v0", {}),
    "Endless-MysteryPath-v0": ("Endless-MysteryPath-v0", {}),
    "MortarMayhem-v0": ("MortarMayhem-v0", {}),
    "MortarMayhem-Grid-v0": ("MortarMayhem-Grid-v0", {}),
    "Endless-MortarMayhem-v0": ("Endless-MortarMayhem-v0", {}),
    "MortarMayhemB-v0": ("MortarMayhemB-v0", {}),
    "MortarMayhemB-Grid-v0": ("MortarMayhemB-Grid-v0", {}),
    "SearingSpotlights-v0": ("SearingSpotlights-v0", {}),
    "Endless-SearingSpotlights-v0": ("Endless-SearingSpotlights-v0", {}),
    "MysteryPath-Easy-v0": ("MysteryPath-v0", {}),
    "MysteryPath-Grid-Easy-v0": ("MysteryPath-Grid-v0", {}),
}
EASY_OPTIONS: dict[str, Any] = {
    "show_origin": True,
    "show_goal": True,
    "reward_path_progress": 0.1,
}
for _name in ("MysteryPath-Easy-v0", "MysteryPath-Grid-Easy-v0"):
    TASKS[_name] = (TASKS[_name][0], dict(EASY_OPTIONS))

INSTALL_HINT = (
    "memory-gym is not installed; run `bash scripts/setup_envs.sh .venv/bin/python` "
    "(installs memory-gym --no-deps and pygame-ce)"
)


def _import_memory_gym() -> None:
    # pygame reads these when it initialises; without them a headless machine fails or beeps.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import memory_gym  # noqa: F401  (registers Memory Gym's ids)
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err


class MemoryGymEnv(gym.Env):
    """One Memory Gym task with truncation by time limit and copied observations.

    Args:
        task: a key of :data:`TASKS` (the registered ids pass it).
        max_steps: time limit (truncation); None takes the task's own default (128 for
            MysteryPath-Grid, 512 MysteryPath, 256 SearingSpotlights; none for Endless and
            Mortar Mayhem tasks, which end on their own), -1 for no limit.
        reset_options: Memory Gym reset parameters applied at every reset (merged under the
            per-reset ``options``).
        render_mode: passed to Memory Gym (``rgb_array``, ``debug_rgb_array``, ``human``).

    Raises:
        ValueError: unknown task or reset option (the message lists the valid ones).
        ImportError: memory-gym missing (the message says how to install it).
    """

    def __init__(
        self,
        task: str = "MysteryPath-Grid-v0",
        max_steps: int | None = None,
        reset_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown Memory Gym task {task!r}; valid: {sorted(TASKS)}")
        if max_steps is not None and (
            not isinstance(max_steps, int) or max_steps == 0 or max_steps < -1
        ):
            raise ValueError(f"max_steps must be None, -1 or an int >= 1, got {max_steps!r}")
        _import_memory_gym()
        base_id, task_options = TASKS[task]
        self.task = task
        self._env = gym.make(base_id, render_mode=render_mode, disable_env_checker=True).unwrapped
        self._defaults: dict[str, Any] = dict(type(self._env).default_reset_parameters)
        self._options = {**task_options, **self._check_options(reset_options)}
        self._max_steps_arg = max_steps
        self.observation_space = self._env.observation_space
        self.action_space = self._env.action_space
        self.render_mode = render_mode
        self.metadata = dict(self._env.metadata)
        self._limit = -1
        self._t = 0

    def _check_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        options = dict(options or {})
        bad = sorted(set(options) - set(self._defaults))
        if bad:
            raise ValueError(
                f"unknown Memory Gym reset option(s) {bad} for {self.task}; "
                f"valid: {sorted(self._defaults)}"
            )
        return options

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset with the id's options, then ``options`` on top (Memory Gym reset parameters)."""
        super().reset(seed=seed)
        merged = {**self._options, **self._check_options(options)}
        limit = merged.get("max_steps", self._defaults.get("max_steps", -1))
        if self._max_steps_arg is not None and "max_steps" not in (options or {}):
            limit = self._max_steps_arg
        self._limit = int(limit)
        if "max_steps" in self._defaults:
            merged["max_steps"] = -1  # the wrapper owns the time limit (see module docstring)
        obs, info = self._env.reset(seed=seed, options=merged)
        self._t = 0
        return copy.deepcopy(obs), dict(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, _, info = self._env.step(action)
        self._t += 1
        truncated = not terminated and self._limit > 0 and self._t >= self._limit
        return copy.deepcopy(obs), float(reward), bool(terminated), truncated, dict(info)

    def render(self) -> np.ndarray | None:
        return self._env.render()

    def close(self) -> None:
        self._env.close()

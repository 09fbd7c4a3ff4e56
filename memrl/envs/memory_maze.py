"""Memory Maze (Pasukonis et al., 2022) as a gymnasium env, without the old ``gym`` package.

Install: ``bash scripts/setup_envs.sh`` (``memory-maze`` with ``dm-control==1.0.50`` and
``mujoco==3.17.0`` in one pip command: dm_control 1.0.50 breaks on mujoco 4).

Ids ``memrl/MemoryMaze-{9x9,11x11,13x13,15x15}-v0``. Observation ``Box(0, 255, (64, 64, 3),
uint8)`` (first-person camera; the current target's colour is drawn as the image border), actions
``Discrete(6)``: noop, forward, left, right, forward+left, forward+right. Reward +1 per target
touched. Episodes last 250/500/750/1000 s at 4 Hz (1000/2000/3000/4000 steps) and end by time
limit, reported as ``truncated``; only a physics error ends one with ``terminated``.

How it differs from ``memory_maze``'s own gym ids:

- it talks to the dm_env task API directly, so no ``gym`` install is needed (``memory_maze``'s
  ``__init__`` imports ``gym`` and raises without it; this module loads ``memory_maze.tasks``
  without running that ``__init__``);
- ``reset(seed=s)`` rebuilds the task (about 1.5 s): the maze layouts come from labmaze's own
  RNG, fixed when the task is built, so reseeding the gymnasium RNG alone would not reproduce
  an episode. Unseeded resets reuse the task and are cheap;
- ``fast_contacts=True`` (default) replaces dm_control's per-contact Python loop in
  ``TargetSphere._update_activation`` (~60% of step time) by a numpy test over all contacts, on
  this env's targets only. Frames and rewards are identical (tested); 3-4x the steps/s.

Rendering is headless: ``MUJOCO_GL`` defaults to ``egl`` (set ``MUJOCO_GL=osmesa`` where EGL is
missing; both need the apt packages that ``scripts/setup_envs.sh`` installs as root).

Processes: MuJoCo's GL context does not survive ``fork``; a forked child of a process that has
built a Memory Maze hangs. Use one env per actor process (one per RLlib env-runner) or
:func:`make_vector_env`, which starts workers with ``spawn``. Using an env in a forked child
raises RuntimeError instead of hanging.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# size -> (memory_maze.tasks factory, episode length in steps)
SIZES: dict[str, tuple[str, int]] = {
    "9x9": ("memory_maze_9x9", 1000),
    "11x11": ("memory_maze_11x11", 2000),
    "13x13": ("memory_maze_13x13", 3000),
    "15x15": ("memory_maze_15x15", 4000),
}
ACTIONS = ("noop", "forward", "left", "right", "forward_left", "forward_right")
INSTALL_HINT = (
    "memory-maze is not installed; run `bash scripts/setup_envs.sh .venv/bin/python` "
    "(installs memory-maze, dm-control==1.0.50, mujoco==3.17.0)"
)

# The pid of the first process in this interpreter's lineage that built a task (and so owns a
# GL context); a different pid at build time means we are in a forked child.
_GL_OWNER_PID: int | None = None


def _tasks() -> types.ModuleType:
    """``memory_maze.tasks``, loaded without ``memory_maze/__init__`` (which needs ``gym``)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    if "memory_maze.tasks" in sys.modules:
        return sys.modules["memory_maze.tasks"]
    spec = importlib.util.find_spec("memory_maze")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(INSTALL_HINT)
    if "memory_maze" not in sys.modules:
        # An empty package object with the real search path: its submodules import as usual.
        package = types.ModuleType("memory_maze")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["memory_maze"] = package
    try:
        return importlib.import_module("memory_maze.tasks")
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err


def _update_activation_vectorised(target: Any, physics: Any) -> None:
    """Same decision as ``TargetSphere._update_activation``, over all contacts at once."""
    if target._activated:
        return
    contact = physics.data.contact
    if len(contact) == 0:
        return
    geom1, geom2 = contact.geom1, contact.geom2
    hit = (geom1 == target._geom_id) | (geom2 == target._geom_id)
    if target._specific_collision_geom_ids:
        ids = np.asarray(list(target._specific_collision_geom_ids))
        hit &= np.isin(geom1, ids) | np.isin(geom2, ids)
    if hit.any():
        target._activated = True
        physics.bind(target._material).rgba[-1] = 0


def _patch_targets(dm_env: Any) -> None:
    # Bound on each instance, not on the class: unpatched envs in the same process stay unpatched.
    for target in dm_env.task._targets:
        if "_update_activation" not in vars(target):
            target._update_activation = types.MethodType(_update_activation_vectorised, target)


class MemoryMazeEnv(gym.Env):
    """One Memory Maze task.

    Args:
        size: ``"9x9"``, ``"11x11"``, ``"13x13"`` or ``"15x15"``.
        fast_contacts: vectorised target-touch check (see module docstring).
        render_mode: None or ``"rgb_array"`` (returns the last observation frame).

    Raises:
        ValueError: unknown size or render mode (the message lists the valid ones).
        ImportError: memory-maze missing (the message says how to install it).
        RuntimeError: used in a forked child of a process that built a Memory Maze.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self, size: str = "9x9", fast_contacts: bool = True, render_mode: str | None = None
    ) -> None:
        if size not in SIZES:
            raise ValueError(f"unknown Memory Maze size {size!r}; valid: {list(SIZES)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self._factory: Callable[..., Any] = getattr(_tasks(), SIZES[size][0])
        self.size = size
        self.max_episode_steps = SIZES[size][1]
        self.fast_contacts = bool(fast_contacts)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._dm: Any = None
        self._obs: np.ndarray | None = None
        self._done = True

    @staticmethod
    def _check_not_forked() -> None:
        if _GL_OWNER_PID is not None and os.getpid() != _GL_OWNER_PID:
            raise RuntimeError(
                "Memory Maze used in a forked child of a process that already built one: "
                "MuJoCo's GL context does not survive fork and this would hang. Use one env per "
                "process, or memrl.envs.memory_maze.make_vector_env (spawn)."
            )

    def _build(self, seed: int) -> None:
        global _GL_OWNER_PID
        self._check_not_forked()
        if self._dm is not None:
            self._dm.close()
        self._dm = self._factory(image_only_obs=True, seed=seed)
        _GL_OWNER_PID = os.getpid()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; a seed rebuilds the task so that the maze sequence restarts."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"Memory Maze takes no reset options, got {sorted(options)}")
        self._check_not_forked()
        if seed is not None or self._dm is None:
            self._build(int(self.np_random.integers(2**31 - 1)))
        timestep = self._dm.reset()
        if self.fast_contacts:
            _patch_targets(self._dm)
        self._done = False
        self._obs = np.array(timestep.observation, dtype=np.uint8)
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One 0.25 s control step. Raises RuntimeError after the episode ended."""
        if self._done or self._dm is None:
            raise RuntimeError("MemoryMazeEnv.step called before reset or after the episode ended")
        self._check_not_forked()
        timestep = self._dm.step(int(action))
        self._obs = np.array(timestep.observation, dtype=np.uint8)
        terminated = truncated = False
        if timestep.last():
            # composer ends by time limit with discount 1 and on a physics error with discount 0.
            terminated = float(timestep.discount) == 0.0
            truncated = not terminated
            self._done = True
        return self._obs.copy(), float(timestep.reward or 0.0), terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array" and self._obs is not None:
            return self._obs.copy()
        return None

    def close(self) -> None:
        if self._dm is not None:
            self._dm.close()
            self._dm = None


def make_vector_env(
    num_envs: int, size: str = "9x9", fast_contacts: bool = True
) -> gym.vector.AsyncVectorEnv:
    """``num_envs`` Memory Mazes in worker processes started with ``spawn`` (fork would hang)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    fns = [partial(MemoryMazeEnv, size=size, fast_contacts=fast_contacts)] * num_envs
    return gym.vector.AsyncVectorEnv(fns, context="spawn")

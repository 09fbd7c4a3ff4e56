"""Environments for RLlib env runners: a registered creator that imports ``memrl.envs`` first.

Env runners are separate processes; ``gymnasium.make("memrl/...")`` only works there after
``import memrl.envs`` has registered the ids, so the creator does that import itself.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ray.tune.registry import register_env

PREFIX = "memrl-rllib:"


def make_env(env_id: str, env_config: dict[str, Any] | None = None) -> gym.Env:
    """Build ``env_id`` with ``env_config`` as kwargs, after registering memrl's ids."""
    import memrl.envs  # noqa: F401  (registers memrl/* ids with gymnasium)

    kwargs = dict(env_config or {})
    # make_env checks the id and kwargs with clear errors; gym.make is the fallback for ids
    # registered elsewhere.
    make = getattr(memrl.envs, "make_env", None)
    return make(env_id, **kwargs) if make is not None else gym.make(env_id, **kwargs)


def _creator(env_id: str):
    def create(env_context: dict[str, Any]) -> gym.Env:
        # EnvContext: a dict subclass carrying worker_index etc.; only its keys are kwargs.
        return make_env(env_id, dict(env_context))

    return create


def register_rllib_env(env_id: str) -> str:
    """Register a creator for ``env_id`` with Ray and return the name to give RLlib."""
    name = PREFIX + env_id
    register_env(name, _creator(env_id))
    return name

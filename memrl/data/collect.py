"""Roll a policy out into a dataset (no Ray): one env, episodes one after another."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from memrl.data.dataset import DatasetWriter
from memrl.data.episode import Episode

# policy(obs, first) -> action; ``first`` is True at an episode's first step (reset memory).
Policy = Callable[[Any, bool], Any]


def random_policy(space: gym.Space, seed: int) -> Policy:
    """Uniform actions from ``space``, seeded."""
    space.seed(seed)
    return lambda obs, first: space.sample()


def rollouts(env: gym.Env, policy: Policy, episodes: int, seed: int) -> Iterator[Episode]:
    """``episodes`` episodes of ``policy`` in ``env``; reset seeds ``seed, seed + 1, ...``."""
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards = [], [], []
        terminated = truncated = False
        while not (terminated or truncated):
            action = policy(obs, not observations)
            observations.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
        yield Episode(
            obs=np.stack(observations),
            action=np.stack(actions),
            reward=np.asarray(rewards, dtype=np.float32),
            terminated=bool(terminated),
            truncated=bool(truncated),
            episode_id=i,
            final_obs=np.asarray(obs),
        )


def collect(
    env_id: str,
    out: str,
    episodes: int,
    *,
    env_kwargs: dict[str, Any] | None = None,
    policy: Policy | None = None,
    policy_name: str = "random",
    seed: int = 0,
) -> DatasetWriter:
    """Write ``episodes`` episodes of ``policy`` (default: uniform random) on ``env_id`` to a new
    dataset at ``out``; returns the closed writer (its totals). Nothing is left at ``out`` if
    it fails."""
    from memrl.envs import make_env

    env = make_env(env_id, **(env_kwargs or {}))
    policy = policy or random_policy(env.action_space, seed)
    with DatasetWriter(
        out,
        env.observation_space,
        env.action_space,
        env_id=env_id,
        env_kwargs=env_kwargs,
        collector={"policy": policy_name, "episodes": episodes, "seed": seed},
    ) as writer:
        for episode in rollouts(env, policy, episodes, seed):
            writer.add(episode)
    return writer

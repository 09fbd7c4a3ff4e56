"""Playing a Q-Transformer network greedily in an env (training's evaluations, ``memrl eval``).

Actions are decoded dimension by dimension with the scores training uses
(:meth:`CausalDimensionHead.greedy`) and played at their bins' centres. The core's state is
carried from step to step and reset at each episode's first step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from memrl.rllib.qtransformer.discretise import ActionBins
from memrl.rllib.qtransformer.network import QTransformerNetwork


@dataclass
class GreedyEpisode:
    """One greedy episode: its return, length, last info and reward, and the actions played."""

    episode_return: float
    length: int
    final_info: dict[str, Any]
    final_reward: float
    actions: list[Any] = field(default_factory=list)


@torch.no_grad()
def play_episodes(
    module: torch.nn.Module,
    to_action: Callable[[Any], Any],
    make_env: Callable[[], gym.Env],
    episodes: int,
    seed: int,
) -> list[GreedyEpisode]:
    """``episodes`` episodes of a recurrent torch policy in one env from ``make_env``, reset with
    seeds ``seed``, ``seed + 1``, ...: ``module.initial_state(1, device)`` at each episode's start,
    ``module.act(x [1, 1, ...], first [1, 1], state) -> (out, state)`` per step, and
    ``to_action(out[0, 0])`` the env action. The module is put back in its training mode
    afterwards. (Q-Transformer's greedy decoding and behaviour cloning both play this way.)"""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    played: list[GreedyEpisode] = []
    env = make_env()
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            state = module.initial_state(1, device)
            first, done = True, False
            episode = GreedyEpisode(0.0, 0, {}, 0.0)
            while not done:
                x = torch.as_tensor(np.asarray(obs), device=device)[None, None]
                f = torch.tensor([[first]], device=device)
                out, state = module.act(x, f, state)
                action = to_action(out[0, 0])
                obs, reward, terminated, truncated, info = env.step(action)
                episode.episode_return += float(reward)
                episode.length += 1
                episode.final_info, episode.final_reward = dict(info), float(reward)
                episode.actions.append(action)
                first, done = False, terminated or truncated
            played.append(episode)
    finally:
        env.close()
        module.train(was_training)
    return played


def play_greedy(
    network: QTransformerNetwork,
    bins: ActionBins,
    make_env: Callable[[], gym.Env],
    episodes: int,
    seed: int,
) -> list[GreedyEpisode]:
    """``episodes`` greedy episodes in one env from ``make_env``, reset with seeds ``seed``,
    ``seed + 1``, ...: the chosen bins played at their centres (:func:`play_episodes`)."""
    return play_episodes(
        network, lambda chosen: bins.to_action(chosen.cpu().numpy()), make_env, episodes, seed
    )

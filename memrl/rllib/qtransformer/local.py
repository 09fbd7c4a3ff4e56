"""A lean in-process Q-Transformer loop (no Ray): a dataset in, a trained network out.

Loads a dataset (:mod:`memrl.data`), discretises its actions with the bounds from its metadata,
samples sequences, runs :class:`QTransformerUpdate`, and optionally evaluates the greedy policy
in the dataset's env. For tests, benchmarks and quick checks; ``memrl train`` wiring is the
integrator's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from memrl.data import Episode, load_episodes
from memrl.rllib.model_config import ModelConfig
from memrl.rllib.qtransformer.discretise import ActionBins
from memrl.rllib.qtransformer.hyperparameters import QTransformerHyperparameters
from memrl.rllib.qtransformer.network import QTransformerNetwork
from memrl.rllib.qtransformer.sequences import SequenceSampler
from memrl.rllib.qtransformer.update import QTransformerUpdate

log = logging.getLogger(__name__)


@dataclass
class OfflineResult:
    """metrics: the last update's; evaluations: ``(updates, mean greedy return)``; time_s and
    learner steps/s (sequence steps per second of update time)."""

    metrics: dict[str, float] = field(default_factory=dict)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    updates: int = 0
    time_s: float = 0.0
    timesteps_per_s: float = 0.0


@torch.no_grad()
def evaluate_greedy(
    network: QTransformerNetwork, bins: ActionBins, env_fn: Any, episodes: int, seed: int
) -> float:
    """Mean return of the greedy policy over ``episodes`` episodes (one env at a time)."""
    network.eval()
    device = next(network.parameters()).device
    returns = []
    for i in range(episodes):
        env = env_fn()
        obs, _ = env.reset(seed=seed + i)
        state = network.initial_state(1, device)
        first, total, done = True, 0.0, False
        while not done:
            x = torch.as_tensor(np.asarray(obs), device=device)[None, None]
            f = torch.tensor([[first]], device=device)
            chosen, state = network.act(x, f, state)
            action = bins.to_action(chosen[0, 0].cpu().numpy())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            first, done = False, terminated or truncated
        returns.append(total)
    network.train()
    return float(np.mean(returns))


def train_offline(
    data: str | Path | tuple[gym.Space, gym.Space, Sequence[Episode]],
    *,
    core: str,
    core_kwargs: dict[str, Any],
    model: ModelConfig,
    hp: QTransformerHyperparameters,
    updates: int,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    eval_every: int = 0,
    eval_episodes: int = 5,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[QTransformerNetwork, QTransformerUpdate, OfflineResult]:
    """Train on a dataset directory (or ``(obs_space, action_space, episodes)``) for
    ``updates`` updates; evaluate every ``eval_every`` updates in ``env_id`` (default: the
    dataset's). Raises DatasetError for a bad dataset, ValueError for actions without bounds."""
    torch.manual_seed(seed)
    if isinstance(data, str | Path):
        info, episodes = load_episodes(data)
        obs_space, action_space = info.observation_space, info.action_space
        env_id = env_id or info.env_id
        env_kwargs = env_kwargs if env_kwargs is not None else info.env_kwargs
    else:
        obs_space, action_space, episodes = data
    bins = ActionBins(action_space, hp.bins)
    sampler = SequenceSampler(
        episodes, bins, seq_len=hp.seq_len, burn_in=hp.burn_in, n_step=hp.n_step,
        gamma=hp.gamma, seed=seed,
    )  # fmt: skip
    network = QTransformerNetwork(
        obs_space, bins.num_dims, bins.num_bins, core, core_kwargs, model, hp
    ).to(device)
    update = QTransformerUpdate(network, hp)
    result = OfflineResult()

    def env_fn() -> gym.Env:
        from memrl.envs import make_env

        return make_env(env_id, **(env_kwargs or {}))

    began, learn_time = time.perf_counter(), 0.0
    for step in range(1, updates + 1):
        batch = sampler.sample(hp.batch_size).to(device)
        tick = time.perf_counter()
        result.metrics = update.update(batch)
        learn_time += time.perf_counter() - tick
        result.updates = step
        if eval_every and env_id and step % eval_every == 0:
            score = evaluate_greedy(network, bins, env_fn, eval_episodes, seed=10_000)
            result.evaluations.append((step, score))
            log.info("update %d: greedy return %.2f, %s", step, score, result.metrics)
    result.time_s = time.perf_counter() - began
    steps = updates * hp.batch_size * sampler.length
    result.timesteps_per_s = steps / learn_time if learn_time else 0.0
    return network, update, result

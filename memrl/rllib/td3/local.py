"""A lean in-process recurrent TD3 loop: no Ray, the same replay shard and the same update.

Envs step in lockstep in this process; each step's record (observation, action, reward,
terminated/truncated, first, and the per-step state record: a carry's value *before* the step,
a window's slice produced *by* it, ``prev_action`` included) is cut into chunks by
:class:`memrl.replay.ChunkWriter` and stored in a :class:`memrl.replay.ReplayShard`, exactly the
layout the RLlib path writes (the final observation of an episode is not stored). Updates are
:meth:`memrl.rllib.td3.update.TD3Update.update` on sampled sequences, priorities go back to the
shard. Used by the learning test (an RLlib run is too slow for CI on 2 cores) and for quick
hyperparameter checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from memrl.config import TD3Hyperparameters
from memrl.replay import ChunkConfig, ChunkWriter, ReplayConfig, ReplayShard, sequence_priority
from memrl.rllib.state import step_record
from memrl.rllib.td3.losses import gaussian_exploration
from memrl.rllib.td3.networks import PREV_ACTION, TD3Networks
from memrl.rllib.td3.update import TD3Update

log = logging.getLogger(__name__)


@dataclass
class LocalResult:
    """returns: ``(env_steps, return)`` of each finished training episode (with exploration);
    evaluations: ``(env_steps, mean deterministic return)``; updates; time_s."""

    returns: list[tuple[int, float]] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)
    updates: int = 0
    time_s: float = 0.0


def _obs_tensor(obs: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(obs, dtype=np.float32))[:, None]  # [N, 1, ...]


@torch.no_grad()
def evaluate(networks: TD3Networks, make_env: Any, episodes: int, seed: int) -> float:
    """Mean return of the deterministic actor over ``episodes`` episodes (run side by side)."""
    envs = [make_env() for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    state = networks.initial_state(episodes)
    first = torch.ones(episodes, 1, dtype=torch.bool)
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        actor, _, next_state = networks.histories(_obs_tensor(obs), None, state, first)
        action = networks.actor(actor)[:, 0]
        if networks.stateful:
            next_state[PREV_ACTION] = action
        state, first = next_state, torch.zeros_like(first)
        for i, env in enumerate(envs):
            if not running[i]:
                continue
            obs[i], reward, terminated, truncated, _ = env.step(action[i].numpy())
            returns[i] += reward
            running[i] = not (terminated or truncated)
    return float(returns.mean())


def train_local(
    env_id: str,
    *,
    core: str,
    core_kwargs: dict[str, Any],
    network: dict[str, Any],
    td3: TD3Hyperparameters,
    replay: ReplayConfig,
    chunk: ChunkConfig,
    num_envs: int,
    total_steps: int,
    train_every: int = 1,
    eval_every: int = 0,
    eval_episodes: int = 5,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    on_eval: Callable[[int, float, TD3Networks], None] | None = None,
) -> tuple[TD3Networks, LocalResult]:
    """Train recurrent TD3 on ``env_id`` for ``total_steps`` env steps (all envs together).

    ``td3.updates_per_iteration`` updates run every ``train_every`` lockstep env steps once
    ``td3.learning_starts`` steps were collected (uniform random actions before that).
    ``eval_every`` > 0 evaluates the deterministic actor every that many env steps, then calls
    ``on_eval(env_steps, mean return, networks)`` (e.g. to keep snapshots of the policy).
    Returns the trained networks and the learning curve.
    """
    import memrl.envs  # noqa: F401  (registers memrl/* ids)

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def make_env() -> gym.Env:
        return gym.make(env_id, **(env_kwargs or {}))

    envs = [make_env() for _ in range(num_envs)]
    for i, env in enumerate(envs):
        env.action_space.seed(seed + i)
    networks = TD3Networks(
        envs[0].observation_space, envs[0].action_space, core, core_kwargs, network, td3.shared_core
    )
    update = TD3Update(networks, td3, seed=seed)
    spec = networks.state_spec()
    shard = ReplayShard(replay, spec, 0)
    writer = ChunkWriter(num_envs, chunk, seed=seed)
    scale = networks.scale
    initial = networks.initial_state(num_envs)

    result = LocalResult()
    began = time.perf_counter()
    obs = np.stack([env.reset(seed=seed + 1000 * i)[0] for i, env in enumerate(envs)])
    state = networks.initial_state(num_envs)
    first = np.ones(num_envs, dtype=bool)
    episode_return = np.zeros(num_envs)
    env_steps = 0
    next_eval = eval_every
    while env_steps < total_steps:
        first_t = torch.as_tensor(first)[:, None]
        with torch.no_grad():
            actor, _, next_state = networks.histories(_obs_tensor(obs), None, state, first_t)
            if env_steps < td3.learning_starts:
                action = scale.env(
                    torch.as_tensor(
                        rng.uniform(-1, 1, (num_envs, networks.action_dim)), dtype=torch.float32
                    )
                )
            else:
                action = gaussian_exploration(
                    networks.actor(actor)[:, 0], scale.low, scale.high, td3.exploration_noise
                )
        record: dict[str, np.ndarray] = {"obs": np.array(obs), "action": action.numpy()}
        if networks.stateful:
            next_state[PREV_ACTION] = action
            # A carry's value before the step (the initial one where an episode starts), a
            # window's slice produced by the step.
            after = step_record(next_state, spec)
            for key, s in spec.items():
                if s.kind == "carry":
                    value = torch.where(
                        first_t.view(-1, *[1] * len(s.shape)), initial[key], state[key]
                    )
                    record[key] = value.numpy()
                else:
                    record[key] = after[key].numpy()
        rewards = np.zeros(num_envs, dtype=np.float32)
        terminated = np.zeros(num_envs, dtype=bool)
        truncated = np.zeros(num_envs, dtype=bool)
        for i, env in enumerate(envs):
            obs[i], rewards[i], terminated[i], truncated[i], _ = env.step(action[i].numpy())
        record.update(reward=rewards, terminated=terminated, truncated=truncated, first=first)
        for c in writer.add(record):
            shard.add_chunk(c)
        episode_return += rewards
        done = terminated | truncated
        env_steps += num_envs
        for i in np.flatnonzero(done):
            result.returns.append((env_steps, float(episode_return[i])))
            episode_return[i] = 0.0
            obs[i] = envs[i].reset()[0]
        state, first = next_state, done

        step_index = env_steps // num_envs
        if env_steps >= td3.learning_starts and step_index % train_every == 0:
            for _ in range(td3.updates_per_iteration):
                if shard.num_valid_starts == 0:
                    break
                batch = shard.sample(td3.batch_size)
                out = update.update(batch)
                priority = sequence_priority(out.td_abs, out.td_mask, replay.eta)
                shard.update_priorities(batch.item_id, batch.generation, priority)
                result.updates += 1
        if eval_every and env_steps >= next_eval:
            next_eval += eval_every
            score = evaluate(networks, make_env, eval_episodes, seed=10_000 + env_steps)
            result.evaluations.append((env_steps, score))
            log.info(
                "env steps %d: eval return %.1f (%d updates)", env_steps, score, result.updates
            )
            if on_eval is not None:
                on_eval(env_steps, score, networks)
    result.time_s = time.perf_counter() - began
    return networks, result

"""Behaviour cloning on a memory core: learns what a dataset makes learnable, memory included."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from memrl.config import NetworkConfig
from memrl.data import Episode
from memrl.data.collect import random_policy, rollouts
from memrl.envs import make_env
from memrl.rllib.bc import BCActionScale, BCPolicy, BCSettings, play_bc, train_bc

ENV = "memrl/PointGoalMemory-v0"
STEPS = 12
MODEL = NetworkConfig.from_dict({"encoder_hiddens": [32]})
GRU = {"hidden_size": 32, "num_layers": 1}


def _env():
    return make_env(ENV, max_episode_steps=STEPS)


def _episodes(n: int, seed: int, action_of) -> list[Episode]:
    """Random-policy PointGoal episodes whose actions are replaced by ``action_of(episode)``."""
    env = _env()
    out = []
    for e in rollouts(env, random_policy(env.action_space, seed), n, seed):
        e.action = action_of(e).astype(np.float32)
        out.append(e)
    return out


def _played(policy: BCPolicy, episodes: list[Episode]) -> np.ndarray:
    """The policy's actions ``[N, T, d]`` along the episodes' own observations."""
    obs = torch.as_tensor(np.stack([e.obs for e in episodes]))
    first = torch.zeros(obs.shape[:2], dtype=torch.bool)
    first[:, 0] = True
    actions, _ = policy.act(obs, first, None)
    return actions


def test_learns_a_constant_action():
    torch.set_num_threads(1)
    target = np.array([0.3, -0.7])
    episodes = _episodes(8, 0, lambda e: np.tile(target, (len(e), 1)))
    settings = BCSettings(batch_size=16, seq_len=8, burn_in=4, lr=3e-3, head_hiddens=(32,))
    env = _env()
    policy, result = train_bc(
        episodes, env.observation_space, env.action_space, core="gru", core_kwargs=GRU,
        model=MODEL, settings=settings, updates=150,
    )  # fmt: skip
    assert result.updates == 150 and result.losses[-1] < 1e-3 < result.losses[0]
    played = _played(policy, _episodes(3, 99, lambda e: e.action))
    np.testing.assert_allclose(played, np.broadcast_to(target, (3, STEPS, 2)), atol=0.05)
    returns = play_bc(policy, _env, episodes=2, seed=5)
    assert len(returns) == 2 and all(np.isfinite(returns))


def test_the_core_remembers_the_cue_a_memoryless_policy_cannot():
    # The action at every step is the goal, shown only in the first observation (obs[0, 4:6]).
    torch.set_num_threads(1)

    def goal(e):
        return np.tile(e.obs[0, 4:6], (len(e), 1))

    episodes = _episodes(32, 0, goal)
    held_out = _episodes(8, 123, goal)
    settings = BCSettings(batch_size=32, seq_len=STEPS, burn_in=STEPS, lr=3e-3, head_hiddens=(32,))
    env = _env()
    errors = {}
    for core, kwargs in (("gru", GRU), ("mlp", {})):
        policy, _ = train_bc(
            episodes, env.observation_space, env.action_space, core=core, core_kwargs=kwargs,
            model=MODEL, settings=settings, updates=300,
        )  # fmt: skip
        played = _played(policy, held_out)
        errors[core] = float(
            np.abs(played[:, 1:] - np.stack([e.action for e in held_out])[:, 1:]).max()
        )
    assert errors["gru"] < 0.1 and errors["mlp"] > 0.3, errors


def test_a_sequence_in_one_call_equals_stepping_across_episode_resets():
    torch.manual_seed(0)
    env = _env()
    policy = BCPolicy(env.observation_space, env.action_space, "gru", GRU, MODEL).eval()
    obs = torch.randn(2, 9, 7)
    first = torch.zeros(2, 9, dtype=torch.bool)
    first[:, 0] = first[0, 4] = first[1, 6] = True
    whole, _ = policy.act(obs, first, None)
    state, steps = policy.initial_state(2), []
    for t in range(9):
        action, state = policy.act(obs[:, t : t + 1], first[:, t : t + 1], state)
        steps.append(action)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, rtol=0, atol=1e-6)


def test_discrete_actions_are_classified():
    torch.set_num_threads(1)
    space = gym.spaces.Discrete(4, start=1)
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            obs=rng.uniform(-1, 1, (6, 3)).astype(np.float32),
            action=np.full(6, 3),
            reward=np.zeros(6, np.float32),
            terminated=True,
            truncated=False,
            episode_id=i,
        )  # fmt: skip
        for i in range(4)
    ]
    settings = BCSettings(batch_size=8, seq_len=6, burn_in=0, lr=3e-3, head_hiddens=(16,))
    policy, result = train_bc(
        episodes, obs_space, space, core="gru", core_kwargs={"hidden_size": 16},
        model=MODEL, settings=settings, updates=60,
    )  # fmt: skip
    assert result.losses[-1] < 0.05
    assert set(_played(policy, episodes).reshape(-1).tolist()) == {3}


def test_action_scale_round_trip_and_refusals():
    box = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    scale = BCActionScale(box)
    actions = np.array([[-2.0, 0.0], [1.0, 0.25], [2.0, 1.0], [5.0, -3.0]])
    unit = scale.to_unit(actions)
    np.testing.assert_allclose(unit, [[-1, -1], [0.5, -0.5], [1, 1], [1, -1]])
    np.testing.assert_allclose(
        scale.from_output(unit), np.clip(actions, [-2, 0], [2, 1]), atol=1e-6
    )
    with pytest.raises(ValueError, match="rank-1 Box or a Discrete"):
        BCActionScale(gym.spaces.MultiBinary(2))
    with pytest.raises(ValueError, match="finite"):
        BCActionScale(gym.spaces.Box(-np.inf, np.inf, (1,), np.float32))

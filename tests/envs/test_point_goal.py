"""PointGoalMemory: spaces, the goal shown once, truncation, and that remembering it pays."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from memrl.envs import make_env
from memrl.envs.point_goal import PointGoalMemoryEnv

ENV = "memrl/PointGoalMemory-v0"


def test_spaces_and_checker() -> None:
    env = make_env(ENV)
    assert env.action_space.shape == (2,) and env.observation_space.shape == (7,)
    np.testing.assert_allclose(env.observation_space.high, [1, 1, 0.5, 0.5, 1, 1, 1], rtol=1e-6)
    check_env(make_env(ENV, disable_env_checker=True), skip_render_check=True)


def test_goal_shown_only_at_the_first_step_and_truncates_at_50() -> None:
    env = make_env(ENV)
    obs, info = env.reset(seed=3)
    np.testing.assert_allclose(obs[4:6], info["goal"], atol=1e-6)
    assert obs[6] == 1.0 and np.linalg.norm(info["goal"]) == pytest.approx(0.6)
    for t in range(1, 51):
        obs, reward, te, tr, _ = env.step(env.action_space.sample())
        assert np.all(obs[4:] == 0.0) and 0.0 <= reward <= 1.0
        assert not te and tr == (t == 50)
        assert np.all(env.observation_space.contains(obs))
    goals = {tuple(np.round(make_env(ENV).reset(seed=s)[1]["goal"], 6)) for s in range(40)}
    assert len(goals) == 4
    assert len({make_env(ENV, num_goals=0).reset(seed=s)[1]["goal"][0] for s in range(5)}) == 5


def _run(env, policy, seed: int) -> float:
    obs, info = env.reset(seed=seed)
    remembered = obs[4:6].copy()
    total, done = 0.0, False
    while not done:
        obs, r, te, tr, _ = env.step(policy(obs, remembered))
        total += r
        done = te or tr
    return total


def test_remembering_the_goal_pays() -> None:
    """A PD controller that keeps the goal from step 0 beats one that sees only the current
    observation (the goal is zero there) by a wide margin."""
    env = make_env(ENV)

    def pd(target):
        return lambda obs, _: np.clip(3.0 * (target(obs) - obs[:2]) - 4.0 * obs[2:4], -1, 1)

    with_memory = np.mean([_run(env, lambda o, g: pd(lambda _: g)(o, g), s) for s in range(8)])
    without = np.mean([_run(env, lambda o, g: pd(lambda x: x[4:6])(o, g), s) for s in range(8)])
    assert with_memory > 40 and without < 25 and with_memory > without + 15


def test_walls_and_errors() -> None:
    env = PointGoalMemoryEnv()
    env.reset(seed=0)
    for _ in range(60):
        obs, *_ = env.step(np.array([1.0, 1.0], np.float32))
    assert np.all(obs[:2] == 1.0)
    with pytest.raises(ValueError, match="num_goals"):
        PointGoalMemoryEnv(num_goals=-1)
    with pytest.raises(ValueError, match="goal_radius"):
        make_env(ENV, goal_radius=2.0)
    with pytest.raises(ValueError, match="unknown kwarg"):
        make_env(ENV, goal=3)

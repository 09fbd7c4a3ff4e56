"""Continuous-action POMDPs (-P/-V): exact spaces, masking, seeding, truncation vs termination."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from memrl.envs import list_envs, make_env
from memrl.envs.continuous import ContinuousCartPoleEnv, MaskObservation

INF = np.inf


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
@pytest.mark.parametrize(
    ("env_id", "low", "high"),
    [
        ("memrl/Pendulum-F-v0", [-1, -1, -8], [1, 1, 8]),
        ("memrl/Pendulum-P-v0", [-1, -1], [1, 1]),
        ("memrl/Pendulum-V-v0", [-8], [8]),
        (
            "memrl/CartPoleContinuous-F-v0",
            [-4.8, -INF, -0.41887903, -INF],
            [4.8, INF, 0.41887903, INF],
        ),
        ("memrl/CartPoleContinuous-P-v0", [-4.8, -0.41887903], [4.8, 0.41887903]),
        ("memrl/CartPoleContinuous-V-v0", [-INF, -INF], [INF, INF]),
    ],
)
def test_spaces_exact(env_id: str, low: list, high: list) -> None:
    env = make_env(env_id)
    expected = gym.spaces.Box(np.array(low, np.float32), np.array(high, np.float32))
    assert env.observation_space == expected
    assert env.observation_space.dtype == np.float32
    bound = 2.0 if "Pendulum" in env_id else 1.0
    assert env.action_space == gym.spaces.Box(-bound, bound, (1,), np.float32)
    check_env(make_env(env_id, disable_env_checker=True), skip_render_check=True)


def test_variants_show_the_right_entries() -> None:
    full, pos, vel = (make_env(f"memrl/CartPoleContinuous-{v}-v0") for v in "FPV")
    obs = [e.reset(seed=4)[0] for e in (full, pos, vel)]
    np.testing.assert_array_equal(obs[1], obs[0][[0, 2]])
    np.testing.assert_array_equal(obs[2], obs[0][[1, 3]])
    for _ in range(10):
        obs = [e.step(np.array([0.3], np.float32))[0] for e in (full, pos, vel)]
        np.testing.assert_array_equal(obs[1], obs[0][[0, 2]])
        np.testing.assert_array_equal(obs[2], obs[0][[1, 3]])
    f, p, v = (make_env(f"memrl/Pendulum-{v}-v0") for v in "FPV")
    o = [e.reset(seed=1)[0] for e in (f, p, v)]
    np.testing.assert_array_equal(o[1], o[0][:2])
    np.testing.assert_array_equal(o[2], o[0][2:])


@pytest.mark.parametrize("env_id", list_envs("continuous"))
def test_seeded_reproducibility(env_id: str) -> None:
    def rollout(seed: int) -> list:
        env = make_env(env_id)
        env.action_space.seed(seed)
        out = [env.reset(seed=seed)[0].tolist()]
        for _ in range(50):
            obs, r, te, tr, _ = env.step(env.action_space.sample())
            out.append((obs.tolist(), r, te, tr))
            if te or tr:
                out.append(env.reset()[0].tolist())
        return out

    assert rollout(0) == rollout(0)
    assert rollout(0) != rollout(1)


def test_pendulum_truncates_at_200() -> None:
    env = make_env("memrl/Pendulum-P-v0")
    env.reset(seed=0)
    for t in range(1, 201):
        _, _, te, tr, _ = env.step(np.zeros(1, np.float32))
        assert not te and tr == (t == 200)


def test_cartpole_terminates_when_pole_falls_and_truncates_when_balanced() -> None:
    env = make_env("memrl/CartPoleContinuous-F-v0")
    obs, _ = env.reset(seed=0)
    for _ in range(100):
        obs, r, te, tr, _ = env.step(np.ones(1, np.float32))  # full force one way
        if te:
            break
    assert te and not tr and (abs(obs[0]) > 2.4 or abs(obs[2]) > 0.2094)
    # A PD controller on the full state balances it until the time limit.
    obs, _ = env.reset(seed=0)
    total, te, tr = 0.0, False, False
    while not (te or tr):
        force = 1.0 * obs[2] * 10 + 0.5 * obs[3] + 0.05 * obs[0] + 0.1 * obs[1]
        obs, r, te, tr, _ = env.step(np.clip([force], -1, 1).astype(np.float32))
        total += r
    assert tr and not te and total == 500


def test_errors() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        make_env("memrl/Pendulum-P-v0", variant="X")
    with pytest.raises(ValueError, match="keep"):
        MaskObservation(ContinuousCartPoleEnv(), keep=[4])
    with pytest.raises(ValueError, match=r"closest: \[[^]]*'memrl/Pendulum-P-v0'"):
        make_env("memrl/Pendulum-Q-v0")

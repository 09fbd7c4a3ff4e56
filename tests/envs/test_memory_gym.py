"""Memory Gym ids: spaces, seeding, terminated vs truncated, Easy options, copies, errors."""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("memory_gym", reason="memory-gym not installed (scripts/setup_envs.sh)")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from memrl.envs import list_envs, make_env  # noqa: E402
from memrl.envs.memory_gym import EASY_OPTIONS, MemoryGymEnv  # noqa: E402

IDS = list_envs("memory_gym")
FRAME = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)


def test_all_tasks_registered() -> None:
    names = {i.removeprefix("memrl/") for i in IDS}
    for task in ("MysteryPath", "MortarMayhem", "SearingSpotlights"):
        assert f"{task}-v0" in names and f"Endless-{task}-v0" in names
    assert {"MysteryPath-Grid-v0", "MortarMayhem-Grid-v0", "MortarMayhemB-Grid-v0"} <= names
    assert {"MysteryPath-Easy-v0", "MysteryPath-Grid-Easy-v0"} <= names


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_and_a_few_steps(env_id: str) -> None:
    env = make_env(env_id)
    if "MortarMayhemB" in env_id:
        assert env.observation_space == gym.spaces.Dict(
            {"visual_observation": FRAME, "vector_observation": gym.spaces.Box(0, 1, (180,))}
        )
    else:
        assert env.observation_space == FRAME
    if "Grid" in env_id or env_id == "memrl/Endless-MysteryPath-v0":
        assert env.action_space == gym.spaces.Discrete(4)
    else:
        assert env.action_space == gym.spaces.MultiDiscrete([3, 3])
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.action_space.seed(0)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()


def _digest(env: gym.Env, seed: int, steps: int) -> str:
    h = hashlib.sha256()
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    h.update(np.ascontiguousarray(obs).tobytes())
    for _ in range(steps):
        obs, r, te, tr, _ = env.step(env.action_space.sample())
        h.update(np.ascontiguousarray(obs).tobytes() + repr((r, te, tr)).encode())
        if te or tr:
            h.update(np.ascontiguousarray(env.reset()[0]).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("env_id", ["memrl/MysteryPath-Grid-v0", "memrl/SearingSpotlights-v0"])
def test_seeded_rollouts_reproduce(env_id: str) -> None:
    assert _digest(make_env(env_id), 3, 150) == _digest(make_env(env_id), 3, 150)
    assert _digest(make_env(env_id), 3, 150) != _digest(make_env(env_id), 4, 150)


def test_check_env() -> None:
    check_env(MemoryGymEnv("MysteryPath-Grid-v0"), skip_render_check=True)


def test_time_limit_is_truncation() -> None:
    env = make_env("memrl/MysteryPath-Grid-v0", max_steps=6)
    for seed in range(3):
        env.reset(seed=seed)
        flags = []
        for _ in range(6):
            _, _, te, tr, info = env.step(0)  # never reaches the goal in 6 steps
            flags.append((te, tr))
            if te or tr:
                break
        assert flags[-1] == (False, True) and len(flags) == 6
    # the task's own default limit (128) also truncates
    env = make_env("memrl/MysteryPath-Grid-v0")
    env.reset(seed=0)
    n, te, tr = 0, False, False
    while not (te or tr):
        _, _, te, tr, _ = env.step(0)
        n += 1
    assert (n, te, tr) == (128, False, True)


def test_failure_is_termination() -> None:
    # Standing still in Mortar Mayhem fails the first command: the episode terminates.
    env = make_env("memrl/MortarMayhem-Grid-v0")
    for seed in range(3):
        env.reset(seed=seed)
        te = tr = False
        n = 0
        while not (te or tr):
            _, _, te, tr, info = env.step(0)
            n += 1
            assert n < 1000
        assert te and not tr and info["success"] == 0


def test_easy_variant_applies_options() -> None:
    easy, base = make_env("memrl/MysteryPath-Grid-Easy-v0"), make_env("memrl/MysteryPath-Grid-v0")
    obs_easy, _ = easy.reset(seed=5)
    obs_base, _ = base.reset(seed=5)
    params = easy.unwrapped._env.reset_params
    assert {k: params[k] for k in EASY_OPTIONS} == EASY_OPTIONS
    assert not base.unwrapped._env.reset_params["show_goal"]
    assert not np.array_equal(obs_easy, obs_base)  # origin and goal are drawn


def test_observations_are_copies() -> None:
    env = make_env("memrl/MortarMayhemB-Grid-v0")
    obs0, _ = env.reset(seed=0)
    obs1, *_ = env.step(0)
    assert obs0["visual_observation"] is not obs1["visual_observation"]
    before = obs1["visual_observation"].copy()
    obs0["visual_observation"][:] = 7
    assert np.array_equal(obs1["visual_observation"], before)


def test_errors() -> None:
    with pytest.raises(ValueError, match="show_gaol.*valid: .*show_goal"):
        make_env("memrl/MysteryPath-Grid-v0").reset(options={"show_gaol": True})
    with pytest.raises(ValueError, match="reset_option"):
        make_env("memrl/MysteryPath-Grid-v0", reset_option={})
    with pytest.raises(ValueError, match="max_steps"):
        MemoryGymEnv("MysteryPath-Grid-v0", max_steps=0)
    with pytest.raises(ValueError, match="unknown Memory Gym task"):
        MemoryGymEnv("MysteryPath-Hard-v0")
    with pytest.raises(ValueError, match="closest: .*memrl/MysteryPath-Grid-Easy-v0"):
        make_env("MysteryPath-Grid-Easy-v0")

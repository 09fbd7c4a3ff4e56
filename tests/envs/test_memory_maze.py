"""Memory Maze: spaces, check_env, seeding, truncation, the vectorised contact check, processes."""

from __future__ import annotations

import hashlib
import importlib.util
import multiprocessing as mp
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

if importlib.util.find_spec("memory_maze") is None:
    pytest.skip("memory-maze not installed (scripts/setup_envs.sh)", allow_module_level=True)

from gymnasium.utils.env_checker import check_env  # noqa: E402

from memrl.envs import make_env  # noqa: E402
from memrl.envs.memory_maze import MemoryMazeEnv, make_vector_env  # noqa: E402


@pytest.mark.slow  # tens of seconds of CPU (seeded resets rebuild the task)
def test_spaces_and_check_env() -> None:
    env = make_env("memrl/MemoryMaze-9x9-v0")
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(6)
    check_env(MemoryMazeEnv("9x9"), skip_render_check=True)


def _frames(env: MemoryMazeEnv, seed: int | None, steps: int, actions_seed: int = 0) -> str:
    h = hashlib.sha256()
    obs, _ = env.reset(seed=seed)
    h.update(obs.tobytes())
    rng = np.random.default_rng(actions_seed)
    for _ in range(steps):
        obs, r, *_ = env.step(int(rng.integers(6)))
        h.update(obs.tobytes() + repr(r).encode())
    return h.hexdigest()


def test_seeded_reset_reproduces_episode() -> None:
    env = MemoryMazeEnv("9x9")
    a = _frames(env, 5, 20)
    _frames(env, None, 5)  # an unseeded episode in between moves labmaze's RNG on
    assert _frames(env, 5, 20) == a
    assert _frames(MemoryMazeEnv("9x9"), 5, 20) == a
    assert _frames(env, 6, 20) != a


@pytest.mark.slow  # tens of seconds of CPU (seeded resets rebuild the task)
def test_episode_ends_by_truncation_at_time_limit() -> None:
    env = MemoryMazeEnv("9x9")
    env.reset(seed=0)
    for t in range(1, 1001):
        _, _, terminated, truncated, _ = env.step(0)
        assert not terminated
        assert truncated == (t == 1000)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def _steer(env: MemoryMazeEnv, rng: np.random.Generator, mem: dict[str, Any]) -> int:
    """Head for the current target, turning randomly when stuck: it touches targets, so the
    rollout exercises the activation check. Reads the task's observables, which has no effect
    on the simulation."""
    inner = env._dm
    while hasattr(inner, "env"):
        inner = inner.env
    obs = inner._observation_updater.get_observation()
    x, y = obs[f"walker/target_rel_{int(obs['target_index'])}"][:2]  # egocentric, +y ahead
    pos = obs["absolute_position"][:2].copy()
    if mem.get("escape", 0) > 0:
        mem["escape"] -= 1
        return mem["escape_action"]
    moved = "pos" not in mem or np.linalg.norm(pos - mem["pos"]) >= 0.05
    mem["pos"], mem["stuck"] = pos, 0 if moved else mem.get("stuck", 0) + 1
    if mem["stuck"] > 2:
        mem["escape"], mem["escape_action"] = (
            int(rng.integers(3, 10)),
            int(rng.choice([2, 3, 4, 5])),
        )
        mem["stuck"] = 0
        return mem["escape_action"]
    angle = np.arctan2(x, y)
    if abs(angle) < 0.3:
        return 1  # forward
    if angle < 0:
        return 4 if abs(angle) < 1.0 else 2  # forward+left, left
    return 5 if abs(angle) < 1.0 else 3  # forward+right, right


def _rollout(fast: bool, seed: int = 2, steps: int = 300) -> tuple[list[str], list[float]]:
    env = MemoryMazeEnv("9x9", fast_contacts=fast)
    obs, _ = env.reset(seed=seed)
    rng, mem = np.random.default_rng(seed), {}
    frames, rewards = [hashlib.sha256(obs.tobytes()).hexdigest()], []
    for _ in range(steps):
        obs, reward, *_ = env.step(_steer(env, rng, mem))
        frames.append(hashlib.sha256(obs.tobytes()).hexdigest())
        rewards.append(reward)
    env.close()
    return frames, rewards


@pytest.mark.slow  # tens of seconds of CPU (seeded resets rebuild the task)
def test_vectorised_contact_check_matches_dm_control() -> None:
    fast_frames, fast_rewards = _rollout(fast=True)
    slow_frames, slow_rewards = _rollout(fast=False)
    assert sum(fast_rewards) >= 1  # targets were touched: the patched code path decided something
    assert fast_rewards == slow_rewards
    assert fast_frames == slow_frames


def test_patch_is_per_env() -> None:
    fast, slow = MemoryMazeEnv("9x9", fast_contacts=True), MemoryMazeEnv("9x9", fast_contacts=False)
    fast.reset(seed=0)
    slow.reset(seed=0)
    assert all("_update_activation" in vars(t) for t in fast._dm.task._targets)
    assert not any("_update_activation" in vars(t) for t in slow._dm.task._targets)


def _use_in_child(env: MemoryMazeEnv, queue: Any) -> None:
    try:
        env.step(0)
        queue.put("no error")
    except RuntimeError as err:
        queue.put(str(err))


def test_forked_child_raises_instead_of_hanging() -> None:
    env = MemoryMazeEnv("9x9")
    env.reset(seed=0)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_use_in_child, args=(env, queue))
    child.start()
    message = queue.get(timeout=60)
    child.join(timeout=30)
    assert "fork" in message and "spawn" in message


def test_spawn_vector_env() -> None:
    venv = make_vector_env(2, "9x9")
    try:
        obs, _ = venv.reset(seed=[0, 1])
        assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
        assert not np.array_equal(obs[0], obs[1])
        obs, reward, terminated, truncated, _ = venv.step(np.array([1, 1]))
        assert obs.shape == (2, 64, 64, 3) and reward.shape == (2,)
    finally:
        venv.close()


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"size '8x8'.*9x9"):
        MemoryMazeEnv("8x8")
    with pytest.raises(ValueError, match="fast_contact"):
        make_env("memrl/MemoryMaze-9x9-v0", fast_contact=True)
    with pytest.raises(RuntimeError, match="before reset"):
        MemoryMazeEnv("9x9").step(0)

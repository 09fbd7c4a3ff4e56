"""POPGym: every id through gymnasium and through memrl (with POPGym's wrappers), check_env."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("popgym")
from gymnasium.utils.env_checker import check_env
from popgym.wrappers import PreviousAction

from memrl.envs import list_envs, make_env
from memrl.envs.popgym_envs import make_popgym, popgym_classes

POPGYM_IDS = sorted(popgym_classes())


def test_every_popgym_id_is_a_memrl_id() -> None:
    assert len(POPGYM_IDS) >= 42
    assert list_envs("popgym") == sorted(f"memrl/{i}" for i in POPGYM_IDS)


def test_labyrinth_ids_present_with_mazelib() -> None:
    if importlib.util.find_spec("mazelib") is None:
        pytest.skip("mazelib is not installed, so POPGym registers no Labyrinth ids")
    assert any("Labyrinth" in i for i in POPGYM_IDS)


def _few_steps(env: gym.Env, seed: int = 0, steps: int = 5) -> list:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    assert env.observation_space.contains(obs)
    trace = [repr(obs)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert not (terminated and truncated)
        trace.append(repr((obs, float(reward), terminated, truncated)))
        if terminated or truncated:
            obs, _ = env.reset()
    return trace


@pytest.mark.parametrize("popgym_id", POPGYM_IDS)
def test_every_id_through_gymnasium_and_memrl(popgym_id: str) -> None:
    _few_steps(gym.make(popgym_id))
    env = make_env(f"memrl/{popgym_id}", wrappers=["PreviousAction"])
    raw = make_popgym(popgym_id)
    # PreviousAction appends the action space (to a Tuple, or as a new Tuple).
    expected = PreviousAction.add_act_space_to_obs_space(raw.observation_space, raw.action_space)
    assert env.observation_space == expected != raw.observation_space
    assert env.action_space == raw.action_space
    assert _few_steps(env, seed=3) == _few_steps(
        make_env(f"memrl/{popgym_id}", wrappers=["PreviousAction"]), seed=3
    )
    check_env(make_popgym(popgym_id), skip_render_check=True)


def test_repeat_previous_spaces_exact() -> None:
    env = make_env("memrl/popgym-RepeatPreviousEasy-v0")
    assert env.observation_space == gym.spaces.Discrete(4)
    assert env.action_space == gym.spaces.Discrete(4)
    env = make_env("memrl/popgym-PositionOnlyCartPoleEasy-v0")
    assert env.observation_space.shape == (2,) and env.observation_space.dtype == np.float32


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown POPGym wrapper.*PreviousAction"):
        make_env("memrl/popgym-RepeatPreviousEasy-v0", wrappers=["PrevAction"])
    with pytest.raises(ValueError, match="unknown POPGym id"):
        make_popgym("popgym-RepeatPreviousEasiest-v0")
    with pytest.raises(ValueError, match="closest: .*popgym-RepeatPreviousEasy-v0"):
        make_env("popgym-RepeatPreviousEsy-v0")

"""T-Maze: spaces, seeding, optimal return, the memoryless bound, termination vs truncation."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import memrl.envs  # noqa: F401  (registers the ids)
from memrl.envs import make_env
from memrl.envs.tmaze import DOWN, LEFT, RIGHT, UP, TMazeEnv, optimal_return


def test_spaces_exact() -> None:
    env = make_env("memrl/TMaze-120-v0")
    assert env.observation_space == gym.spaces.MultiBinary(9)
    assert env.action_space == gym.spaces.Discrete(4)
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.int8 and obs.shape == (9,)
    assert env.observation_space.contains(obs)
    assert TMazeEnv(num_distractors=0).observation_space == gym.spaces.MultiBinary(3)


def test_check_env() -> None:
    check_env(TMazeEnv(corridor_len=5, num_distractors=6), skip_render_check=True)


def _rollout(env: gym.Env, seed: int, steps: int) -> list[tuple]:
    rng = np.random.default_rng(123)
    out = []
    obs, _ = env.reset(seed=seed)
    out.append(tuple(obs))
    for _ in range(steps):
        obs, r, te, tr, _ = env.step(int(rng.integers(4)))
        out.append((tuple(obs), r, te, tr))
        if te or tr:
            obs, _ = env.reset()
            out.append(tuple(obs))
    return out


def test_seeding_reproduces_trajectory() -> None:
    a = _rollout(TMazeEnv(corridor_len=4, num_distractors=6, max_steps=30), seed=7, steps=3000)
    b = _rollout(TMazeEnv(corridor_len=4, num_distractors=6, max_steps=30), seed=7, steps=3000)
    c = _rollout(TMazeEnv(corridor_len=4, num_distractors=6, max_steps=30), seed=8, steps=3000)
    assert a == b
    assert a != c
    # Re-seeding the same instance mid-stream restarts the same trajectory.
    env = TMazeEnv(corridor_len=4, num_distractors=6, max_steps=30)
    _rollout(env, seed=99, steps=500)
    assert _rollout(env, seed=7, steps=3000) == a


def test_goal_is_random_over_seeds() -> None:
    env = TMazeEnv()
    goals = [env.reset(seed=s)[1]["goal"] for s in range(200)]
    assert 60 < sum(goals) < 140


@pytest.mark.parametrize("corridor_len", [2, 10, 120])
def test_optimal_policy_gets_optimal_return(corridor_len: int) -> None:
    env = make_env("memrl/TMaze-v0", corridor_len=corridor_len, num_distractors=6)
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        goal = UP if tuple(obs[:3]) == (0, 1, 1) else DOWN  # remembered from the first step
        assert goal == info["goal"]
        total, steps = 0.0, 0
        while True:
            at_junction = tuple(obs[:3]) == (0, 1, 0)
            obs, r, te, tr, info = env.step(goal if at_junction else RIGHT)
            total += r
            steps += 1
            if te or tr:
                break
        assert te and not tr and info["success"]
        assert steps == corridor_len
        assert total == pytest.approx(optimal_return(corridor_len))
        assert total == pytest.approx(4 - 0.1 * (corridor_len - 1))


def test_wrong_arm_reward_and_corridor_up_down_are_wasted_steps() -> None:
    env = TMazeEnv(corridor_len=3)
    env.reset(seed=0, options={"goal": UP})
    obs, r, te, tr, _ = env.step(UP)  # in the corridor: no move, no end
    assert (r, te, tr) == (pytest.approx(-0.1), False, False)
    assert tuple(obs[:3]) == (1, 0, 1)
    env.step(LEFT)  # clamped at the start
    env.step(RIGHT)
    obs, *_ = env.step(RIGHT)
    assert tuple(obs[:3]) == (0, 1, 0)
    _, r, te, tr, info = env.step(DOWN)
    assert r == -1.0 and te and not tr and info["success"] is False


def _memoryless_success(policy: dict[tuple, int], corridor_len: int, goal: int) -> bool:
    env = TMazeEnv(corridor_len=corridor_len, num_distractors=0, max_steps=4 * corridor_len)
    obs, _ = env.reset(seed=0, options={"goal": goal})
    while True:
        obs, _, te, tr, info = env.step(policy[tuple(obs)])
        if te or tr:
            return bool(te and info["success"])


def test_memoryless_policies_cannot_exceed_half_success() -> None:
    # Without distractors the observation is one of 4 bit patterns, so 4**4 deterministic
    # memoryless policies cover them all; with distractors the extra bits are coin flips that
    # carry no information about the goal, so they cannot help either.
    patterns = [(0, 1, 1), (1, 1, 0), (1, 0, 1), (0, 1, 0)]
    best = 0.0
    for actions in itertools.product(range(4), repeat=4):
        policy = dict(zip(patterns, actions, strict=True))
        rate = np.mean([_memoryless_success(policy, 5, g) for g in (UP, DOWN)])
        best = max(best, rate)
    assert best == 0.5
    # The junction observation is the same whatever the goal (distractors aside).
    env = TMazeEnv(corridor_len=2, num_distractors=6)
    junction = set()
    for goal in (UP, DOWN):
        env.reset(seed=3, options={"goal": goal})
        junction.add(tuple(env.step(RIGHT)[0][:3]))
    assert junction == {(0, 1, 0)}


def test_time_limit_truncates_not_terminates() -> None:
    env = make_env("memrl/TMaze-v0", corridor_len=10, max_steps=7)
    env.reset(seed=0)
    for i in range(7):
        _, _, te, tr, _ = env.step(LEFT)
        assert not te
        assert tr == (i == 6)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(LEFT)


def test_distractors_zero_at_first_step_then_random() -> None:
    env = TMazeEnv(corridor_len=50, num_distractors=6)
    obs, _ = env.reset(seed=0)
    assert not obs[3:].any()
    bits = np.array([env.step(LEFT)[0][3:] for _ in range(400)])
    assert 0.4 < bits.mean() < 0.6


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"corridor_len": 1}, "corridor_len"),
        ({"num_distractors": -1}, "num_distractors"),
        ({"max_steps": 0}, "max_steps"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_kwargs_raise_naming_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TMazeEnv(**kwargs)


def test_make_env_errors() -> None:
    with pytest.raises(ValueError, match=r"closest: \['memrl/TMaze-v0'"):
        make_env("memrl/TMase-v0")
    with pytest.raises(ValueError, match=r"unknown kwarg\(s\) \['corridor'\].*corridor_len"):
        make_env("memrl/TMaze-v0", corridor=3)


def _authors_gray(pos: int, width: int = 8) -> list[int]:
    """The Gray code as the authors' tmazev2 writes it: MSB-first binary, each bit after the
    first XOR-ed with the bit before it."""
    binary = [int(b) for b in np.binary_repr(pos, width=width)]
    return [binary[0]] + [binary[i - 1] ^ binary[i] for i in range(1, width)]


def test_position_observation_is_the_authors_tmazev2_layout() -> None:
    env = TMazeEnv(corridor_len=200, num_distractors=6, max_steps=1000, observation="position")
    assert env.observation_space == gym.spaces.MultiBinary(2 + 8 + 6)
    check_env(env, skip_render_check=True)
    for goal, cue in ((UP, [0, 1]), (DOWN, [1, 0])):
        obs, _ = env.reset(seed=3, options={"goal": goal})
        assert obs.tolist() == cue + _authors_gray(0) + [0] * 6  # no distractors at the start
        obs, *_ = env.step(LEFT)  # against the wall: still cell 0, the cue gone
        assert obs[:10].tolist() == [0, 0] + _authors_gray(0)
        for pos in range(1, 200):
            obs, reward, terminated, truncated, _ = env.step(RIGHT)
            assert obs[:10].tolist() == [0, 0] + _authors_gray(pos), pos
            assert (reward, terminated, truncated) == (-0.1, False, False)
        # The junction looks like any other cell but for its position; the cued arm pays 4.
        obs, reward, terminated, _, info = env.step(goal)
        assert (reward, terminated, info["success"]) == (4.0, True, True)
    # A corridor past 256 cells gets a wider code.
    wide = TMazeEnv(corridor_len=300, num_distractors=0, observation="position")
    assert wide.observation_space == gym.spaces.MultiBinary(2 + 9)


def test_position_observation_keeps_dynamics_rewards_and_distractors() -> None:
    kwargs = {"corridor_len": 5, "num_distractors": 4, "max_steps": 25}
    cells = _rollout(TMazeEnv(**kwargs), seed=11, steps=2000)
    position = _rollout(TMazeEnv(**kwargs, observation="position"), seed=11, steps=2000)
    assert len(cells) == len(position)
    for a, b in zip(cells, position, strict=True):
        if len(a) == 4:  # a step: reward, terminated, truncated equal; the distractors too
            assert a[1:] == b[1:] and a[0][3:] == b[0][10:]


def test_bad_observation_names_the_field_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"observation must be one of \['cells', 'position'\]"):
        TMazeEnv(observation="pixels")

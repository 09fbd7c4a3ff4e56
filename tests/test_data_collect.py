"""``memrl data collect CHECKPOINT``: trained policies rolled out into datasets, known answers.

The checkpoints have hand-set last layers (tests/crafted.py): a TD3 actor that plays
``TD3_ACTION`` at every step of Pendulum-P, an R2D2 whose argmax Q is ``RIGHT`` on T-Maze, a PPO
whose Gaussian mean is 0.5 (normalised units) on Pendulum-P. So the recorded actions are known
exactly without noise, and their distribution is known with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from memrl.cli import main
from memrl.config import ConfigError, load_config
from memrl.data import load_episodes
from memrl.eval_policies import eval_config
from memrl.resources import ResolvedResources
from memrl.rollout import ALLOWED, behaviour_for, episode_from_rllib, executed_actions
from memrl.session import build_algorithm_config
from tests.crafted import (
    MAX_STEPS,
    R2D2,
    RIGHT,
    TD3,
    TD3_ACTION,
    always_right,
    constant_torque,
    save_crafted,
)

PENDULUM_STEPS = 200


@pytest.fixture(scope="module")
def td3_ckpt(ray_local, tmp_path_factory) -> Path:
    return save_crafted("td3/pendulum_p_gru", TD3, tmp_path_factory.mktemp("td3"), constant_torque)


# PPO on Pendulum-P: greedy = the Gaussian's mean, 0.5 in RLlib's normalised action units.
PPO = [
    "algo=ppo",
    "model.core_kwargs.hidden_size=8",
    "model.network.encoder_hiddens=[8]",
    "ppo.train_batch_size_per_learner=64",
    "ppo.minibatch_size=32",
    "resources.num_env_runners=0",
    "resources.num_envs_per_env_runner=1",
    "resources.num_learners=0",
    "resources.num_gpus_per_learner=0",
]


def _mean_half(module) -> None:
    last = module.pi_head[-1].linear
    last.weight.zero_()
    last.bias.fill_(0.5)


@pytest.fixture(scope="module")
def ppo_ckpt(ray_local, tmp_path_factory) -> Path:
    return save_crafted("td3/pendulum_p_gru", PPO, tmp_path_factory.mktemp("ppo"), _mean_half)


@pytest.fixture(scope="module")
def r2d2_ckpt(ray_local, tmp_path_factory) -> Path:
    return save_crafted("r2d2/tmaze_gru", R2D2, tmp_path_factory.mktemp("r2d2"), always_right)


def _collect(source: Path | str, out: Path, episodes: int, *flags: str) -> int:
    return main(
        ["data", "collect", str(source), "--episodes", str(episodes), "--out", str(out), *flags]
    )


def _actions(out: Path) -> np.ndarray:
    _, episodes = load_episodes(out)
    return np.concatenate([np.asarray(e.action, np.float64).reshape(-1) for e in episodes])


def test_td3_without_noise_records_the_actor_and_info_shows_the_collector(
    td3_ckpt, tmp_path, capsys
):
    out = tmp_path / "td3"
    assert _collect(td3_ckpt, out, 2, "--noise", "0", "--seed", "3") == 0
    info, episodes = load_episodes(out)
    assert info.env_id == "memrl/Pendulum-P-v0" and len(episodes) == 2
    for e in episodes:
        assert len(e) == PENDULUM_STEPS and e.truncated and not e.terminated
        np.testing.assert_allclose(e.action, TD3_ACTION, rtol=1e-6)
        # Pendulum-P observes (cos th, sin th): every observation, the final one included.
        obs = np.concatenate([e.obs, e.final_obs[None]])
        np.testing.assert_allclose(np.linalg.norm(obs, axis=1), 1.0, rtol=1e-5)
        assert e.reward.dtype == np.float32 and np.all(e.reward <= 0)
    assert not np.array_equal(episodes[0].obs[0], episodes[1].obs[0])  # two different starts
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    collector = json.loads(capsys.readouterr().out)["collector"]
    assert collector["policy"] == "checkpoint" and collector["algo"] == "td3"
    assert collector["checkpoint"] == str(td3_ckpt)
    assert (collector["noise"], collector["epsilon"], collector["seed"]) == (0.0, None, 3)
    assert collector["behaviour"].startswith("actor + Gaussian noise")


def test_td3_noise_is_the_clipped_gaussian_of_that_sigma(td3_ckpt, tmp_path):
    out = tmp_path / "noisy"
    assert _collect(td3_ckpt, out, 3, "--noise", "0.5") == 0
    actions = _actions(out)
    assert actions.size == 3 * PENDULUM_STEPS
    assert actions.min() >= -2.0 and actions.max() <= 2.0
    # std 0.5 half ranges = 1.0 torque around the actor's action, clipped to [-2, 2].
    expected = np.clip(np.random.default_rng(0).normal(TD3_ACTION, 1.0, 10**6), -2.0, 2.0)
    n = actions.size
    assert abs(actions.mean() - expected.mean()) < 4 * expected.std() / np.sqrt(n)
    assert abs(actions.std() - expected.std()) < 4 * expected.std() / np.sqrt(2 * n)
    clipped = np.mean(actions == 2.0)  # P(a + noise > 2) = 0.14
    assert abs(clipped - np.mean(expected == 2.0)) < 0.06


def test_td3_without_a_flag_plays_the_deterministic_actor(td3_ckpt, tmp_path):
    out = tmp_path / "det"
    assert _collect(td3_ckpt, out, 1) == 0
    np.testing.assert_allclose(_actions(out), TD3_ACTION, rtol=1e-6)
    info, _ = load_episodes(out)
    assert info.collector["behaviour"] == "deterministic actor" and info.collector["noise"] is None


def test_r2d2_epsilon_zero_is_greedy_and_epsilon_is_seeded(r2d2_ckpt, tmp_path):
    greedy = tmp_path / "greedy"
    assert _collect(r2d2_ckpt, greedy, 4, "--epsilon", "0") == 0
    info, episodes = load_episodes(greedy)
    assert info.action_space == gym.spaces.Discrete(4)
    assert all(len(e) == MAX_STEPS and e.truncated and not e.terminated for e in episodes)
    assert {int(a) for e in episodes for a in e.action} == {RIGHT}
    assert info.collector["epsilon"] == 0.0 and info.collector["algo"] == "r2d2"

    runs = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert _collect(r2d2_ckpt, tmp_path / name, 8, "--epsilon", "1", "--seed", seed) == 0
        runs.append(_actions(tmp_path / name))
    assert set(runs[0].astype(int)) == {0, 1, 2, 3}  # epsilon 1: uniform over the 4 actions
    assert np.mean(runs[0] == RIGHT) < 0.6
    np.testing.assert_array_equal(runs[0], runs[1])  # same seed, same data
    assert not np.array_equal(runs[0], runs[2])


def test_ppo_greedy_records_the_executed_mean_action(ppo_ckpt, tmp_path):
    out = tmp_path / "ppo"
    assert _collect(ppo_ckpt, out, 1) == 0
    info, (episode,) = load_episodes(out)
    assert info.collector["algo"] == "ppo" and info.collector["behaviour"].startswith("greedy")
    # What RLlib sent the env for the module's 0.5 (unsquashed into [-2, 2] when its PPO config
    # normalises actions, as RLlib's default does): not the 0.5 its episodes store.
    cfg = load_config(ppo_ckpt / "config.yaml")
    local = ResolvedResources(
        num_env_runners=0, num_envs_per_env_runner=1, num_learners=0, num_gpus_per_learner=0
    )
    rllib = build_algorithm_config(eval_config(cfg, str(tmp_path)), local)
    expected = executed_actions(
        np.array([[0.5]]), info.action_space, rllib.normalize_actions, rllib.clip_actions
    )
    assert rllib.normalize_actions and expected[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(
        episode.action, np.broadcast_to(expected, (PENDULUM_STEPS, 1)), rtol=1e-5
    )


@pytest.mark.parametrize(
    ("which", "flags", "named"),
    [
        ("td3", ["--epsilon", "0.1"], "--epsilon"),
        ("r2d2", ["--noise", "0.1"], "--noise"),
        ("td3", ["--noise", "0.1", "--epsilon", "0.1"], "--noise and --epsilon"),
        ("td3", ["--noise", "-1"], "--noise"),
        ("r2d2", ["--epsilon", "1.5"], "--epsilon"),
        ("env", ["--noise", "0.1"], "--noise"),
        ("env", ["--epsilon", "0.1"], "--epsilon"),
        ("ppo", ["--noise", "0.1"], "--noise"),
        ("ppo", ["--epsilon", "0.1"], "--epsilon"),
        ("td3", ["--episodes", "0"], "--episodes"),
    ],
)
def test_flags_not_allowed_are_one_line_and_write_nothing(
    which, flags, named, td3_ckpt, r2d2_ckpt, ppo_ckpt, tmp_path, capsys
):
    sources = {"td3": td3_ckpt, "r2d2": r2d2_ckpt, "ppo": ppo_ckpt}
    source = sources.get(which, "memrl/PointGoalMemory-v0")
    out = tmp_path / "never"
    capsys.readouterr()
    assert _collect(source, out, 1, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert not out.exists()


def test_the_allowed_combinations_are_named():
    with pytest.raises(ConfigError, match="--noise") as err:
        behaviour_for("ppo", 0.1, None)
    assert ALLOWED in str(err.value) and "ppo checkpoint: no flag (greedy)" in str(err.value)
    with pytest.raises(ConfigError, match="qtransformer"):
        behaviour_for("qtransformer", None, None)
    assert behaviour_for("ppo", None, None).explore is False
    assert behaviour_for("td3", 0.0, None).explore is True


def _rllib_episode(space: gym.Space, actions: list, terminated: bool):
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    obs_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    episode = SingleAgentEpisode(observation_space=obs_space, action_space=space)
    episode.add_env_reset(observation=np.array([0.0, 0.5], np.float32))
    for t, action in enumerate(actions):
        last = t == len(actions) - 1
        episode.add_env_step(
            observation=np.array([t + 1.0, 0.5], np.float32),
            action=np.asarray(action, np.float32),
            reward=float(t),
            terminated=last and terminated,
            truncated=last and not terminated,
        )
    episode.to_numpy()
    return episode


@pytest.mark.parametrize("terminated", [True, False])
def test_rllib_episodes_convert_with_final_obs_ending_and_executed_actions(terminated):
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    raw = [[-1.0], [0.5], [3.0]]  # in RLlib's normalised [-1, 1] units (PPO's Gaussian)
    episode = _rllib_episode(space, raw, terminated)
    e = episode_from_rllib(episode, 7, space, normalize_actions=True)
    assert e.episode_id == 7 and len(e) == 3
    assert (e.terminated, e.truncated) == (terminated, not terminated)
    np.testing.assert_array_equal(e.obs[:, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(e.final_obs, [3.0, 0.5])
    np.testing.assert_array_equal(e.reward, np.array([0.0, 1.0, 2.0], np.float32))
    # unsquashed: -2 + (a + 1) * 2, then clipped to the Box
    np.testing.assert_allclose(e.action[:, 0], [-2.0, 1.0, 2.0])
    clipped = episode_from_rllib(episode, 7, space, clip_actions=True)
    np.testing.assert_allclose(clipped.action[:, 0], [-1.0, 0.5, 2.0])
    unchanged = episode_from_rllib(episode, 7, space)
    np.testing.assert_allclose(unchanged.action[:, 0], [-1.0, 0.5, 3.0])

"""One PPO iteration end to end: other spaces, a window core across sample batches, a remote
env runner that must register memrl's envs itself."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from core_kwargs import SMALL_CORE_KWARGS

ray = pytest.importorskip("ray")

from memrl.rllib import build_ppo_config  # noqa: E402

SPACES_ENV = "memrl-test/Spaces-v0"


class SpacesEnv(gym.Env):
    """Dict observation (small image + vector), Box or MultiDiscrete actions, 3..12 steps."""

    def __init__(self, actions: str = "box") -> None:
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
                "vec": gym.spaces.Box(-1, 1, (3,), np.float32),
            }
        )
        self.action_space = (
            gym.spaces.Box(-1, 1, (2,), np.float32)
            if actions == "box"
            else gym.spaces.MultiDiscrete([2, 3])
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._left = int(self.np_random.integers(3, 13))
        return self.observation_space.sample(), {}

    def step(self, action):
        self._left -= 1
        return self.observation_space.sample(), float(np.sum(action)), self._left <= 0, False, {}


if SPACES_ENV not in gym.registry:
    gym.register(SPACES_ENV, entry_point=SpacesEnv)


def _train_once(**kwargs) -> dict:
    base = dict(
        env_config={},
        model={"cnn_filters": [[8, 4, 2], [8, 3, 2]], "cnn_out": 16, "encoder_hiddens": [16]},
        max_seq_len=5,
        training=dict(train_batch_size_per_learner=64, minibatch_size=32, num_epochs=2),
        num_env_runners=0,
        num_envs_per_env_runner=2,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=1,
    )
    algo = build_ppo_config(**{**base, **kwargs}).build_algo()
    try:
        results = [algo.train() for _ in range(2)]  # the second sample continues cut episodes
    finally:
        algo.stop()
    return results[-1]


@pytest.mark.parametrize(
    ("core", "actions"), [("gtrxl", "box"), ("arelit", "multidiscrete"), ("mlp", "box")]
)
def test_ppo_iteration_dict_obs(ray_local, core: str, actions: str) -> None:
    result = _train_once(
        env=SPACES_ENV,
        env_config={"actions": actions},
        core=core,
        core_kwargs=SMALL_CORE_KWARGS.get(core, {"hidden_size": 8}),
    )
    stats = result["learners"]["default_policy"]
    assert np.isfinite(stats["total_loss"]) and np.isfinite(stats["vf_loss"])
    assert result["env_runners"]["num_episodes"] > 0


def test_ppo_iteration_remote_env_runner_and_learner(ray_local) -> None:
    result = _train_once(
        env="memrl/TMaze-v0",
        env_config={"corridor_len": 4, "max_steps": 12},
        core="local_xl",
        core_kwargs=SMALL_CORE_KWARGS["local_xl"],
        model={},
        num_env_runners=1,
        num_learners=1,  # a learner actor builds MemoryPPOTorchLearner on its own
    )
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 128
    assert np.isfinite(result["learners"]["default_policy"]["total_loss"])


def test_ppo_schedules_reach_the_learner(ray_local) -> None:
    """lr and entropy_coeff as RLlib schedules over env steps: after 128 sampled steps the
    learner runs at the schedules' last points, not their starts."""
    result = _train_once(
        env="memrl/TMaze-v0",
        env_config={"corridor_len": 4, "max_steps": 12},
        core="gru",
        core_kwargs={"hidden_size": 8},
        model={},
        training=dict(
            train_batch_size_per_learner=64,
            minibatch_size=32,
            num_epochs=1,
            lr=[[0, 1e-3], [128, 1e-5]],
            entropy_coeff=[[0, 0.1], [128, 0.0]],
        ),
    )
    stats = result["learners"]["default_policy"]
    assert stats["default_optimizer_learning_rate"] == pytest.approx(1e-5)
    assert stats["curr_entropy_coeff"] == pytest.approx(0.0)


@pytest.mark.gpu
def test_ppo_iteration_learner_on_gpu(ray_local) -> None:
    """The learner (in the driver) trains on CUDA from the same CPU-sampled compact records."""
    result = _train_once(
        env="memrl/TMaze-v0",
        env_config={"corridor_len": 4, "max_steps": 12},
        core="gtrxl",
        core_kwargs=SMALL_CORE_KWARGS["gtrxl"],
        model={},
        num_gpus_per_learner=1,
    )
    assert np.isfinite(result["learners"]["default_policy"]["total_loss"])

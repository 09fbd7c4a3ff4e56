"""Recurrent TD3 through RLlib: env runners -> replay shards -> TD3 learner, checkpoints, config.

One small Ray (2 CPUs, no dashboard) for the module; a tiny GRU on Pendulum-P.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memrl.config import load_config
from memrl.resources import ResolvedResources
from memrl.rllib.td3 import TD3Config, build_td3_config
from memrl.rllib.td3.algorithm import td3_config
from memrl.rllib.td3.module import TD3Module
from memrl.rllib.td3.networks import PREV_ACTION

pytestmark = pytest.mark.usefixtures("ray_local")


def small_config(core: str = "gru", shared: bool = False, **td3) -> TD3Config:
    core_kwargs = (
        {"hidden_size": 8}
        if core == "gru"
        else {"d_model": 8, "num_layers": 1, "num_heads": 2, "memory_len": 4, "d_ff": 16}
    )
    return td3_config(
        env="memrl/Pendulum-P-v0",
        env_config={},
        core=core,
        core_kwargs=core_kwargs,
        model={"encoder_hiddens": [8], "head_hiddens": [8]},
        td3={
            "batch_size": 4,
            "learning_starts": 60,
            "updates_per_iteration": 3,
            "shared_core": shared,
            "policy_delay": 2,
            **td3,
        },
        replay={
            "capacity": 1024,
            "burn_in": 4,
            "seq_len": 8,
            "chunk_overlap": 4,
            "rollout_fragment_length": 20,
            "prefetch": 1,
        },
        num_env_runners=0,
        num_envs_per_env_runner=2,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=0,
    )


def learner_module(algo):
    return algo.learner_group._learner.module["default_policy"].unwrapped()


@pytest.mark.parametrize("core, shared", [("gru", False), ("gtrxl", True)])
def test_td3_trains_through_replay_and_restores(core, shared, tmp_path):
    algo = small_config(core, shared).build_algo()
    try:
        module = learner_module(algo)
        assert float(module.uniform_exploration) == 1.0
        results = [algo.train() for _ in range(3)]
        stats = algo.replay_stats()
        assert stats["steps"] >= 100
        learner = results[-1]["learners"]["default_policy"]
        assert np.isfinite(learner["critic_loss"])
        assert learner["num_updates"] == 6  # iterations 2 and 3 (120 steps >= learning_starts)
        # Gaussian exploration from the first update on, also in the env runner.
        assert float(module.uniform_exploration) == 0.0
        runner_module = algo.env_runner.module
        assert float(runner_module.uniform_exploration) == 0.0
        assert not hasattr(runner_module, "target_networks")

        # Actions in the Box and the state record carrying the action taken.
        episodes = algo.env_runner.sample(num_timesteps=10, random_actions=False)
        for episode in episodes:
            actions = np.asarray(episode.get_actions())
            assert np.all(np.abs(actions) <= 2.0)
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        weights = {k: v.clone() for k, v in module.state_dict().items()}
        updates = algo.learner_group._learner.updates
    finally:
        algo.stop()

    restored = small_config(core, shared).build_algo()
    try:
        restored.restore_from_path(path)
        module = learner_module(restored)
        for key, value in module.state_dict().items():
            torch.testing.assert_close(value, weights[key], msg=key)
        assert restored.learner_group._learner.updates == updates
        assert restored.replay_stats()["steps"] == stats["steps"]
        restored.train()
        assert restored.learner_group._learner.updates == updates + 3
    finally:
        restored.stop()


def test_state_records_hold_the_action_taken():
    import gymnasium as gym

    spec = small_config().rl_module_spec
    module = TD3Module(
        observation_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        action_space=gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
        model_config=spec.model_config,
    )
    module.set_uniform_exploration(False)
    batch = {
        "obs": torch.zeros(3, 1, 2),
        "first": torch.ones(3, 1, dtype=torch.bool),
        "state_in": {
            k: torch.as_tensor(v)[None].repeat(3, *[1] * v.ndim)
            for k, v in module.get_initial_state().items()
        },
    }
    out = module.forward_exploration(batch)
    action = out["actions"]
    assert action.shape == (3, 1, 1)
    torch.testing.assert_close(out["state_out"][PREV_ACTION], action[:, -1])
    deterministic = module.forward_inference(batch)["actions"]
    assert not torch.equal(deterministic, action)  # noise was added while exploring


def test_build_td3_config_from_a_train_config():
    cfg = load_config("td3/pendulum_p_gru", ["resources.num_env_runners=0"])
    resources = ResolvedResources(
        num_env_runners=0, num_envs_per_env_runner=2, num_learners=0, num_gpus_per_learner=0
    )
    config = build_td3_config(cfg, resources)
    assert isinstance(config, TD3Config)
    assert config.td3 == cfg.td3
    assert config.sequence_batch_size == cfg.td3.batch_size
    assert config.replay.seq_len == cfg.replay.seq_len
    assert config.normalize_actions is False


def test_td3_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="head_hiddens"):
        td3_config(
            env="memrl/Pendulum-P-v0",
            env_config={},
            core="gru",
            core_kwargs={},
            model={},
            td3={},
            replay={},
            num_env_runners=0,
            num_envs_per_env_runner=1,
            num_learners=0,
            num_gpus_per_learner=0,
            seed=0,
        )
    with pytest.raises(ValueError, match="unknown td3 key"):
        small_config(tua=0.1)

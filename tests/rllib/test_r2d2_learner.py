"""R2D2 learner: no gradient through the burn-in, target copies every K updates, priorities and
ΔQ reported; algorithm checkpoint round trip including the replay."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from memrl.replay import SequenceBatch  # noqa: E402
from memrl.rllib.offpolicy import REPLAY_DIR, SequenceTensors  # noqa: E402
from memrl.rllib.r2d2 import delta_q, r2d2_config, r2d2_loss  # noqa: E402

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Discrete(3)


def _config(**r2d2):
    return r2d2_config(
        env="memrl/TMaze-v0",
        env_config=dict(corridor_len=3, num_distractors=0, max_steps=8),
        core="gru",
        core_kwargs={"hidden_size": 8},
        model={"encoder_hiddens": [8]},
        lr=1e-2,
        r2d2={"delta_q_every": 1, **r2d2},
        replay={
            "capacity": 4096,
            "burn_in": 3,
            "seq_len": 6,
            "chunk_overlap": 2,
            "rollout_fragment_length": 8,
        },
        batch_size=4,
        learning_starts=0,
        updates_per_iteration=2,
        num_env_runners=0,
        num_envs_per_env_runner=2,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=0,
    )


def _learner(**r2d2):
    learner = _config(**r2d2).build_learner(spaces={"default_policy": (OBS, ACTIONS)})
    learner.build()
    return learner


def _batch(b: int = 4, burn_in: int = 3, seq: int = 6, seed: int = 0) -> SequenceTensors:
    rng = np.random.default_rng(seed)
    length = burn_in + seq
    mask = np.ones((b, length), dtype=bool)
    mask[0, -2:] = False  # an episode that ends before the sequence does
    terminated = np.zeros((b, length), dtype=bool)
    terminated[0, -3] = True
    first = np.zeros((b, length), dtype=bool)
    first[1, 0] = True
    batch = SequenceBatch(
        obs=rng.uniform(-1, 1, (b, length, 3)).astype(np.float32),
        action=rng.integers(0, 3, (b, length)),
        reward=rng.normal(size=(b, length)).astype(np.float32),
        terminated=terminated,
        truncated=np.zeros_like(terminated),
        first=first,
        mask=mask,
        state={"h": rng.normal(size=(b, 1, 8)).astype(np.float32)},
        weights=np.linspace(0.5, 1.0, b).astype(np.float32),
        item_id=np.arange(b),
        generation=np.arange(b),
        priority=np.ones(b),
        stream=np.zeros(b, dtype=np.int64),
        stream_step=np.arange(b),
        shard=np.zeros(b, dtype=np.int32),
        burn_in=burn_in,
    )
    return SequenceTensors.from_batch(batch)


def test_burn_in_gets_no_gradient(ray_local):
    learner = _learner()
    module = learner.rl_module
    batch = _batch()
    batch.obs.requires_grad_(True)
    batch.state["h"].requires_grad_(True)
    out = r2d2_loss(module, batch, learner.config.r2d2)
    out["loss"].backward()
    assert batch.obs.grad[:, :3].abs().sum() == 0  # burn-in steps
    assert batch.state["h"].grad is None or batch.state["h"].grad.abs().sum() == 0
    assert batch.obs.grad[:, 3:].abs().sum() > 0  # training steps do get gradient
    # The burn-in still matters: it sets the state the training steps start from.
    other = _batch()
    other.obs[:, :3] += 0.5
    assert not torch.allclose(
        r2d2_loss(module, other, learner.config.r2d2)["loss"], out["loss"].detach()
    )


def test_target_network_copied_every_k_updates(ray_local):
    learner = _learner(target_update_period=3)
    module = learner.rl_module
    initial = {k: v.clone() for k, v in module.target.state_dict().items()}

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    for update in range(1, 7):
        out = learner.learn_on_batch(_batch(seed=update))
        learner.updates += 1  # what train_from_replay counts
        target, online = module.target.state_dict(), module.q.state_dict()
        if update % 3 == 0:
            assert same(target, online), update
            initial = {k: v.clone() for k, v in target.items()}
        else:
            assert same(target, initial) and not same(target, online), update
    assert out.td_abs.shape == (4, 6) and out.td_mask.shape == (4, 6)
    assert not out.td_mask[0, -2:].any()  # padding never sets a priority
    assert {"q_loss", "td_error_abs", "delta_q_first", "delta_q_last"} <= set(out.metrics)


def test_delta_q_is_zero_when_the_stored_state_is_the_zero_state(ray_local):
    module = _learner().rl_module
    batch = _batch()
    first, last = delta_q(module, batch)
    assert first > 0 and np.isfinite(last)
    batch.state["h"].zero_()
    assert delta_q(module, batch) == (0.0, 0.0)


def test_checkpoint_round_trip_includes_replay(ray_local, tmp_path):
    algo = _config().build_algo()
    try:
        for _ in range(3):
            result = algo.train()
        assert result["learners"]["default_policy"]["num_updates"] > 0
        stats = algo.replay_stats()
        assert stats["steps"] > 0
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        weights = {
            k: v.clone()
            for k, v in algo.learner_group._learner.module["default_policy"].state_dict().items()
        }
    finally:
        algo.stop()
    assert (tmp_path / "ckpt" / REPLAY_DIR).is_dir()

    fresh = _config().build_algo()
    try:
        assert fresh.replay_stats()["steps"] == 0
        fresh.restore_from_path(path)
        assert fresh.replay_stats() == stats
        restored = fresh.learner_group._learner.module["default_policy"].state_dict()
        assert all(torch.equal(weights[k], restored[k]) for k in weights)
        result = fresh.train()  # learns straight away from the restored replay
        assert result["replay"]["steps"] > stats["steps"]
    finally:
        fresh.stop()

"""Fault tolerance of the off-policy replay: a replay shard actor killed mid-run comes back
from its last Arrow checkpoint; exactly its unsaved tail is lost and reported; training goes on."""

from __future__ import annotations

import logging

import pytest

ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from memrl.rllib.r2d2 import r2d2_config  # noqa: E402

TMAZE = dict(corridor_len=4, num_distractors=0, max_steps=20)


@pytest.fixture
def local_ray():
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _updates(algo) -> int:
    return int(algo.learner_group._learner.updates)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_replay_shard_is_restored_and_its_unsaved_tail_counted(
    tmp_path, local_ray, caplog
):
    config = r2d2_config(
        env="memrl/TMaze-v0", env_config=TMAZE, core="gru", core_kwargs={"hidden_size": 16},
        model={"encoder_hiddens": [16]}, lr=1e-3,
        r2d2={"gamma": 0.9, "n_step": 2, "target_update_period": 20},
        replay={"capacity": 4096, "burn_in": 2, "seq_len": 8, "chunk_overlap": 4,
                "rollout_fragment_length": 16, "num_shards": 2,
                "checkpoint_every_steps": 48, "checkpoint_dir": str(tmp_path / "ft")},
        batch_size=8, learning_starts=32, updates_per_iteration=2,
        num_env_runners=1, num_envs_per_env_runner=2, num_learners=0,
        num_gpus_per_learner=0, seed=0,
    )
    algo = config.build_algo()
    try:
        sup = algo.supervisor
        # The one remote env runner (worker_index 1) writes to shard 1 % 2.
        victim = 1
        for _ in range(30):
            algo.train()
            sup.wait_checkpoints()  # a checkpoint running at the kill would blur "unsaved"
            row = sup.report(poll=False)[victim]
            if row["checkpoints"] >= 1 and row["unsaved_steps"] > 0 and _updates(algo) > 0:
                break
        else:
            pytest.fail(f"no checkpoint with an unsaved tail after 30 iterations: {row}")
        expected_lost = row["unsaved_steps"]
        checkpoint_steps = row["last_checkpoint_steps"]
        assert row["size"] > checkpoint_steps  # the tail is really there, beyond the checkpoint
        updates_before = _updates(algo)
        ray.kill(sup.handles()[victim], no_restart=True)

        with caplog.at_level(logging.WARNING, logger="memrl.replay.supervisor"):
            for _ in range(3):
                result = algo.train()

        replay = result["replay"]
        assert replay["restarts"] == 1
        assert replay["steps_lost"] == expected_lost
        assert replay["unsent_dropped_steps"] == 0
        rows = sup.report()
        assert rows[victim]["incarnation"] == 1 and rows[victim]["restarts"] == 1
        assert rows[victim]["steps_lost"] == expected_lost
        assert rows[1 - victim]["restarts"] == 0 and rows[1 - victim]["steps_lost"] == 0
        # The restored shard holds its checkpoint plus what was written since the restore.
        assert rows[victim]["size"] > checkpoint_steps
        assert _updates(algo) > updates_before
        assert result["learners"]["default_policy"]["num_updates"] == _updates(algo)
        warnings = [r.getMessage() for r in caplog.records if "replay shard 1 died" in
                    r.getMessage()]
        assert len(warnings) == 1 and f"{expected_lost} steps lost" in warnings[0], warnings
    finally:
        algo.stop()

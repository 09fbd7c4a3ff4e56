"""Fault tolerance of the off-policy replay: a replay shard actor killed mid-run comes back
from its last Arrow checkpoint; exactly its unsaved tail is lost and reported; training goes on."""

from __future__ import annotations

import logging

import pytest

ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from ray_actors import kill_and_wait  # noqa: E402

from memrl.rllib.r2d2 import r2d2_config  # noqa: E402

TMAZE = dict(corridor_len=4, num_distractors=0, max_steps=20)


def _updates(algo) -> int:
    return int(algo.learner_group._learner.updates)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_replay_shard_is_restored_and_its_unsaved_tail_counted(tmp_path, ray_local, caplog):
    config = r2d2_config(
        env="memrl/TMaze-v0",
        env_config=TMAZE,
        core="gru",
        core_kwargs={"hidden_size": 16},
        model={"encoder_hiddens": [16]},
        lr=1e-3,
        r2d2={"gamma": 0.9, "n_step": 2, "target_update_period": 20},
        replay={
            "capacity": 4096,
            "burn_in": 2,
            "seq_len": 8,
            "chunk_overlap": 4,
            "rollout_fragment_length": 16,
            "num_shards": 2,
            "checkpoint_every_steps": 48,
            "checkpoint_dir": str(tmp_path / "ft"),
        },
        batch_size=8,
        learning_starts=32,
        updates_per_iteration=2,
        num_env_runners=1,
        num_envs_per_env_runner=2,
        num_learners=0,
        num_gpus_per_learner=0,
        seed=0,
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
        warnings = [
            r.getMessage() for r in caplog.records if "replay shard 1 died" in r.getMessage()
        ]
        assert len(warnings) == 1 and f"{expected_lost} steps lost" in warnings[0], warnings
        assert list((tmp_path / "ft").glob("run_*/shard_1"))  # the checkpoints restored from
    finally:
        algo.stop()
    assert not list((tmp_path / "ft").glob("run_*"))  # removed with the algorithm


def _records(t: int, envs: int) -> dict:
    import numpy as np

    return {
        "obs": np.full((envs, 3), t, dtype=np.float32),
        "action": np.full(envs, t % 2, dtype=np.int64),
        "reward": np.zeros(envs, dtype=np.float32),
        "terminated": np.zeros(envs, dtype=bool),
        "truncated": np.zeros(envs, dtype=bool),
        "first": np.full(envs, t == 0),
    }


@pytest.mark.timeout(120)
def test_shard_client_keeps_a_dead_shards_chunks_in_order_and_resends_them(ray_local):
    from memrl.replay import ChunkConfig, ChunkWriter, ReplayConfig
    from memrl.replay.distributed import start_shard
    from memrl.replay.shard_writer import ShardWriter

    config = ReplayConfig(
        capacity=256,
        max_streams=2,
        burn_in=0,
        seq_len=4,
        obs_shape=(3,),
        obs_dtype="float32",
        action_shape=(),
        action_dtype="int64",
        seed=0,
    )
    chunker = ChunkWriter(2, ChunkConfig(4, 0), streams=[11, 12])
    first = start_shard(0, config, {}, num_cpus=0)
    client = ShardWriter(0, first, 0, max_in_flight=2, max_buffered_chunks=3)
    client.add([c for t in range(8) for c in chunker.add(_records(t, 2))])  # 4 chunks
    client.flush()
    acks = client.drain_acks()
    assert [a[0] for a in acks] == [0] * 4 and sum(a[1] for a in acks) == 16
    assert client.drain_acks() == []

    kill_and_wait(first)
    later = [c for t in range(8, 16) for c in chunker.add(_records(t, 2))]  # 4 chunks
    client.add(later)  # no raise: kept for the restored shard (one dropped: buffer holds 3)
    client.flush()
    assert client.dead == 0 and client.drain_acks() == []
    assert client.buffered_chunks == 3 and client.dropped_steps == 4

    second = start_shard(0, config, {}, num_cpus=0)  # an empty "restored" shard
    client.set_shard(second, 1)
    client.flush()
    acks = client.drain_acks()
    assert client.dead is None and client.buffered_chunks == 0
    assert [a[0] for a in acks] == [1] * 3 and sum(a[1] for a in acks) == 12
    assert client.steps_resent == 12
    # The three kept chunks are stored (re-sent with allow_gap: the dropped one is a gap).
    assert ray.get(second.stats.remote())["steps"] == 12
    ray.kill(second, no_restart=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_remote_learner_keeps_training_after_a_shard_dies_mid_update(tmp_path, ray_local):
    """num_learners=1: the learner samples the shards itself (prefetch in flight). A shard is
    killed from another thread while ``train()`` runs, in its update phase (updates dominate the
    iteration); the algorithm restores the shard, re-attaches the remote learner, and updates
    go on in the iterations after."""
    import threading
    import time

    config = r2d2_config(
        env="memrl/TMaze-v0",
        env_config=TMAZE,
        core="gru",
        core_kwargs={"hidden_size": 8},
        model={"encoder_hiddens": [8]},
        lr=1e-3,
        r2d2={"gamma": 0.9, "n_step": 2, "target_update_period": 20},
        replay={
            "capacity": 2048,
            "burn_in": 2,
            "seq_len": 8,
            "chunk_overlap": 4,
            "rollout_fragment_length": 8,
            "num_shards": 1,
            "checkpoint_every_steps": 32,
            "checkpoint_dir": str(tmp_path / "ft"),
        },
        batch_size=8,
        learning_starts=32,
        updates_per_iteration=64,
        num_env_runners=0,
        num_envs_per_env_runner=2,
        num_learners=1,
        num_gpus_per_learner=0,
        seed=0,
    )
    algo = config.build_algo()
    try:
        assert not algo.learner_group.is_local
        sup = algo.supervisor

        def updates() -> int:
            return int(algo._on_learners(lambda learner: learner.updates)[0])

        for _ in range(30):
            t0 = time.perf_counter()
            algo.train()
            took = time.perf_counter() - t0
            sup.wait_checkpoints()
            if updates() > 0 and sup.report(poll=False)[0]["checkpoints"] >= 1:
                break
        else:
            pytest.fail(f"no updates with a checkpointed shard: {sup.report(poll=False)}")
        before = updates()
        victim = 0  # the one shard: the local env runner writes it, the learner samples it
        killer = threading.Timer(
            took * 0.5, lambda: ray.kill(sup.handles()[victim], no_restart=True)
        )
        killer.start()
        algo.train()  # the kill lands in here
        killer.join()
        mid = updates()
        for _ in range(3):
            result = algo.train()
        assert result["replay"]["restarts"] == 1
        rows = sup.report()
        assert rows[victim]["restarts"] == 1 and rows[victim]["incarnation"] == 1
        assert updates() > mid >= before  # training went on after the restore
        assert algo._on_learners(lambda learner: learner.replay_attached)[0]
    finally:
        algo.stop()

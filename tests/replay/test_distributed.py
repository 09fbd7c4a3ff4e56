"""Shards as Ray actors: routing, prefetching, priority routing, dead shards, save/restore."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from replay_helpers import build_core, record_rollout, replay_config

from memrl.replay import ChunkConfig, ChunkWriter
from memrl.replay.distributed import (
    PrefetchSampler,
    ReplayShardError,
    call_all,
    create_shards,
    replay_writer,
    restore_shards,
    save_shards,
)

NUM_SHARDS, NUM_WRITERS, ENVS, STEPS = 2, 3, 2, 80
CHUNK = ChunkConfig(length=16, overlap=8)


@pytest.fixture(scope="module")
def recorded():
    core = build_core("gru", dict(hidden_size=8, num_layers=1))
    rollouts = [record_rollout(core, ENVS, STEPS, seed=10 + w) for w in range(NUM_WRITERS)]
    return core.state_spec(), rollouts


def start_and_fill(spec, rollouts):
    config = replay_config(capacity=4 * 128, seed=0)
    shards = create_shards(NUM_SHARDS, config, spec, num_cpus=0)
    for writer_id, rollout in enumerate(rollouts):
        chunks = ChunkWriter(ENVS, CHUNK, seed=writer_id)
        sender = replay_writer(shards, writer_id, max_in_flight=2)
        for t in range(STEPS):
            sender.add(chunks.add(rollout.step_record(t)))
        sender.add(chunks.flush())
        sender.flush()
        assert sender.steps_stored == ENVS * STEPS
    return shards


def test_writers_route_by_id_and_sampler_covers_all_shards(ray_local, recorded):
    spec, rollouts = recorded
    shards = start_and_fill(spec, rollouts)
    stats = call_all(shards, "stats")
    # writers 0 and 2 -> shard 0, writer 1 -> shard 1
    assert [s["streams"] for s in stats] == [2 * ENVS, ENVS]
    assert [s["steps"] for s in stats] == [2 * ENVS * STEPS, ENVS * STEPS]

    sampler = PrefetchSampler(shards, batch_size=32, prefetch=3, seed=0)
    seen = set()
    for _ in range(6):
        batch = sampler.next()
        assert len(batch) == 32 and batch.state["h"].shape == (32, 1, 8)
        assert np.all(batch.weights > 0) and batch.weights.max() <= 1.0 + 1e-6
        seen |= set(batch.shard.tolist())
        sampler.update_priorities(batch, priority=np.full(32, 7.0))
    sampler.close()
    assert seen == {0, 1}
    for s in call_all(shards, "stats"):
        assert s["max_priority"] == pytest.approx(7.0)  # updates reached every shard

    # td-error form of the update, over the last seq_len steps of the batch.
    batch = sampler.next()
    td = np.ones((32, batch.mask.shape[1] - batch.burn_in))
    sampler.update_priorities(batch, td_abs=td * 9.0)
    sampler.close()
    assert max(s["max_priority"] for s in call_all(shards, "stats")) == pytest.approx(9.0)
    for shard in shards:
        ray.kill(shard)


def test_killed_shard_is_reported_not_skipped(ray_local, recorded):
    spec, rollouts = recorded
    shards = start_and_fill(spec, rollouts)
    sampler = PrefetchSampler(shards, batch_size=16, prefetch=2, seed=1)
    sampler.next()
    ray.kill(shards[1], no_restart=True)
    with pytest.raises(ReplayShardError, match="replay shard 1 \\(of 2\\)"):
        for _ in range(10):
            sampler.next()
    with pytest.raises(ReplayShardError, match="replay shard 1"):
        call_all(shards, "stats")
    writer = replay_writer(shards, writer_id=1, max_in_flight=0)
    chunks = ChunkWriter(ENVS, CHUNK, seed=99)
    with pytest.raises(ReplayShardError, match="replay shard 1"):
        for t in range(STEPS):
            writer.add(chunks.add(rollouts[0].step_record(t)))
    ray.kill(shards[0])


def test_save_and_restore_through_actors(ray_local, recorded, tmp_path):
    spec, rollouts = recorded
    shards = start_and_fill(spec, rollouts)
    paths = save_shards(shards, tmp_path)
    assert len(paths) == NUM_SHARDS
    before = call_all(shards, "stats")
    fresh = create_shards(NUM_SHARDS, replay_config(capacity=4 * 128, seed=5), spec, num_cpus=0)
    restore_shards(fresh, tmp_path)
    after = call_all(fresh, "stats")
    assert after == before
    for shard in shards + fresh:
        ray.kill(shard)

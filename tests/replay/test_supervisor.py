"""Replay fault tolerance: a killed shard actor comes back from its checkpoint, loss counted."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import ray
from ray_actors import kill_and_wait
from replay_helpers import assert_batch_matches, replay_config, window_rollout

from memrl.replay import ChunkConfig, ChunkWriter, ReplayShard
from memrl.replay.persist import manifest_path
from memrl.replay.supervisor import ShardRestoreError, ShardSupervisor

ENVS, STEPS = 2, 100
CHUNK = ChunkConfig(length=16, overlap=8)


@pytest.fixture(scope="module")
def recorded():
    return window_rollout(ENVS, STEPS, seed=4)


def streams_of(writer_id: int) -> list[int]:
    return [1000 * (writer_id + 1) + e for e in range(ENVS)]


ENV_OF_STREAM = {s: e for w in range(2) for e, s in enumerate(streams_of(w))}


def read_checkpoint(directory, shard: int) -> tuple[pa.Table, int]:
    """The checkpoint's rows and saved write counter, read straight from the Arrow file."""
    manifest = json.loads(manifest_path(directory, shard).read_text())
    with pa.memory_map(str(directory / manifest["file"]), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    meta = json.loads(table.schema.metadata[b"memrl.replay"])
    return table, int(meta["shard"]["writes"])


def stored_steps(table: pa.Table) -> set[tuple[int, int]]:
    return set(
        zip(
            table.column("stream").to_pylist(), table.column("stream_step").to_pylist(), strict=True
        )
    )


def steps_of(chunks) -> set[tuple[int, int]]:
    return {(c.stream, c.start_step + k) for c in chunks for k in range(len(c))}


def make_supervisor(spec, directory, **kwargs) -> ShardSupervisor:
    config = replay_config(capacity=4 * 128, seed=0)  # a lane holds all 100 steps of a stream
    return ShardSupervisor(2, config, spec, directory, num_cpus=0, **kwargs)


def test_killed_shard_restores_checkpoint_and_run_continues(ray_local, recorded, tmp_path):
    spec, rollout = recorded
    ckpt = tmp_path / "replay"
    sup = make_supervisor(spec, ckpt, checkpoint_every_steps=100)
    chunkers = [ChunkWriter(ENVS, CHUNK, streams=streams_of(w)) for w in range(2)]
    writers = [sup.writer(w, max_in_flight=2) for w in range(2)]
    sampler = sup.sampler(16, prefetch=2, seed=0)
    rng = np.random.default_rng(0)
    kill_at, killed, after_kill = 79, False, []
    sampled_from_restored = 0
    for t in range(STEPS + 1):
        for w in range(2):
            chunks = chunkers[w].add(rollout.step_record(t)) if t < STEPS else chunkers[w].flush()
            if w == 1 and killed:
                after_kill += chunks
            writers[w].add(chunks)
        if t == kill_at:
            writers[1].flush()
            report = sup.report()
            assert report[1]["checkpoints"] >= 1 and report[1]["restarts"] == 0
            writes_at_death = ray.get(sup.handles()[1].stats.remote())["writes"]
            kill_and_wait(sup.handles()[1])
            # The dead actor cannot write any more: this is the checkpoint a restore must load.
            ckpt_table, ckpt_writes = read_checkpoint(ckpt / "shard_1", 1)
            killed = True
        if t >= 40 and t % 5 == 0:
            batch = sampler.next()
            assert len(batch) == 16
            assert_batch_matches(batch, rollout, ENV_OF_STREAM, batch.mask.shape[1])
            if killed:
                sampled_from_restored += int(np.sum(batch.shard == 1))
            sampler.update_priorities(batch, priority=rng.uniform(0.1, 5.0, len(batch)))
    for writer in writers:
        writer.flush()
    sampler.close()

    expected_lost = writes_at_death - ckpt_writes
    assert expected_lost > 0  # the kill did lose an unsaved tail
    report = sup.report()
    assert report[1]["restarts"] == 1 and report[1]["incarnation"] == 1
    assert report[1]["steps_lost"] == expected_lost
    assert report[0]["restarts"] == 0 and report[0]["steps_lost"] == 0
    assert sampled_from_restored > 0  # the sampler kept using the restored shard

    # Restored shard = its last checkpoint + every chunk written to it after the restore.
    sup.checkpoint()
    final_1, _ = read_checkpoint(ckpt / "shard_1", 1)
    assert stored_steps(final_1) == stored_steps(ckpt_table) | steps_of(after_kill)
    lost_steps = {(s, k) for s in streams_of(1) for k in range(STEPS)} - stored_steps(final_1)
    assert len(lost_steps) <= expected_lost  # lost steps may come back as the next overlap
    for row in final_1.select(["stream", "stream_step", "obs"]).to_pylist():
        env = ENV_OF_STREAM[row["stream"]]
        np.testing.assert_array_equal(row["obs"], rollout.obs[env, row["stream_step"]])
    # The other shard is untouched: every step of its writer, once.
    final_0, _ = read_checkpoint(ckpt / "shard_0", 0)
    assert stored_steps(final_0) == {(s, k) for s in streams_of(0) for k in range(STEPS)}
    assert final_0.num_rows == ENVS * STEPS

    metrics = sup.metrics()
    assert metrics["replay/steps_lost"] == expected_lost and metrics["replay/restarts"] == 1
    assert metrics["replay/size"] == final_0.num_rows + final_1.num_rows
    sup.shutdown()


def test_shard_killed_before_any_checkpoint_restarts_empty(ray_local, recorded, tmp_path):
    spec, rollout = recorded
    sup = make_supervisor(spec, tmp_path, checkpoint_every_steps=10**6)
    chunker = ChunkWriter(ENVS, CHUNK, streams=streams_of(0))
    writer = sup.writer(0, max_in_flight=2)
    after = []
    for t in range(STEPS):
        chunks = chunker.add(rollout.step_record(t))
        if t == 50:
            writer.flush()
            acked = writer.steps_stored
            kill_and_wait(sup.handles()[0])
        if t >= 50:
            after += chunks
        writer.add(chunks)
    writer.flush()
    report = sup.report()[0]
    assert acked == ENVS * 48  # chunks emitted by step 47 (stride 8)
    assert report["steps_lost"] == acked and report["last_checkpoint_steps"] is None
    assert writer.steps_resent > 0  # chunks sent to the dead actor went to the new one
    assert report["size"] == len(steps_of(after))
    # The restarted shard took the streams mid-episode and still samples correct states.
    sampler = sup.sampler(8, prefetch=1, seed=1)
    for _ in range(3):
        batch = sampler.next()
        assert set(batch.shard.tolist()) == {0}
        assert_batch_matches(batch, rollout, ENV_OF_STREAM, batch.mask.shape[1])
    sampler.close()
    sup.shutdown()


def test_corrupt_checkpoint_is_a_clear_error_and_reported(ray_local, recorded, tmp_path):
    spec, rollout = recorded
    sup = make_supervisor(spec, tmp_path, checkpoint_every_steps=10**6)
    chunker = ChunkWriter(ENVS, CHUNK, streams=streams_of(0))
    writer = sup.writer(0)
    for t in range(40):
        writer.add(chunker.add(rollout.step_record(t)))
    writer.flush()
    sup.checkpoint()
    manifest = json.loads(manifest_path(tmp_path / "shard_0", 0).read_text())
    path = tmp_path / "shard_0" / manifest["file"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    kill_and_wait(sup.handles()[0])
    with pytest.raises(ShardRestoreError, match=r"replay shard 0 \(of 2\).*SHA-256"):
        for t in range(40, STEPS):
            writer.add(chunker.add(rollout.step_record(t)))
        writer.flush()
    report = sup.report()
    assert "SHA-256" in report[0]["failed"] and report[1]["failed"] is None
    assert sup.metrics()["replay/failed_shards"] == 1
    # It stays down: no silent empty restart on the next call either.
    with pytest.raises(ShardRestoreError, match="replay shard 0"):
        sup.sampler(4).next()
    sup.shutdown()


def test_existing_checkpoints_need_resume(ray_local, recorded, tmp_path):
    spec, rollout = recorded
    sup = make_supervisor(spec, tmp_path)
    writer = sup.writer(1)
    chunker = ChunkWriter(ENVS, CHUNK, streams=streams_of(1))
    for t in range(40):
        writer.add(chunker.add(rollout.step_record(t)))
    writer.flush()
    saved = sup.checkpoint()
    sup.shutdown()
    with pytest.raises(ValueError, match="resume=True"):
        make_supervisor(spec, tmp_path)
    resumed = make_supervisor(spec, tmp_path, resume=True)
    report = resumed.report()
    assert [r["size"] for r in report] == [s["steps"] for s in saved]
    assert report[1]["last_checkpoint_writes"] == saved[1]["writes"]
    resumed.shutdown()


def test_gap_after_restore_is_never_sampled_across(recorded):
    """ReplayShard.add_chunk(allow_gap=True): a stream continues after missing steps."""
    spec, rollout = recorded
    shard = ReplayShard(replay_config(capacity=4 * 128), spec)
    chunker = ChunkWriter(ENVS, CHUNK, streams=streams_of(0))
    sent = []
    for t in range(STEPS):
        sent += chunker.add(rollout.step_record(t))
    gap_chunk = next(i for i, c in enumerate(sent) if c.start_step > 40)
    for chunk in sent[:6]:
        shard.add_chunk(chunk)
    with pytest.raises(ValueError, match="a chunk was lost"):
        shard.add_chunk(sent[gap_chunk])
    for chunk in sent[gap_chunk:]:
        shard.add_chunk(chunk, allow_gap=True)
    # A stream this shard never saw, starting mid-episode: only with allow_gap.
    late = ChunkWriter(1, CHUNK, streams=[7])
    late_chunks = []
    for t in range(STEPS):
        late_chunks += late.add({k: v[:1] for k, v in rollout.step_record(t).items()})
    mid = next(c for c in late_chunks if c.start_step > 0 and not c.data["first"][0])
    with pytest.raises(ValueError, match="must start an episode"):
        shard.add_chunk(mid)
    shard.add_chunk(mid, allow_gap=True)
    env_of = {**ENV_OF_STREAM, 7: 0}
    batch = shard.sample(256)
    length = batch.mask.shape[1]
    assert_batch_matches(batch, rollout, env_of, length)
    # No sampled sequence covers a missing step.
    held = {
        (c.stream, c.start_step + k) for c in sent[:6] + sent[gap_chunk:] for k in range(len(c))
    } | {(7, mid.start_step + k) for k in range(len(mid))}
    for b in range(len(batch)):
        steps = int(batch.stream_step[b]) + np.flatnonzero(batch.mask[b])
        assert all((int(batch.stream[b]), int(s)) in held for s in steps)

"""Arrow checkpoints: exact restore, all-or-nothing on corrupt files, readable as a dataset."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pytest
from replay_helpers import OBS_DIM, fill, replay_config
from replay_helpers import window_rollout as record_window_rollout

from memrl.replay import CheckpointError, ChunkConfig, ReplayShard
from memrl.replay.persist import manifest_path

CHUNK = ChunkConfig(length=16, overlap=8)


@pytest.fixture(scope="module")
def window_rollout():
    return record_window_rollout(3, 100, seed=3)


def make_shard(spec, rollout, storage="float32", shard_id=0):
    config = replay_config(capacity=4 * 32, state_storage=storage)
    shard = ReplayShard(config, spec, shard_id=shard_id)
    fill(shard, rollout, CHUNK, 100)
    batch = shard.sample(16)
    shard.update_priorities(batch.item_id, batch.generation, np.linspace(0.1, 4.0, 16))
    return shard


def snapshot(shard):
    return {
        "data": {k: v.copy() for k, v in shard._data.items()},
        "step": shard._step.copy(),
        "episode_start": shard._episode_start.copy(),
        "generation": shard._generation.copy(),
        "leaves": shard._tree.leaves.copy(),
        "lanes": (
            shard._lane_stream.copy(),
            shard._lane_lo.copy(),
            shard._lane_hi.copy(),
            shard._lane_first.copy(),
            shard._lane_tick.copy(),
        ),
        "scalars": (shard._max_priority, shard._writes, shard._tick, dict(shard._stream_lane)),
    }


def assert_same(a, b):
    for key in ("step", "episode_start", "generation", "leaves"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for name in a["data"]:
        np.testing.assert_array_equal(a["data"][name], b["data"][name], err_msg=name)
    for x, y in zip(a["lanes"], b["lanes"], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a["scalars"] == b["scalars"]


@pytest.mark.parametrize("storage", ["float32", "bfloat16"])
def test_restore_equals_original(tmp_path, window_rollout, storage):
    spec, rollout = window_rollout
    original = make_shard(spec, rollout, storage)
    original.save(tmp_path)
    restored = ReplayShard(replay_config(capacity=4 * 32, state_storage=storage, seed=99), spec)
    restored.restore(tmp_path)
    assert_same(snapshot(original), snapshot(restored))
    # Same sampler state too: the next samples are identical, states included.
    a, b = original.sample(8), restored.sample(8)
    np.testing.assert_array_equal(a.item_id, b.item_id)
    for key in a.state:
        np.testing.assert_array_equal(a.state[key], b.state[key])
    # Both keep working the same way after the restore.
    more = ChunkConfig(length=16, overlap=8)
    for shard in (original, restored):
        writer = fill(shard, rollout, more, 100)
        assert writer.steps == 100


def test_directory_is_an_arrow_dataset(tmp_path, window_rollout):
    spec, rollout = window_rollout
    shards = [make_shard(spec, rollout, shard_id=i) for i in range(2)]
    for shard in shards:
        shard.save(tmp_path)
    table = ds.dataset(tmp_path, format="ipc").to_table()
    assert table.num_rows == sum(len(s) for s in shards)
    assert table.column("obs").type.list_size == OBS_DIM
    for key, s in spec.items():
        assert table.column(f"state.{key}").type.list_size == int(np.prod(s.slice_shape))
    one = table.filter(ds.field("stream_step") == 90).slice(0, 1).to_pylist()[0]
    env = one["stream"] - 101
    np.testing.assert_allclose(one["obs"], rollout.obs[env, 90])
    # Saving again replaces the data file (no stale duplicates in the dataset).
    shards[0].save(tmp_path)
    assert ds.dataset(tmp_path, format="ipc").to_table().num_rows == table.num_rows


def _data_file(directory):
    return directory / json.loads(manifest_path(directory, 0).read_text())["file"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "missing"])
def test_corrupt_checkpoint_raises_and_loads_nothing(tmp_path, window_rollout, damage):
    spec, rollout = window_rollout
    make_shard(spec, rollout).save(tmp_path)
    path = _data_file(tmp_path)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        mid = len(raw) // 2
        path.write_bytes(raw[:mid] + bytes([raw[mid] ^ 0xFF]) + raw[mid + 1 :])
    elif damage == "manifest":
        manifest_path(tmp_path, 0).write_text("{not json")
    else:
        path.unlink()
    target = ReplayShard(replay_config(capacity=4 * 32), spec)
    fill(target, rollout, CHUNK, 40)
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="replay checkpoint"):
        target.restore(tmp_path)
    assert_same(before, snapshot(target))


def test_incompatible_config_is_refused(tmp_path, window_rollout):
    spec, rollout = window_rollout
    make_shard(spec, rollout).save(tmp_path)
    other = ReplayShard(replay_config(capacity=4 * 32, seq_len=9), spec)
    with pytest.raises(CheckpointError, match="seq_len"):
        other.restore(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ReplayShard(replay_config(capacity=4 * 32), spec, shard_id=5).restore(tmp_path)

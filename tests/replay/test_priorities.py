"""Sum-tree and prioritized sampling: proportional draws, IS weights, stale updates ignored."""

from __future__ import annotations

import numpy as np
import pytest
from replay_helpers import OBS_DIM, replay_config
from scipy.stats import chisquare

from memrl.models import StateSpec
from memrl.replay import (
    Chunk,
    ReplayShard,
    SumTree,
    importance_weights,
    sequence_priority,
)

SPEC = {"h": StateSpec("carry", (1, 3))}


def chunk(stream, start, n, first_at=(0,), done_at=()):
    first = np.zeros(n, dtype=bool)
    first[list(first_at)] = True
    terminated = np.zeros(n, dtype=bool)
    terminated[list(done_at)] = True
    steps = np.arange(start, start + n, dtype=np.float32)
    return Chunk(
        stream=stream,
        start_step=start,
        data={
            "obs": np.repeat(steps[:, None], OBS_DIM, axis=1),
            "action": np.arange(n),
            "reward": steps,
            "terminated": terminated,
            "truncated": np.zeros(n, dtype=bool),
            "first": first,
            "h": np.repeat(steps[:, None, None], 3, axis=2),
        },
    )


def test_sum_tree_batch_update_and_sample():
    rng = np.random.default_rng(0)
    tree = SumTree(37)
    values = rng.random(37) * (rng.random(37) > 0.3)
    tree.update(np.arange(37), values)
    assert tree.total == pytest.approx(values.sum())
    assert tree.count == np.count_nonzero(values)
    assert tree.min_positive == pytest.approx(values[values > 0].min())
    # Repeated indices: the last write wins, as in a loop.
    tree.update(np.array([3, 3, 5]), np.array([9.0, 2.0, 0.0]))
    values[3], values[5] = 2.0, 0.0
    assert tree.total == pytest.approx(values.sum())
    drawn = tree.sample(50_000, rng)
    assert np.all(values[drawn] > 0)  # zero leaves are never drawn
    counts = np.bincount(drawn, minlength=37)
    nz = values > 0
    _, p = chisquare(counts[nz], values[nz] / values[nz].sum() * counts.sum())
    assert p > 1e-3
    with pytest.raises(ValueError, match="out of range"):
        tree.update(np.array([37]), np.array([1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        tree.update(np.array([1]), np.array([-1.0]))


def filled_shard(**overrides) -> ReplayShard:
    shard = ReplayShard(replay_config(capacity=2 * 64, max_streams=2, **overrides), SPEC)
    for stream in (1, 2):
        shard.add_chunk(chunk(stream, 0, 40, first_at=(0, 17), done_at=(16,)))
    return shard


def test_sampling_is_proportional_to_priority_alpha():
    shard = filled_shard(alpha=0.7)
    valid = np.flatnonzero(shard._tree.leaves > 0)
    assert valid.size > 20
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.1, 5.0, size=valid.size)
    batch = shard.gather(valid)
    assert shard.update_priorities(batch.item_id, batch.generation, raw) == valid.size
    counts = np.zeros(shard._tree.size)
    for _ in range(300):
        np.add.at(counts, shard.sample(128).item_id, 1)
    expected = raw**0.7 / np.sum(raw**0.7) * counts.sum()
    assert counts.sum() == counts[valid].sum()  # nothing outside the valid starts
    _, p = chisquare(counts[valid], expected)
    assert p > 1e-3
    # The same counts are far from uniform: the test can tell the difference.
    _, p_uniform = chisquare(counts[valid])
    assert p_uniform < 1e-6


def test_importance_weights_and_uniform_mode():
    shard = filled_shard(beta=0.5)
    valid = np.flatnonzero(shard._tree.leaves > 0)
    batch = shard.gather(valid)
    shard.update_priorities(batch.item_id, batch.generation, np.linspace(0.5, 3.0, valid.size))
    batch = shard.sample(64)
    leaves = shard._tree.leaves[valid]
    prob = batch.priority / leaves.sum()
    want = (valid.size * prob) ** -0.5 / (valid.size * leaves.min() / leaves.sum()) ** -0.5
    np.testing.assert_allclose(batch.weights, want, rtol=1e-5)
    assert batch.weights.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(
        importance_weights(np.array([1.0, 2.0]), 3.0, 2, 1.0, 1.0), [1.0, 0.5], rtol=1e-6
    )

    uniform = filled_shard(prioritized=False)
    b = uniform.sample(16)
    np.testing.assert_array_equal(b.weights, 1.0)
    assert uniform.update_priorities(b.item_id, b.generation, np.full(16, 100.0)) == 0
    assert set(np.unique(uniform._tree.leaves)) <= {0.0, 1.0}


def test_sequence_priority_is_r2d2_mix():
    td = np.array([[1.0, -3.0, 2.0, 100.0], [0.5, 0.5, 0.5, 0.5]])
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    got = sequence_priority(td, mask, eta=0.9)
    np.testing.assert_allclose(got, [0.9 * 3 + 0.1 * 2, 0.5])
    with pytest.raises(ValueError, match="td_abs and mask"):
        sequence_priority(td, mask[:, :2])


def test_updates_to_overwritten_items_are_ignored():
    shard = ReplayShard(replay_config(capacity=64, max_streams=1, burn_in=2, seq_len=4), SPEC)
    shard.add_chunk(chunk(7, 0, 30))
    batch = shard.sample(8)
    stale = batch.item_id[0], batch.generation[0]
    # Overwrite the whole lane (64 slots) with later steps of the same stream.
    shard.add_chunk(chunk(7, 30, 40, first_at=()))
    shard.add_chunk(chunk(7, 70, 40, first_at=()))
    assert shard._generation.reshape(-1)[stale[0]] != stale[1]
    before = shard._tree.leaves.copy()
    applied = shard.update_priorities(np.array([stale[0]]), np.array([stale[1]]), np.array([50.0]))
    assert applied == 0
    np.testing.assert_array_equal(shard._tree.leaves, before)
    # An update with the current generation does apply.
    current = shard._generation.reshape(-1)[stale[0]]
    assert shard._tree.leaves[stale[0]] > 0
    assert shard.update_priorities(np.array([stale[0]]), np.array([current]), np.array([50.0]))
    assert shard._tree.leaves[stale[0]] == pytest.approx(50.0**shard.config.alpha)


def test_bad_chunks_raise_naming_the_problem():
    shard = filled_shard()
    with pytest.raises(ValueError, match="a chunk was lost"):
        shard.add_chunk(chunk(1, 50, 5, first_at=()))
    with pytest.raises(ValueError, match="must start an episode"):
        shard.add_chunk(chunk(9, 0, 5, first_at=()))
    bad = chunk(3, 0, 5)
    bad.data["h"] = bad.data["h"][:, :, :2]
    with pytest.raises(ValueError, match="'h' must have shape"):
        shard.add_chunk(bad)
    bad = chunk(3, 0, 5)
    del bad.data["reward"]
    with pytest.raises(ValueError, match="missing \\['reward'\\]"):
        shard.add_chunk(bad)
    with pytest.raises(ValueError, match="state_storage"):
        replay_config(state_storage="int8")
    with pytest.raises(ValueError, match="must exceed memory_len"):
        ReplayShard(replay_config(capacity=20, max_streams=2), SPEC)
    # Overlapping (already stored) steps are dropped, not stored twice.
    assert shard.add_chunk(chunk(1, 30, 10, first_at=())) == 0
    assert shard.add_chunk(chunk(1, 30, 12, first_at=())) == 2


def test_new_stream_beyond_max_streams_evicts_least_recent():
    shard = filled_shard()  # streams 1 and 2 fill both lanes
    shard.add_chunk(chunk(2, 40, 10, first_at=()))  # stream 2 is now the most recent
    shard.add_chunk(chunk(3, 0, 30))
    assert set(shard._stream_lane) == {2, 3}
    assert set(np.unique(shard.sample(64).stream)) <= {2, 3}

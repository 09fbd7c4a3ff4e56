"""The state a sample returns for a start step is the state the actor had there, for every core.

Real core rollouts with episode resets go into a shard chunk by chunk; lanes are small, so the
ring wraps several times. After each insert, *every* valid start is gathered and compared with
the recorded actor state and sequence, and the set of valid starts is compared with a
step-by-step oracle (so starts near episode starts and near the overwrite point are covered,
and no start that needs an overwritten step is ever handed out).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from core_kwargs import SMALL_CORE_KWARGS, STATEFUL_CORES
from replay_helpers import (
    assert_batch_matches,
    build_core,
    expected_valid,
    fill,
    record_rollout,
    replay_config,
)

from memrl.replay import ChunkConfig, ReplayShard

NUM_ENVS, STEPS = 3, 150
CHUNK = ChunkConfig(length=16, overlap=8)


@functools.cache
def rollout_of(name):
    """One recorded rollout per core, shared by the tests below (stepping a core is slow)."""
    core = build_core(name, SMALL_CORE_KWARGS[name])
    return core.state_spec(), record_rollout(core, NUM_ENVS, STEPS, seed=1)


@pytest.mark.parametrize("name", STATEFUL_CORES)
def test_sampled_state_equals_actor_state(name):
    spec, rollout = rollout_of(name)
    config = replay_config(capacity=4 * 32)
    shard = ReplayShard(config, spec)
    env_of_stream = {101 + e: e for e in range(NUM_ENVS)}
    length = config.sample_len
    writer = None
    checked_near_overwrite = checked_at_episode_start = 0
    for upto in range(10, STEPS + 1, 10):
        writer = fill(shard, rollout, CHUNK, upto, writer)
        for env in range(NUM_ENVS):
            if 101 + env not in shard._stream_lane:
                continue  # no chunk of this env sent yet
            lane = shard._stream_lane[101 + env]
            lo, hi = int(shard._lane_lo[lane]), int(shard._lane_hi[lane])
            oracle = expected_valid(rollout, env, lo, hi, length, shard.history)
            steps = np.arange(lo, hi + 1)
            items = lane * shard.lane_capacity + steps % shard.lane_capacity
            got = shard._tree.get(items) > 0
            want = np.array([oracle[int(s)] for s in steps])
            np.testing.assert_array_equal(got, want, err_msg=f"valid starts, env {env} @ {upto}")
            if got.any():
                batch = shard.gather(items[got])
                assert_batch_matches(batch, rollout, env_of_stream, length)
                valid_steps = steps[got]
                checked_near_overwrite += int(np.sum(valid_steps < lo + 8))
                checked_at_episode_start += int(rollout.first[env, valid_steps].sum())
    # The ring wrapped, and both edge cases were exercised.
    assert shard._lane_lo.max() > 0
    assert checked_near_overwrite > 0 and checked_at_episode_start > 0
    batch = shard.sample(32)
    assert_batch_matches(batch, rollout, env_of_stream, length)
    assert batch.obs.shape == (32, length, rollout.obs.shape[2])


@pytest.mark.parametrize("name", STATEFUL_CORES)
def test_half_precision_state_is_close(name):
    spec, rollout = rollout_of(name)
    for storage, tol in (("bfloat16", 1e-2), ("float16", 1e-3)):
        shard = ReplayShard(replay_config(state_storage=storage), spec)
        fill(shard, rollout, CHUNK, STEPS)
        batch = shard.sample(16)
        for b in range(len(batch)):
            env, s = int(batch.stream[b]) - 101, int(batch.stream_step[b])
            for key, value in rollout.state_in.items():
                want = value[env, s]
                if want.dtype == bool:
                    np.testing.assert_array_equal(batch.state[key][b], want)
                else:
                    np.testing.assert_allclose(
                        batch.state[key][b], want, atol=tol * max(1.0, np.abs(want).max())
                    )

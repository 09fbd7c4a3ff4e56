"""Episodes rebuilt from replay shard checkpoints equal the rollouts that were written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memrl.data import DatasetError, episodes_from_replay_checkpoint
from memrl.replay import ChunkConfig, ReplayShard
from tests.core_kwargs import SMALL_CORE_KWARGS
from tests.replay.replay_helpers import build_core, fill, record_rollout, replay_config

STREAMS = 101  # replay_helpers.fill's stream ids: 101 + env


def _expected(rollout, env: int, lo: int, hi: int) -> list[dict]:
    """Oracle: steps [lo, hi) of env's rollout cut at `first`."""
    out, a = [], lo
    for t in range(lo + 1, hi + 1):
        if t == hi or rollout.first[env, t]:
            out.append(
                dict(
                    obs=rollout.obs[env, a:t],
                    action=rollout.action[env, a:t],
                    reward=rollout.reward[env, a:t],
                    terminated=bool(rollout.terminated[env, t - 1]),
                    truncated=bool(rollout.truncated[env, t - 1]),
                    starts_at_first=bool(rollout.first[env, a]),
                    start_step=a,
                )
            )
            a = t
    return out


def _check(episodes, rollout, ranges: dict[int, tuple[int, int]]) -> None:
    got = {}
    for e in episodes:
        got.setdefault(e.stream - STREAMS, []).append(e)
    assert sorted(got) == sorted(ranges)
    for env, (lo, hi) in ranges.items():
        expected = _expected(rollout, env, lo, hi)
        assert len(got[env]) == len(expected)
        for e, x in zip(got[env], expected, strict=True):
            np.testing.assert_array_equal(e.obs, x["obs"])
            np.testing.assert_array_equal(e.action, x["action"])
            np.testing.assert_array_equal(e.reward, x["reward"])
            assert (e.terminated, e.truncated, e.starts_at_first, e.start_step) == (
                x["terminated"],
                x["truncated"],
                x["starts_at_first"],
                x["start_step"],
            )
            assert e.final_obs is None


@pytest.mark.parametrize("core", ["gru", "trxl"])
def test_episodes_equal_the_rollouts(tmp_path: Path, core: str) -> None:
    model = build_core(core, SMALL_CORE_KWARGS[core])
    rollout = record_rollout(model, num_envs=3, steps=50, seed=1)
    shard = ReplayShard(replay_config(), model.state_spec(), 0)
    writer = fill(shard, rollout, ChunkConfig(length=10, overlap=5), 50)
    for c in writer.flush():
        shard.add_chunk(c)
    shard.save(tmp_path)
    episodes = episodes_from_replay_checkpoint(tmp_path)
    _check(episodes, rollout, {env: (0, 50) for env in range(3)})
    # The last episode of each stream is unfinished unless the rollout ended it at step 49.
    for env in range(3):
        last = [e for e in episodes if e.stream == STREAMS + env][-1]
        assert last.finished == bool(rollout.terminated[env, 49] or rollout.truncated[env, 49])


def test_overwritten_head_and_gaps_are_flagged_not_glued(tmp_path: Path) -> None:
    model = build_core("gru", SMALL_CORE_KWARGS["gru"])
    rollout = record_rollout(model, num_envs=2, steps=120, seed=2)
    shard = ReplayShard(replay_config(), model.state_spec(), 0)  # 64 steps per stream
    fill(shard, rollout, ChunkConfig(length=10, overlap=0), 120)
    shard.save(tmp_path)
    episodes = episodes_from_replay_checkpoint(tmp_path)
    ranges = {}
    for env in range(2):
        mine = [e for e in episodes if e.stream == STREAMS + env]
        lo, hi = mine[0].start_step, mine[-1].start_step + len(mine[-1])
        assert hi - lo <= 64 and lo > 0
        ranges[env] = (lo, hi)
    _check(episodes, rollout, ranges)

    # A hole in a stream: the piece before ends unfinished, the one after starts mid-episode.
    rollout = record_rollout(model, num_envs=1, steps=40, seed=3)
    rollout.first[0, :] = False
    rollout.first[0, 0] = True
    rollout.terminated[0, :] = False
    rollout.truncated[0, :] = False
    shard = ReplayShard(replay_config(), model.state_spec(), 0)
    from memrl.replay import ChunkWriter

    writer = ChunkWriter(1, ChunkConfig(length=10, overlap=0), streams=[STREAMS])
    chunks = []
    while writer.steps < 40:
        chunks += writer.add(rollout.step_record(writer.steps))
    for i, c in enumerate(chunks):
        if i != 1:  # lose steps 10..19
            shard.add_chunk(c, allow_gap=True)
    out = tmp_path / "gap"
    shard.save(out)
    pieces = episodes_from_replay_checkpoint(out)
    assert [(p.start_step, len(p), p.starts_at_first, p.finished) for p in pieces] == [
        (0, 10, True, False),
        (20, 20, False, False),
    ]
    np.testing.assert_array_equal(pieces[1].obs, rollout.obs[0, 20:40])


def test_corrupt_checkpoint_is_named(tmp_path: Path) -> None:
    model = build_core("gru", SMALL_CORE_KWARGS["gru"])
    rollout = record_rollout(model, num_envs=1, steps=20, seed=4)
    shard = ReplayShard(replay_config(), model.state_spec(), 0)
    fill(shard, rollout, ChunkConfig(length=10, overlap=0), 20)
    path = shard.save(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=str(path)):
        episodes_from_replay_checkpoint(tmp_path)
    with pytest.raises(DatasetError, match="no replay checkpoint"):
        episodes_from_replay_checkpoint(tmp_path / "nothing")

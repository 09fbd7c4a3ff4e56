"""The offline dataset format: round trip, pyarrow.dataset access, streaming, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from episode_checks import assert_same_episodes

import memrl.data.dataset as dataset_module
from memrl.data import DatasetError, DatasetWriter, Episode, iter_episodes, load_episodes, read_info

OBS = gym.spaces.Box(-5.0, 5.0, (2, 3), np.float32)
BOX = gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 2.0], np.float32))


def _episodes(action_space: gym.Space, n: int = 4, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        steps = int(rng.integers(1, 9))
        action = np.stack([action_space.sample() for _ in range(steps)])
        out.append(
            Episode(
                obs=rng.uniform(-5, 5, (steps, 2, 3)).astype(np.float32),
                action=action,
                reward=rng.normal(size=steps).astype(np.float32),
                terminated=i % 2 == 0,
                truncated=i % 2 == 1,
                episode_id=i,
                final_obs=rng.uniform(-5, 5, (2, 3)).astype(np.float32),
            )
        )
    return out


def _write(path: Path, episodes: list[Episode], action_space: gym.Space = BOX) -> Path:
    writer = DatasetWriter(
        path, OBS, action_space, env_id="memrl/Pendulum-P-v0", collector={"policy": "random"}
    )
    for e in episodes:
        writer.add(e)
    return writer.close()


@pytest.mark.parametrize("action_space", [BOX, gym.spaces.Discrete(4, start=1)])
def test_round_trip(tmp_path: Path, action_space: gym.Space) -> None:
    action_space.seed(0)
    episodes = _episodes(action_space)
    _write(tmp_path / "ds", episodes, action_space)
    info, back = load_episodes(tmp_path / "ds")
    assert info.action_space == action_space and info.observation_space == OBS
    assert info.env_id == "memrl/Pendulum-P-v0" and info.collector == {"policy": "random"}
    assert (info.total_episodes, info.total_steps) == (4, sum(len(e) for e in episodes))
    assert_same_episodes(episodes, back)


def test_readable_with_pyarrow_dataset(tmp_path: Path) -> None:
    episodes = _episodes(BOX)
    root = _write(tmp_path / "ds", episodes)
    part = pads.partitioning(pa.schema([("episode_id", pa.int64())]))
    ds = pads.dataset(
        root / "data",
        format="parquet",
        partitioning=part,
        ignore_prefixes=[".", "_", "metadata.json"],
    )
    table = ds.to_table()
    steps = sum(len(e) for e in episodes)
    assert table.num_rows == steps + len(episodes)  # Minari: T + 1 observations per episode
    ids, counts = np.unique(table.column("episode_id").to_numpy(), return_counts=True)
    assert ids.tolist() == [0, 1, 2, 3] and counts.tolist() == [len(e) + 1 for e in episodes]
    meta = json.loads((root / "data" / "metadata.json").read_text())
    low_high = json.loads(meta["action_space"])
    assert low_high["low"] == [-1.0, 0.0] and low_high["high"] == [1.0, 2.0]
    assert meta["data_format"] == "parquet" and meta["memrl"]["env_id"] == "memrl/Pendulum-P-v0"


def test_streams_one_file_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "ds", _episodes(BOX, n=6))
    reads = []
    real = dataset_module.pq.read_table
    monkeypatch.setattr(
        dataset_module.pq, "read_table", lambda p, **k: reads.append(p) or real(p, **k)
    )
    stream = iter_episodes(tmp_path / "ds")
    first = next(stream)
    assert first.episode_id == 0 and len(reads) == 1
    assert len(list(stream)) == 5 and len(reads) == 6


def test_corrupt_file_is_named_and_nothing_loads(tmp_path: Path) -> None:
    _write(tmp_path / "ds", _episodes(BOX))
    victim = tmp_path / "ds" / "data" / "2" / "part-0.parquet"
    data = bytearray(victim.read_bytes())
    data[-12:-8] = b"\xff\xff\xff\xff"  # the footer length: unreadable
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=str(victim)):
        load_episodes(tmp_path / "ds")
    stream = iter_episodes(tmp_path / "ds")
    with pytest.raises(DatasetError, match=str(victim)):
        next(stream)  # checked before the first episode is yielded


def test_schema_mismatch_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "ds", _episodes(BOX))
    victim = tmp_path / "ds" / "data" / "1" / "part-0.parquet"
    table = pq.read_table(victim)
    table = table.set_column(2, "rewards", table.column("rewards").cast(pa.float32()))
    pq.write_table(table, victim)
    with pytest.raises(DatasetError, match=rf"{victim} has schema"):
        load_episodes(tmp_path / "ds")


def test_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_info(tmp_path)
    root = _write(tmp_path / "ds", _episodes(BOX))
    with pytest.raises(ValueError, match="already holds data"):
        DatasetWriter(root, OBS, BOX, env_id=None)
    (root / "data" / "3" / "part-0.parquet").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_episodes(root)
    meta_path = root / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["action_space"] = json.dumps(
        {"type": "Box", "dtype": "float32", "shape": [2], "low": [-1e400] * 2, "high": [1e400] * 2}
    )
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="no finite bounds"):
        read_info(root)


def test_multibinary_observations_round_trip(tmp_path: Path) -> None:
    # T-Maze's observation space (memrl's extension of Minari's space JSON).
    obs_space = gym.spaces.MultiBinary(3)
    rng = np.random.default_rng(0)
    episode = Episode(
        obs=rng.integers(0, 2, (5, 3)).astype(np.int8),
        action=np.array([0, 3, 3, 1, 2]),
        reward=np.ones(5, np.float32),
        terminated=True,
        truncated=False,
        episode_id=0,
        final_obs=np.array([0, 1, 0], np.int8),
    )
    writer = DatasetWriter(tmp_path / "ds", obs_space, gym.spaces.Discrete(4), env_id=None)
    writer.add(episode)
    writer.close()
    info, (back,) = load_episodes(tmp_path / "ds")
    assert info.observation_space == obs_space and back.obs.dtype == np.int8
    np.testing.assert_array_equal(back.obs, episode.obs)
    np.testing.assert_array_equal(back.final_obs, episode.final_obs)


def test_a_writer_that_fails_leaves_no_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="boom"), DatasetWriter(root, OBS, BOX, env_id=None) as w:
        w.add(_episodes(BOX, n=1)[0])
        raise RuntimeError("boom")
    assert list(root.iterdir()) == []
    with DatasetWriter(root, OBS, BOX, env_id=None) as writer:  # the folder is still free
        writer.add(_episodes(BOX, n=1)[0])
        assert not (root / "data").exists()  # in place only once closed
    assert read_info(root).total_episodes == 1 and sorted(p.name for p in root.iterdir()) == [
        "data"
    ]


def test_minari_reads_it(tmp_path: Path) -> None:
    """Only where the optional ``minari`` package is installed."""
    minari = pytest.importorskip("minari")
    episodes = _episodes(BOX)
    root = _write(tmp_path / "ds", episodes)
    ds = minari.MinariDataset(root / "data")
    assert ds.total_episodes == 4 and ds.action_space == BOX
    for a, b in zip(episodes, ds.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(a.action, b.actions)
        np.testing.assert_array_equal(a.reward, b.rewards)
        np.testing.assert_array_equal(np.concatenate([a.obs, a.final_obs[None]]), b.observations)

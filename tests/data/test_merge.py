"""``memrl data merge``: several datasets of one env as one (D4RL-style mixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from episode_checks import assert_same_episodes

from memrl.cli import main
from memrl.data import DatasetError, DatasetWriter, Episode, load_episodes, merge_datasets
from memrl.data.collect import collect

ENV = "memrl/PointGoalMemory-v0"


def _random(path: Path, episodes: int, seed: int, steps: int = 5) -> Path:
    collect(ENV, str(path), episodes, seed=seed, env_kwargs={"max_episode_steps": steps})
    return path


def test_merge_copies_every_episode_in_order_with_unique_ids(tmp_path: Path, capsys) -> None:
    a, b = _random(tmp_path / "a", 3, seed=0), _random(tmp_path / "b", 2, seed=7)
    out = tmp_path / "mix"
    assert main(["data", "merge", str(out), str(a), str(b), "--dataset-id", "memrl/mix-v0"]) == 0
    info, merged = load_episodes(out)
    originals = load_episodes(a)[1] + load_episodes(b)[1]
    assert [e.episode_id for e in merged] == [0, 1, 2, 3, 4]
    assert (info.total_episodes, info.total_steps) == (5, 25)
    assert info.env_id == ENV and info.env_kwargs == {"max_episode_steps": 5}
    assert info.dataset_id == "memrl/mix-v0"
    assert_same_episodes(originals, merged)
    sources = info.collector["sources"]
    assert info.collector["policy"] == "mixture" and len(sources) == 2
    assert [s["episode_ids"] for s in sources] == [[0, 3], [3, 5]]
    assert sources[1]["path"] == str(b) and sources[1]["collector"]["seed"] == 7
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["collector"]["policy"] == "mixture"


def test_mismatches_are_named_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    a = _random(tmp_path / "a", 1, seed=0)
    other_kwargs = _random(tmp_path / "b", 1, seed=0, steps=6)
    pendulum = tmp_path / "p"
    collect("memrl/Pendulum-P-v0", str(pendulum), 1, seed=0)
    out = tmp_path / "mix"
    for other, field in ((pendulum, "env_id"), (other_kwargs, "env_kwargs")):
        assert main(["data", "merge", str(out), str(a), str(other)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"has {field}" in err and str(other) in err, err
        assert not out.exists()


def _one_episode(path: Path, action_space: gym.Space) -> Path:
    obs_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    with DatasetWriter(path, obs_space, action_space, env_id=None) as writer:
        writer.add(
            Episode(
                obs=np.zeros((2, 2), np.float32),
                action=np.stack([action_space.sample()] * 2),
                reward=np.zeros(2, np.float32),
                terminated=True,
                truncated=False,
                episode_id=0,
                final_obs=np.zeros(2, np.float32),
            )
        )
    return path


def test_space_mismatch_and_corrupt_inputs_write_nothing(tmp_path: Path) -> None:
    box = _one_episode(tmp_path / "box", gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    wide = _one_episode(tmp_path / "wide", gym.spaces.Box(-2.0, 2.0, (2,), np.float32))
    out = tmp_path / "mix"
    with pytest.raises(DatasetError, match="has action_space Box"):
        merge_datasets(out, [box, wide])
    assert not out.exists()
    same = _one_episode(tmp_path / "same", gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    victim = same / "data" / "0" / "part-0.parquet"
    victim.write_bytes(victim.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=str(victim)):
        merge_datasets(out, [box, same])
    assert not out.exists()
    with pytest.raises(ValueError, match="already holds data"):
        merge_datasets(box, [wide])
    with pytest.raises(ValueError, match="at least one"):
        merge_datasets(out, [])

"""``memrl data collect`` / ``memrl data info`` on a random policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memrl.cli import main
from memrl.data import load_episodes, read_info


def test_collect_then_info(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    assert (
        main(["data", "collect", "memrl/PointGoalMemory-v0", "--episodes", "3", "--out", str(out)])
        == 0
    )
    info, episodes = load_episodes(out)
    assert info.env_id == "memrl/PointGoalMemory-v0" and len(episodes) == 3
    assert all(len(e) == 50 and e.truncated and not e.terminated for e in episodes)
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["episodes"], summary["steps"]) == (3, 150)
    assert summary["action_space"] == {"low": [-1.0, -1.0], "high": [1.0, 1.0]}
    np.testing.assert_allclose(
        summary["return"]["mean"], np.mean([e.total_reward for e in episodes]), rtol=1e-6
    )
    # Same seed, same data; an existing dataset is not overwritten.
    again = tmp_path / "again"
    main(["data", "collect", "memrl/PointGoalMemory-v0", "--episodes", "3", "--out", str(again)])
    np.testing.assert_array_equal(load_episodes(again)[1][2].action, episodes[2].action)
    capsys.readouterr()
    code = main(
        ["data", "collect", "memrl/PointGoalMemory-v0", "--episodes", "1", "--out", str(out)]
    )
    assert code == 2 and "already holds data" in capsys.readouterr().err
    assert read_info(out).total_episodes == 3


def test_collect_from_a_config(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert (
        main(["data", "collect", "td3/pendulum_p_gru", "--episodes", "1", "--out", str(out)]) == 0
    )
    info, episodes = load_episodes(out)
    assert info.env_id == "memrl/Pendulum-P-v0" and len(episodes[0]) == 200


def test_a_random_policy_takes_neither_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Rolling out checkpoints (with --noise / --epsilon): tests/test_data_collect.py.
    out = tmp_path / "ds"
    argv = ["data", "collect", "memrl/PointGoalMemory-v0", "--episodes", "1", "--out", str(out)]
    assert main([*argv, "--noise", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--noise: not for a random policy" in err and "td3 checkpoint" in err
    assert not out.exists()

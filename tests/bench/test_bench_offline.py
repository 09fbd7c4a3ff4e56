"""``memrl bench offline``: a tiny end-to-end run (slow), and its pieces with known answers."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from memrl import checkpoints
from memrl.bench import offline as bench
from memrl.bench.offline_behaviour import Snapshot, pick_medium_expert
from memrl.bench.offline_learners import normalized
from memrl.cli import main
from memrl.data import load_episodes

ROW_KEYS = {
    "task", "dataset", "episodes", "steps", "behaviour_return", "bc_return",
    "qtransformer_return", "bc_normalized", "qtransformer_normalized", "qt_beats_behaviour",
    "updates", "qtransformer_loss", "bc_loss", "qtransformer_time_s", "bc_time_s",
}  # fmt: skip


def _args(tmp_path: Path, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(tmp_path / "offline.json"))
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def _snapshots(*scores: float) -> list[Snapshot]:
    return [Snapshot(1000 * (i + 1), s, {}) for i, s in enumerate(scores)]


def test_medium_is_an_earlier_snapshot_halfway_to_the_best():
    # random -1200, expert -200 (index 4): halfway is -700, nearest earlier is -650 (index 2).
    assert pick_medium_expert(_snapshots(-1300, -1000, -650, -800, -200, -300), -1200, 0.5) == (
        2,
        4,
    )
    assert pick_medium_expert(_snapshots(5.0, 5.0), 0.0, 0.5) == (0, 1)  # ties: the later best
    assert pick_medium_expert(_snapshots(9.0, 1.0), 0.0, 0.5) == (0, 0)  # best first: itself
    with pytest.raises(ValueError, match="no TD3 snapshots"):
        pick_medium_expert([], 0.0, 0.5)


def test_normalized_is_d4rl_score():
    assert normalized(-700.0, -1200.0, -200.0) == pytest.approx(50.0)
    assert normalized(-200.0, -1200.0, -200.0) == pytest.approx(100.0)
    assert normalized(1.0, 2.0, 2.0) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--datasets", "random,expert,best"], "--datasets: unknown"),
        (["--datasets", "random,expert,medium-expert"], "medium-expert needs"),
        (["--datasets", "medium,expert"], "random and expert are needed"),
        (["--tasks", "cartpole"], "--tasks: unknown"),
        (["--updates", "0"], "--updates must be an int >= 1"),
        (["--medium", "pendulum-p"], "--medium: expected TASK=CHECKPOINT"),
        (["--medium-fraction", "1.5"], "--medium-fraction"),
        (["--behaviour-noise", "-1"], "--behaviour-noise"),
    ],
)
def test_bad_settings_name_the_flag(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        bench.OfflineBenchSettings.from_args(_args(tmp_path, *argv))


def test_quick_and_full_sizes(tmp_path):
    full = bench.OfflineBenchSettings.from_args(_args(tmp_path))
    quick = bench.OfflineBenchSettings.from_args(_args(tmp_path, "--quick", "--updates", "7"))
    task = bench.TASKS["pointgoal"]
    assert full.datasets == list(bench.DEFAULT_DATASETS) and full.tasks == list(bench.TASKS)
    assert (full.updates, full.td3_steps_of(task), full.episodes_of(task)) == (5000, 24000, 200)
    assert (quick.updates, quick.episodes_of(task)) == (7, task.quick_episodes)
    assert full.work_dir == str(tmp_path / "offline_work")


@pytest.mark.slow
def test_tiny_run_writes_finite_returns_for_every_dataset(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "offline.json"
    argv = [
        "bench", "offline", "--quick", "--out", str(out), "--td3-steps", "600", "--episodes",
        "2", "--updates", "2", "--eval-episodes", "1", "--timing-updates", "1",
        "--datasets", "random,medium,expert,medium-expert,random-medium",
    ]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    assert {"settings", "rows", "learner", "td3", "datasets", "peers"} <= set(payload)
    rows = payload["rows"]
    assert [(r["task"], r["dataset"]) for r in rows] == [
        (t, d) for t in bench.TASKS for d in bench.DATASETS
    ]
    for row in rows:
        assert set(row) == ROW_KEYS, row
        for key in ("behaviour_return", "bc_return", "qtransformer_return"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (key, row)
    mixed = {(r["task"], r["dataset"]): r for r in rows}
    for task in bench.TASKS:
        parts = [mixed[(task, d)] for d in ("medium", "expert")]
        assert mixed[(task, "medium-expert")]["episodes"] == sum(p["episodes"] for p in parts)
        info, episodes = load_episodes(payload["datasets"][task]["medium"])
        assert info.collector["algo"] == "td3" and info.collector["noise"] == 0.1
        for level in ("medium", "expert"):
            checkpoints.verify(payload["td3"][task][level])  # ordinary memrl checkpoints
    assert {t["task"] for t in payload["learner"]} == set(bench.TASKS)
    assert all(t["batch_size"] == 256 and t["timesteps_per_s"] > 0 for t in payload["learner"])
    md = out.with_suffix(".md").read_text()
    assert "| pointgoal | medium-expert |" in md and "CQL" in md

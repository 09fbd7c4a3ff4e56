"""A real cell through the real adapter: PPO on a short T-Maze with a tiny GRU, then the suite
CLI end to end on the local Ray (one Ray task per cell)."""

import json
import logging

import pytest
import yaml

from memrl.repro.cell import run_cell
from memrl.repro.cells import plan_cells
from memrl.repro.cli import main
from memrl.repro.suite import suite_from_dict

TINY = {
    "name": "tiny",
    "seeds": 1,
    "margin": 0.0,
    "seq_lens": [8],
    "overrides": {
        "logging.tensorboard": False,
        "ppo.train_batch_size_per_learner": 256,
        "ppo.minibatch_size": 128,
        "ppo.num_epochs": 1,
        "resources.num_envs_per_env_runner": 4,
    },
    "cores": {"gru": {"core_kwargs": {"hidden_size": 8, "num_layers": 1}}, "mlp": {}},
    "tasks": {
        "tmaze": {
            "config": "demo/gru",
            "overrides": {"task.corridor_len": 2, "task.max_steps": 10},
            "timesteps": 512,  # two iterations of 256 steps
            "chance": 0.0,
            "threshold": -100.0,  # every reported return crosses it
            "eval_episodes": 5,
        }
    },
}


@pytest.fixture()
def ray_one_cpu():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_a_real_cell_trains_and_evaluates(tmp_path, ray_one_cpu):
    cell = plan_cells(suite_from_dict(TINY), "cpu", 1, tmp_path)[0]
    assert cell.id == "tmaze/gru/L8/s0"
    result = run_cell(cell)
    assert result.status == "ok" and result.iterations == 2
    assert result.env_steps >= 512 and [s for s, _ in result.curve][-1] == result.env_steps
    assert result.evaluation["episodes"] == 5
    assert result.final_return == result.evaluation["return_mean"]
    assert result.success_rate is not None  # T-Maze reports success
    # PPO: also scored with sampled actions, on the same episodes' seeds.
    assert result.sampled_evaluation["episodes"] == 5
    assert result.sampled_evaluation["policy"] == "sampled"
    assert result.sampled_return == result.sampled_evaluation["return_mean"]
    assert result.sampled_success_rate == result.sampled_evaluation["success_rate"]
    assert result.env_steps_per_s > 0 and result.wall_time_s >= result.train_time_s
    first = next(s for s, v in result.curve if v is not None)
    assert result.steps_to_threshold == first
    assert (tmp_path / "runs" / "tmaze-gru-L8-s0" / "progress.log").read_text().strip()


@pytest.mark.slow
def test_cli_runs_a_tiny_suite_on_ray_and_resumes(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    assert main([str(path), "--jobs", "2", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    rows = data["tasks"]["tmaze"]["cells"]
    assert [(r["core"], r["seeds_ok"]) for r in rows] == [("gru", 1), ("mlp", 1)]
    assert (out / "report.md").read_text().count("| gru |") == 1
    assert (out / "tmaze.png").stat().st_size > 1000
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == 2
    stamps = [p.stat().st_mtime_ns for p in cells]
    assert main([str(path), "--out", str(out)]) == 0  # everything finished: nothing reruns
    assert [p.stat().st_mtime_ns for p in cells] == stamps

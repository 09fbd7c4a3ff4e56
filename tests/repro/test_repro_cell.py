"""A real cell through the real adapter: PPO on a short T-Maze with a tiny GRU, then the suite
CLI end to end on the local Ray (one Ray task per cell)."""

import json
import logging

import pytest
import yaml

from memrl.progress import read_metrics
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


class _Killed(Exception):
    """Stands for the process dying mid-run."""


@pytest.mark.slow
def test_a_real_cell_trains_resumes_after_a_kill_and_evaluates(tmp_path, ray_one_cpu, monkeypatch):
    import memrl.loop

    task = {**TINY["tasks"]["tmaze"], "timesteps": 1024}  # four iterations
    suite = suite_from_dict({**TINY, "tasks": {"tmaze": task}})
    cell = plan_cells(suite, "cpu", 1, tmp_path, checkpoint_every=2)[0]
    run = tmp_path / "runs" / "tmaze-gru-L8-s0"

    # Killed in its fourth iteration: three logged, the checkpoint of iteration 2 on disk.
    real, calls = memrl.loop.run_iteration, []

    def dies_in_the_fourth(*args):
        calls.append(1)
        if len(calls) == 4:
            raise _Killed
        return real(*args)

    monkeypatch.setattr(memrl.loop, "run_iteration", dies_in_the_fourth)
    with pytest.raises(_Killed):
        run_cell(cell)
    before = read_metrics(run)
    assert [m["iteration"] for m in before] == [1, 2, 3]
    monkeypatch.setattr(memrl.loop, "run_iteration", real)

    result = run_cell(cell)
    assert result.status == "ok" and result.resumed_at == 2
    assert result.iterations == 4 and len(result.curve) == 4
    # The curve keeps the first two iterations as they were logged; the third was trained again.
    assert [s for s, _ in result.curve[:2]] == [m["env_steps"] for m in before[:2]]
    steps = [s for s, _ in result.curve]
    assert steps == sorted(steps) and steps[-1] == result.env_steps >= 1024
    assert result.env_steps_per_s > 0 and result.wall_time_s > 0 and result.train_time_s > 0
    first = next(s for s, v in result.curve if v is not None)
    assert result.steps_to_threshold == first
    # Scored greedily, and (PPO) with sampled actions on the same episodes' seeds.
    assert result.evaluation["episodes"] == 5
    assert result.final_return == result.evaluation["return_mean"]
    assert result.success_rate is not None  # T-Maze reports success
    assert result.sampled_evaluation["episodes"] == 5
    assert result.sampled_evaluation["policy"] == "sampled"
    assert result.sampled_return == result.sampled_evaluation["return_mean"]
    assert result.sampled_success_rate == result.sampled_evaluation["success_rate"]
    discarded = (run / "metrics.discarded.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in discarded] == [3]
    assert "resuming from" in (run / "progress.log").read_text()


def test_a_cell_of_another_config_is_set_aside_not_resumed(tmp_path):
    from memrl import checkpoints
    from memrl.repro.cell import resume_point, set_aside

    (cell,) = [c for c in plan_cells(suite_from_dict(TINY), "cpu", 1, tmp_path) if c.core == "gru"]
    cfg = cell.train_config()
    assert resume_point(cell, cfg) == (None, None)  # nothing left behind
    (cfg.run_dir / "metrics.jsonl").parent.mkdir(parents=True)
    (cfg.run_dir / "metrics.jsonl").write_text('{"iteration": 1}\n')
    assert resume_point(cell, cfg) == (None, "a run stopped before its first checkpoint")

    # A checkpoint folder whose config is this cell's with another learning rate.
    ckpt = cfg.checkpoint_dir / "iter_000002"
    (ckpt / "algorithm").mkdir(parents=True)
    other = json.loads(json.dumps(cell.config))
    other["ppo"]["lr"] *= 2
    (ckpt / checkpoints.CONFIG_FILE).write_text(yaml.safe_dump(other))
    (ckpt / checkpoints.STATE_FILE).write_text(
        json.dumps({"iteration": 2, "env_steps": 512, "time_s": 1.0, "name": cfg.name})
    )
    (ckpt / "algorithm" / "state.pkl").write_bytes(b"weights")
    manifest = checkpoints.build_manifest(ckpt, other)
    (ckpt / checkpoints.MANIFEST_FILE).write_text(json.dumps(manifest))
    found, why = resume_point(cell, cfg)
    assert found is None and "iter_000002 is of another config" in why

    # The same checkpoint with the cell's own config is resumed.
    (ckpt / checkpoints.CONFIG_FILE).write_text(yaml.safe_dump(cell.config))
    manifest = checkpoints.build_manifest(ckpt, cell.config)
    (ckpt / checkpoints.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert resume_point(cell, cfg) == (ckpt, None)

    # Damaged: nothing verifies, so the folders are moved aside, not deleted.
    (ckpt / "algorithm" / "state.pkl").write_bytes(b"changed")
    found, why = resume_point(cell, cfg)
    assert found is None and why.startswith("no checkpoint verifies")
    dest = set_aside(cfg, why)
    assert not cfg.run_dir.exists() and not cfg.checkpoint_dir.exists()
    assert (dest / "runs" / cfg.name / "metrics.jsonl").read_text() == '{"iteration": 1}\n'
    assert (dest / "checkpoints" / cfg.name / "iter_000002" / "algorithm" / "state.pkl").exists()
    assert (dest / f"{cfg.name}.why.txt").read_text().startswith("no checkpoint verifies")

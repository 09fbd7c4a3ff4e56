"""``memrl train`` end to end on a tiny T-Maze: logs, checkpoints, resume (local Ray, 2 CPUs).

One Ray instance serves the whole module (train() reuses a running Ray), and one short run is
shared by the tests here, ``memrl eval`` of its checkpoint included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import TINY_RUN

from memrl import checkpoints
from memrl.config import load_config
from memrl.evaluate import main as eval_main
from memrl.progress import read_metrics, rewind_metrics
from memrl.session import build_algorithm
from memrl.train import main

# A two-iteration smoke run of the shipped tmaze/gru config, shrunk to run in seconds.
TINY = [
    *TINY_RUN,
    "resources.num_env_runners=0",
    "checkpoint.every=1",
    "checkpoint.keep=2",
]


@pytest.fixture(scope="module")
def trained_run(ray_local, tmp_path_factory) -> Path:
    """Output dir of ``memrl train tmaze/gru stop.iterations=2 ...`` (tiny)."""
    out = tmp_path_factory.mktemp("train")
    code = main(["tmaze/gru", "stop.iterations=2", f"output_dir={out}", *TINY])
    assert code == 0
    return out


def test_smoke_run_writes_tensorboard_metrics_and_checkpoints(trained_run):
    run_dir = trained_run / "runs" / "tmaze-gru"
    events = list(run_dir.glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    history = read_metrics(run_dir)
    assert [h["iteration"] for h in history] == [1, 2]
    assert history[1]["env_steps"] > history[0]["env_steps"] > 0
    assert history[-1]["entropy"] is not None

    ckpt_root = trained_run / "checkpoints" / "tmaze-gru"
    latest = checkpoints.find(ckpt_root)
    assert latest.name == "iter_000002"
    state = checkpoints.load_state(latest)
    assert (state.iteration, state.env_steps) == (2, history[-1]["env_steps"])
    assert (latest / checkpoints.ALGORITHM_DIR).is_dir()
    saved = checkpoints.load_config_data(latest)
    assert saved["stop"]["iterations"] == 2 and saved["output_dir"] == str(trained_run)


def test_tensorboard_events_hold_the_return(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained_run / "runs" / "tmaze-gru"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "memrl/episode_return_mean" in tags
    assert "memrl/entropy" in tags
    assert len(acc.Scalars("memrl/entropy")) == 2


def _module_weights(algo) -> dict[str, torch.Tensor]:
    module = algo.learner_group._learner.module["default_policy"]
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_resume_continues_iteration_and_weights(trained_run, ray_local):
    ckpt = checkpoints.find(trained_run / "checkpoints" / "tmaze-gru")

    # The restored weights are the saved ones (and differ from a fresh initialisation).
    cfg = load_config(ckpt / checkpoints.CONFIG_FILE)
    fresh = build_algorithm(cfg.model_copy(update={"seed": 12345}))
    restored = build_algorithm(cfg, resume=ckpt)
    try:
        fresh_w, restored_w = _module_weights(fresh), _module_weights(restored)
        assert restored.iteration == 2
    finally:
        fresh.stop()
        restored.stop()
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir = ckpt / "algorithm" / "learner_group" / "learner" / "rl_module" / "default_policy"
    saved_w = RLModule.from_checkpoint(module_dir).state_dict()
    assert saved_w.keys() == restored_w.keys()
    for key, value in saved_w.items():
        torch.testing.assert_close(restored_w[key], torch.as_tensor(value), rtol=0, atol=0)
    assert any(not torch.equal(fresh_w[k], restored_w[k]) for k in restored_w)

    # `memrl train --resume` (config taken from the checkpoint) continues at iteration 3.
    assert main(["--resume", str(ckpt), "stop.iterations=3"]) == 0
    history = read_metrics(trained_run / "runs" / "tmaze-gru")
    assert [h["iteration"] for h in history] == [1, 2, 3]
    assert history[2]["env_steps"] > history[1]["env_steps"]
    newest = checkpoints.find(trained_run / "checkpoints" / "tmaze-gru")
    assert newest.name == "iter_000003"
    # keep=2: the first checkpoint was pruned
    kept = sorted(p.name for p in (trained_run / "checkpoints" / "tmaze-gru").glob("iter_*"))
    assert kept == ["iter_000002", "iter_000003"]


def test_bad_config_fails_before_ray(tmp_path, capsys):
    import ray

    was_running = ray.is_initialized()
    code = main(["tmaze/gru", "stop.iterations=1", "ppo.lamda=0.9", f"output_dir={tmp_path}"])
    assert code == 2
    out = capsys.readouterr().out
    assert "ppo.lamda" in out and "lambda" in out
    assert ray.is_initialized() == was_running
    assert not (tmp_path / "runs").exists()


def test_resume_from_a_missing_path_is_an_error(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no memrl checkpoint" in capsys.readouterr().out


def test_eval_of_a_trained_checkpoint_prints_success_and_return(trained_run, capsys):
    ckpt_root = trained_run / "checkpoints" / "tmaze-gru"
    assert eval_main([str(ckpt_root), "--episodes", "12"]) == 0
    out = capsys.readouterr().out
    assert "episodes: 12" in out and "greedy" in out
    assert "return:" in out and "95% CI" in out
    assert "success:" in out and "95% Wilson CI" in out

    assert eval_main([str(ckpt_root), "--episodes", "8", "--explore", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["episodes"] == 8 and report["explore"] is True
    assert 0.0 <= report["success_rate"] <= 1.0
    low, high = report["success_ci95"]
    assert low <= report["success_rate"] <= high
    rlow, rhigh = report["return_ci95"]
    assert rlow <= report["return_mean"] <= rhigh
    # T-Maze returns are bounded: +4 at best, and at least -0.1 per step before -1 or a cut-off
    assert report["return_mean"] <= 4.0


def test_rewind_metrics_moves_later_iterations_aside(tmp_path):
    lines = [json.dumps({"iteration": i, "env_steps": 100 * i}) for i in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"iteration": 6, "env_')
    assert rewind_metrics(tmp_path, 3) == 3  # iterations 4, 5 and the line cut short
    assert [m["iteration"] for m in read_metrics(tmp_path)] == [1, 2, 3]
    discarded = (tmp_path / "metrics.discarded.jsonl").read_text().splitlines()
    assert discarded == [lines[3], lines[4], '{"iteration": 6, "env_']
    assert rewind_metrics(tmp_path, 3) == 0  # nothing left to move
    assert rewind_metrics(tmp_path / "absent", 3) == 0

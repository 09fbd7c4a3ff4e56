"""Fault tolerance: a killed env runner is restarted mid-run; a killed job resumes from its
checkpoint (``memrl train --resume``) at the checkpoint's iteration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from scale_helpers import REPO, cmdline, descendants, kill_session, session_processes
from tiny import TINY_RUN

from memrl import checkpoints
from memrl.config import load_config
from memrl.progress import read_metrics

TINY = [
    *TINY_RUN,
    "ppo.train_batch_size_per_learner=256",
    "ppo.minibatch_size=128",
    "checkpoint.every=0",
]


def env_runner_pids() -> list[int]:
    """PIDs of this process's own RLlib env runner actors (its Ray is a child of it)."""
    return sorted(
        pid
        for pid in descendants(os.getpid())
        if cmdline(pid).startswith("ray::SingleAgentEnvRunner")
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_env_runner_is_restarted_and_training_finishes(tmp_path, ray_local):
    from memrl.loop import train

    iterations = 12
    cfg = load_config(
        "tmaze/gru",
        [
            *TINY,
            "resources.num_env_runners=2",
            f"stop.iterations={iterations}",
            f"output_dir={tmp_path}",
        ],
    )
    run_dir = tmp_path / "runs" / cfg.name
    killed: dict[str, object] = {}

    def kill_one_runner_after_first_iteration() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if read_metrics(run_dir):
                pids = env_runner_pids()
                if len(pids) == 2:
                    killed["before"] = pids
                    os.kill(pids[0], signal.SIGKILL)
                    killed["pid"] = pids[0]
                    killed["at_iteration"] = len(read_metrics(run_dir))
                    break
            time.sleep(0.2)
        # wait for Ray/RLlib to bring up a replacement process
        while time.monotonic() < deadline:
            pids = env_runner_pids()
            if len(pids) == 2 and killed.get("pid") not in pids:
                killed["after"] = pids
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_runner_after_first_iteration, daemon=True)
    killer.start()
    result = train(cfg)
    killer.join(timeout=30)

    assert "pid" in killed, "no env runner was found to kill"
    assert killed["at_iteration"] < iterations, "the runner died after training ended"
    assert result.iterations == iterations
    assert [h["iteration"] for h in read_metrics(run_dir)] == list(range(1, iterations + 1))
    assert "after" in killed, f"no replacement env runner came up: {killed}"

    # The run's own report (TensorBoard scalars of RLlib's fault-tolerance stats).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    restarts = [s.value for s in acc.Scalars("fault_tolerance/num_remote_worker_restarts")]
    healthy = [s.value for s in acc.Scalars("fault_tolerance/num_healthy_workers")]
    assert restarts[0] == 0 and restarts[-1] >= 1, restarts
    assert healthy[-1] == 2, healthy
    # every iteration sampled (the surviving runner kept going while the other restarted)
    steps = [h["env_steps"] for h in read_metrics(run_dir)]
    assert all(b > a for a, b in zip(steps, steps[1:], strict=False)), steps


def _train_cli(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(
        [sys.executable, "-m", "memrl.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_job_resumes_from_its_checkpoint(tmp_path):
    root = tmp_path / "checkpoints" / "tmaze-gru"
    job = _train_cli(
        "tmaze/gru",
        *TINY,
        "resources.num_env_runners=0",
        "checkpoint.every=1",
        "checkpoint.keep=2",
        "stop.iterations=500",
        f"output_dir={tmp_path}",
    )
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and job.poll() is None:
            try:
                if checkpoints.load_state(checkpoints.find(root)).iteration >= 2:
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        assert job.poll() is None, f"the job ended early:\n{job.stdout.read()}"
        os.killpg(job.pid, signal.SIGKILL)  # the driver and the local Ray it started
        job.wait(30)
    finally:
        kill_session(job)
    assert job.returncode == -signal.SIGKILL
    assert not session_processes(job.pid), "the killed job left processes behind"

    ckpt = checkpoints.find(root)
    state = checkpoints.load_state(ckpt)
    before = read_metrics(tmp_path / "runs" / "tmaze-gru")
    assert state.iteration >= 2 and len(before) >= state.iteration

    target = state.iteration + 2
    resumed = _train_cli("--resume", str(root), f"stop.iterations={target}")
    try:
        out, _ = resumed.communicate(timeout=150)
    finally:
        kill_session(resumed)
    assert resumed.returncode == 0, out[-5000:]
    assert not session_processes(resumed.pid)

    after = read_metrics(tmp_path / "runs" / "tmaze-gru")[len(before) :]
    assert [h["iteration"] for h in after] == [state.iteration + 1, target]
    assert after[0]["env_steps"] > state.env_steps
    newest = checkpoints.find(root)
    assert newest.name == f"iter_{target:06d}"
    assert checkpoints.load_state(newest).iteration == target
    assert f"iterations {target}" in out

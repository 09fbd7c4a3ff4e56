"""``memrl tune`` end to end: a tiny ASHA search over cores and lr, then ``--resume``.

Runs ``python -m memrl.tune`` in a subprocess (it starts and stops its own local Ray, 2 CPUs),
so nothing of Tune's or Ray's state leaks into the test process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from scale_helpers import REPO, cmdline, kill_session, session_processes

NAME = "tiny-search"
# Three trials: GRU, and GTrXL with two memory lengths (each with its own kwargs), lr drawn.
SPEC = {
    "name": NAME,
    "base": "demo/gru",
    "overrides": {
        "stop.iterations": 2,
        "model.max_seq_len": 8,
        "model.network.encoder_hiddens": [8],
        "ppo.train_batch_size_per_learner": 128,
        "ppo.minibatch_size": 64,
        "ppo.num_epochs": 1,
        "resources.num_envs_per_env_runner": 2,
        "checkpoint.every": 1,
    },
    "search": {"ppo.lr": {"loguniform": [0.001, 0.01]}},
    "cores": {
        "gru": {"core_kwargs": {"hidden_size": 8, "num_layers": 1}},
        "gtrxl": {
            "core_kwargs": {"d_model": 8, "num_layers": 1, "num_heads": 1, "d_ff": 16},
            "search": {"model.core_kwargs.memory_len": {"grid_search": [2, 4]}},
        },
    },
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "max_concurrent_trials": 2,
}


def _tune(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``memrl tune`` in a session of its own; fail if any process of it outlives it."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "memrl.tune", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        # Ray's daemons exit a moment after ray.shutdown() returns: give them 15 s.
        deadline = time.monotonic() + 15
        while (leftovers := session_processes(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = [f"{pid}: {cmdline(pid)[:120]}" for pid in leftovers]
        kill_session(proc)
    assert not leftovers, f"processes left by memrl tune: {leftovers}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _histories(experiment: Path) -> dict[str, list[int]]:
    out = {}
    for trial in sorted(experiment.glob("trial_*")):
        lines = (trial / "runs" / "demo-gru" / "metrics.jsonl").read_text().splitlines()
        out[trial.name] = [json.loads(line)["iteration"] for line in lines]
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_search_writes_trials_prints_table_and_resumes(tmp_path):
    spec_file = tmp_path / "search.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, "storage_path": str(tmp_path / "store")}))
    experiment = tmp_path / "store" / NAME
    first = _tune(str(spec_file), timeout=200)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-6000:]
    assert "3 trials of 'tiny-search' validated" in output
    assert f"{NAME}: episode_return_mean (max)" in output  # the results table
    for column in ("lr", "core", "memory_len", "episode_return_mean"):
        assert column in output
    assert "best: trial" in output and "reproduce: memrl train demo/gru" in output

    trials = sorted(p.name for p in experiment.glob("trial_*"))
    assert trials == ["trial_000", "trial_001", "trial_002"]
    histories = _histories(experiment)
    for trial, iterations in histories.items():
        # ASHA (grace 1, factor 2) may stop a trial after its first iteration
        assert iterations in ([1], [1, 2]), (trial, iterations)
        events = list((experiment / trial / "runs" / "demo-gru").glob("events.out.tfevents*"))
        assert events and all(e.stat().st_size > 0 for e in events), trial
        assert list((experiment / trial).glob("checkpoint_*/iter_*/algorithm")), trial
    assert any(h == [1, 2] for h in histories.values())  # the best rung ran to the end

    # Each trial trained the core it was given, with kwargs valid for it.
    params = {
        t: json.loads((experiment / t / "params.json").read_text())["variant"]["params"]
        for t in trials
    }
    assert sorted(p["model.core"] for p in params.values()) == ["gru", "gtrxl", "gtrxl"]
    for trial, p in params.items():
        saved = next((experiment / trial).glob("checkpoint_*/iter_*/config.yaml"))
        model = yaml.safe_load(saved.read_text())["model"]
        assert model["core"] == p["model.core"]
        assert ("memory_len" in model["core_kwargs"]) == (p["model.core"] == "gtrxl")

    # Starting it again without --resume refuses to mix two experiments.
    again = _tune(str(spec_file), timeout=60)
    assert again.returncode == 2 and "pass --resume" in again.stdout

    # --resume of the finished experiment reprints the table; no trial trains again.
    resumed = _tune(str(spec_file), "--resume", timeout=120)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-6000:]
    assert f"{NAME}: episode_return_mean (max)" in output and "best: trial" in output
    assert _histories(experiment) == histories


def _start_driver(
    tmp_path: Path, name: str, overrides: dict
) -> tuple[Path, Path, subprocess.Popen]:
    """Write a two-trial FIFO search (one trial at a time) and start ``memrl tune`` on it in its
    own session (so a test can signal the driver and its Ray together). Returns the spec file,
    the experiment folder and the driver process."""
    spec = {
        **SPEC,
        "name": name,
        "storage_path": str(tmp_path / "store"),
        "overrides": {**SPEC["overrides"], **overrides},
        "search": {"ppo.lr": {"grid_search": [0.003, 0.005]}},
        "cores": None,
        "scheduler": {"type": "fifo"},
        "max_concurrent_trials": 1,
    }
    spec_file = tmp_path / "search.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "memrl.tune", str(spec_file)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return spec_file, tmp_path / "store" / name, driver


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_interrupted_search_resumes_trials_from_their_checkpoints(tmp_path):
    """A search interrupted mid-trial (Ctrl-C: SIGINT to the driver) finishes with ``--resume``;
    the running trial continues from its last checkpoint, the pending one starts fresh."""
    spec_file, experiment, driver = _start_driver(
        tmp_path, "interrupted", {"stop.iterations": 6, "checkpoint.keep": 2}
    )
    try:
        deadline = time.monotonic() + 150
        # wait for the third checkpoint, so that at least one is in the experiment state
        while time.monotonic() < deadline and driver.poll() is None:
            if list(experiment.glob("trial_000/checkpoint_000002")):
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the search ended before it could be interrupted"
        os.kill(driver.pid, signal.SIGINT)  # Tune saves the experiment state and returns
        driver.wait(90)
    finally:
        kill_session(driver)
    assert not list(experiment.glob("trial_001/runs"))  # the second trial never started
    first = [json.loads(x)["iteration"] for x in _metrics_lines(experiment / "trial_000")]
    assert 3 <= first[-1] < 6, first

    resumed = _tune(str(spec_file), "--resume", timeout=200)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-6000:]
    histories = _histories(experiment)
    assert sorted(histories) == ["trial_000", "trial_001"]
    assert histories["trial_001"] == [1, 2, 3, 4, 5, 6]
    # trial_000 went on from its checkpoint, not from scratch (its log holds both runs)
    found = re.search(r"trial 0 resumed at iteration (\d+)", output)
    assert found, output[-6000:]
    checkpointed = int(found.group(1))
    assert 1 <= checkpointed <= first[-1]  # Tune's last recorded checkpoint
    assert histories["trial_000"] == first + list(range(checkpointed + 1, 7))
    assert "interrupted: episode_return_mean (max)" in output


def _metrics_lines(trial: Path) -> list[str]:
    return (trial / "runs" / "demo-gru" / "metrics.jsonl").read_text().splitlines()


def _trial_statuses(experiment: Path) -> dict[str, str]:
    """Trial dirname -> status, from Tune's newest experiment state file ({} before one)."""
    states = sorted(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for item in data.get("trial_data", []):
        text = json.dumps(item)
        found = re.search(r"trial_(\d{3})", text)
        status = re.search(r'\\?"status\\?": \\?"([A-Z]+)', text)
        if found and status:
            out[f"trial_{found.group(1)}"] = status.group(1)
    return out


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigkilled_driver_resumes_without_losing_a_finished_trial(tmp_path):
    """The driver and its Ray are SIGKILLed (no chance to save anything) once the first trial
    has finished and Tune recorded it; ``--resume`` runs the rest and does not train the
    finished trial again."""
    spec_file, experiment, driver = _start_driver(tmp_path, "killed", {"stop.iterations": 3})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            if _trial_statuses(experiment).get("trial_000") == "TERMINATED":
                break
            time.sleep(0.5)
        assert driver.poll() is None, "the search ended before it could be killed"
        assert _trial_statuses(experiment).get("trial_000") == "TERMINATED"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        kill_session(driver)
    finished = _metrics_lines(experiment / "trial_000")
    assert [json.loads(x)["iteration"] for x in finished] == [1, 2, 3]

    resumed = _tune(str(spec_file), "--resume", timeout=240)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-6000:]
    assert _metrics_lines(experiment / "trial_000") == finished  # not trained again
    assert _histories(experiment)["trial_001"][-1] == 3
    assert "killed: episode_return_mean (max)" in output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_qtransformer_search_reserves_its_learner_and_reports_returns(tmp_path):
    """An offline algorithm (no RLlib config to ask for a resource request) runs as Tune
    trials too, scored by its periodic greedy evaluation."""
    from memrl.data_cli import main as data_main

    data = tmp_path / "data"
    assert (
        data_main(["collect", "memrl/PointGoalMemory-v0", "--episodes", "4", "--out", str(data)])
        == 0
    )
    spec = {
        "name": "qt-search",
        "base": "qtransformer/pointgoal_gru",
        "storage_path": str(tmp_path / "store"),
        "overrides": {
            "data.path": str(data),
            "stop.iterations": 2,
            "qtransformer.updates_per_iteration": 2,
            "qtransformer.batch_size": 4,
            "qtransformer.eval_every": 1,
            "qtransformer.eval_episodes": 1,
            "checkpoint.every": 1,
        },
        "search": {"qtransformer.lr": {"grid_search": [0.0003, 0.001]}},
        "max_concurrent_trials": 2,
    }
    spec_file = tmp_path / "qt.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    done = _tune(str(spec_file), timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "no trial reported" not in output
    experiment = tmp_path / "store" / "qt-search"
    for trial in ("trial_000", "trial_001"):
        lines = experiment / trial / "runs" / "qtransformer-pointgoal-gru" / "metrics.jsonl"
        rows = [json.loads(line) for line in lines.read_text().splitlines()]
        assert [r["iteration"] for r in rows] == [1, 2]
        # Each iteration's greedy episode: PointGoal's per-step reward is in [0, 1], 50 steps.
        assert all(0.0 <= r["episode_return_mean"] <= 50.0 for r in rows), rows

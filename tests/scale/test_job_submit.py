"""``ray job submit --working-dir ... -- python -m memrl.train ...`` against a real 2-node cluster.

The cluster (head + one worker node, one CPU each, token auth on with a token of its own) runs
on 127.0.0.1 in a private temp dir, so it never touches other Ray instances on the machine. The
job's working dir is a minimal copy of the repository (``memrl/`` and ``configs/``), the way a
user ships code to a cluster whose Python already has the dependencies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from scale_helpers import REPO, VENV_BIN, local_cluster
from tiny import TINY_RUN

from memrl import checkpoints

# A two-iteration run of the shipped tmaze/gru config, shrunk to seconds; one remote env runner
# (auto: 2 cluster CPUs minus the driver) samples on whichever node has a free CPU.
TINY = [*TINY_RUN, "checkpoint.every=1"]
JOB_TIMEOUT_S = 150


def _working_dir(dest: Path) -> Path:
    """A minimal copy of the repository that can run ``python -m memrl.train``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "memrl", dest / "memrl", ignore=ignore)
    shutil.copytree(REPO / "configs", dest / "configs", ignore=ignore)
    return dest


def _ray(cluster, *args: str, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "ray"), *args],
        env=env or cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def cluster():
    """Head + one worker node (1 CPU each), token auth on; stopped after the module."""
    with local_cluster(worker_nodes=1, cpus_per_node=1) as running:
        yield running


def _submit(cluster, workdir: Path, job_id: str, *entrypoint: str):
    """``ray job submit`` (blocking); asserts the job succeeded and returns its logs."""
    submit = _ray(
        cluster,
        "job", "submit",
        "--address", cluster.dashboard_url,
        "--submission-id", job_id,
        "--working-dir", str(workdir),
        "--runtime-env-json", json.dumps({"excludes": [".venv", "results", "runs"]}),
        "--",
        *entrypoint,
        timeout=JOB_TIMEOUT_S,
    )  # fmt: skip
    status = _ray(cluster, "job", "status", "--address", cluster.dashboard_url, job_id)
    logs = _ray(cluster, "job", "logs", "--address", cluster.dashboard_url, job_id).stdout
    report = f"submit:\n{submit.stdout[-4000:]}\n{submit.stderr[-2000:]}\nlogs:\n{logs}"
    assert submit.returncode == 0, report
    assert f"Job '{job_id}' succeeded" in status.stdout, f"{status.stdout}\n{report}"
    return logs


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_job_submit_trains_on_a_two_node_cluster(tmp_path, cluster):
    workdir = _working_dir(tmp_path / "workdir")
    out = tmp_path / "out"  # absolute: the job's cwd is a temp copy of the working dir
    job_id = f"memrl-train-{int(time.time())}"
    # Token auth is on: a client with the wrong token is refused.
    wrong = dict(cluster.env, RAY_AUTH_TOKEN="0" * 64)
    refused = _ray(cluster, "job", "list", "--address", cluster.dashboard_url, env=wrong)
    assert refused.returncode != 0, refused.stdout

    logs = _submit(
        cluster,
        workdir,
        job_id,
        "python", "-m", "memrl.train", "tmaze/gru",
        "stop.iterations=2", f"output_dir={out}", *TINY,
    )  # fmt: skip

    # The job's own output: progress lines for both iterations and the final summary.
    assert "iter     1" in logs and "iter     2" in logs, logs
    assert "iterations 2" in logs, logs

    latest = checkpoints.find(out / "checkpoints" / "tmaze-gru")
    assert latest.name == "iter_000002"
    assert (latest / checkpoints.ALGORITHM_DIR).is_dir()
    assert checkpoints.load_state(latest).iteration == 2
    events = list((out / "runs" / "tmaze-gru").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)

    # It sampled with one remote env runner (2 cluster CPUs minus the driver: auto -> 1).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "runs" / "tmaze-gru"))
    acc.Reload()
    healthy = acc.Scalars("fault_tolerance/num_healthy_workers")
    assert [s.value for s in healthy] == [1.0, 1.0]
    assert len(acc.Scalars("memrl/episode_return_mean")) == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_job_submit_runs_a_tune_search_on_the_cluster(tmp_path, cluster):
    """``python -m memrl.tune`` as a job: trials are placed across the two nodes' CPUs."""
    workdir = _working_dir(tmp_path / "workdir")
    spec = {
        "name": "job-search",
        "base": "tmaze/gru",
        "storage_path": str(tmp_path / "store"),  # absolute, on storage every node can reach
        "overrides": {
            **{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in TINY)},
            "resources.num_env_runners": 0,
            "stop.iterations": 1,
        },
        "search": {"ppo.lr": {"grid_search": [0.001, 0.003]}},
    }
    (workdir / "search.yaml").write_text(yaml.safe_dump(spec))
    job_id = f"memrl-tune-{int(time.time())}"
    logs = _submit(cluster, workdir, job_id, "python", "-m", "memrl.tune", "search.yaml")
    assert "job-search: episode_return_mean (max)" in logs and "best: trial" in logs, logs
    for trial in ("trial_000", "trial_001"):
        run = tmp_path / "store" / "job-search" / trial / "runs" / "tmaze-gru"
        assert list(run.glob("events.out.tfevents.*")), trial

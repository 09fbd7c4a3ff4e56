"""Where a run executes: Ray started or joined, and the ``resources`` section resolved against it.

``auto`` values are resolved here, against the connected cluster, not in the schema.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict

from memrl.config import ResourcesConfig, TrainConfig


class ResolvedResources(BaseModel):
    """ResourcesConfig with every "auto" replaced by a number for a given cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_env_runners: int
    num_envs_per_env_runner: int
    num_learners: int
    num_gpus_per_learner: float


def resolve_resources(res: ResourcesConfig, *, cpus: float, gpus: float) -> ResolvedResources:
    """Replace "auto" using the cluster's ``cpus`` and ``gpus``.

    - num_gpus_per_learner: 1 if there is a GPU, else 0.
    - num_learners: the number of GPUs when there are two or more (one learner each), else 0
      (the learner runs in the driver, on its GPU if any).
    - num_env_runners: one per CPU left after the driver's and each remote learner's, at least 1
      when the cluster has 2+ CPUs, else 0 (sample in the driver).
    """
    gpus_per_learner = (
        (1.0 if gpus >= 1 else 0.0)
        if res.num_gpus_per_learner == "auto"
        else (float(res.num_gpus_per_learner))
    )
    if res.num_learners == "auto":
        learners = int(gpus) if gpus >= 2 and gpus_per_learner > 0 else 0
    else:
        learners = int(res.num_learners)
    if res.num_env_runners == "auto":
        free = int(cpus) - 1 - learners
        runners = max(free, 1) if cpus >= 2 else 0
    else:
        runners = int(res.num_env_runners)
    return ResolvedResources(
        num_env_runners=runners,
        num_envs_per_env_runner=res.num_envs_per_env_runner,
        num_learners=learners,
        num_gpus_per_learner=gpus_per_learner,
    )


def local_cpus() -> int:
    """CPUs this process may use (cgroup/affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def init_ray(cfg: TrainConfig) -> bool:
    """Connect to or start Ray; returns True if this call started it (so it should stop it).

    RAY_ADDRESS set -> plain ``ray.init()`` (the job-submission case: passing resources to an
    existing cluster raises). ``resources.address`` -> ``ray.init(address=...)``. Otherwise a
    local Ray with this machine's CPUs, no dashboard, and Ray's default (token) auth.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    elif cfg.resources.address:
        ray.init(address=cfg.resources.address)
    else:
        cpus = local_cpus() if cfg.resources.num_cpus == "auto" else cfg.resources.num_cpus
        ray.init(num_cpus=cpus, include_dashboard=False)
    return True


def cluster_resources() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected Ray cluster."""
    import ray

    res = ray.cluster_resources()
    return float(res.get("CPU", 1)), float(res.get("GPU", 0))

"""The ``resources`` section: where things run (``auto`` is resolved by memrl.resources)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from memrl.config.section import Section

Auto = Literal["auto"]


class ResourcesConfig(Section):
    """Where things run; "auto" is resolved against the Ray cluster (memrl.resources)."""

    address: str | None = Field(
        None, description="Ray cluster address; null = RAY_ADDRESS if set, else a local Ray"
    )
    num_cpus: int | Auto = Field("auto", description="CPUs of a local Ray (auto = all)")
    num_env_runners: int | Auto = Field(
        "auto", description="remote sampling actors (auto = CPUs left after driver and learners)"
    )
    num_envs_per_env_runner: int = Field(8, gt=0, description="vectorised envs per env runner")
    num_learners: int | Auto = Field(
        "auto", description="remote learners (auto = GPUs if more than one, else 0: in driver)"
    )
    num_gpus_per_learner: float | Auto = Field(
        "auto", description="GPUs per learner (auto = 1 if the cluster has a GPU, else 0)"
    )

    @field_validator("num_cpus", "num_env_runners", "num_learners", "num_gpus_per_learner")
    @classmethod
    def _non_negative(cls, value: Any) -> Any:
        if value != "auto" and value < 0:
            raise ValueError(f"must be >= 0 or 'auto', got {value!r}")
        return value

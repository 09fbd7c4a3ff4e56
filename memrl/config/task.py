"""The ``task`` section: a gymnasium id plus its constructor kwargs, side by side (flat)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Env-construction keys of ``task`` that are not env kwargs.
TASK_RESERVED = ("env_name",)


class TaskConfig(BaseModel):
    """The environment: a gymnasium id plus its constructor kwargs, side by side (flat)."""

    # Extra keys are the env's kwargs; TrainConfig checks them against the env's signature.
    model_config = ConfigDict(extra="allow", validate_default=True)

    env_name: str = Field(
        description="gymnasium id, tried as given and with the 'memrl/' prefix "
        "(e.g. memrl/TMaze-v0, MysteryPath-Grid-Easy-v0, popgym-RepeatPreviousEasy-v0)"
    )

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The env's constructor kwargs (every key but ``env_name``)."""
        return dict(self.model_extra or {})

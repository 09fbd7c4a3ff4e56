"""``TrainConfig``: one training run, the sections side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from memrl.config.algorithms import PPOHyperparameters, R2D2Hyperparameters, TD3Hyperparameters
from memrl.config.model import ModelConfig
from memrl.config.replay import ReplaySection
from memrl.config.resources import ResourcesConfig
from memrl.config.run import CheckpointConfig, EvaluationConfig, LoggingConfig, StopConfig
from memrl.config.section import Section
from memrl.config.task import TaskConfig

# Algorithms with a section in TrainConfig (r2d2 and td3 also use the replay section).
ALGOS: tuple[str, ...] = ("ppo", "r2d2", "td3")


class TrainConfig(Section):
    """One training run. Sections: task, model, ppo | r2d2 | td3 (+ replay), resources, stop,
    checkpoint, logging."""

    name: str = Field(description="run name: names the log and checkpoint folders")
    seed: int | None = Field(0, description="seed for envs and weights (null = random)")
    output_dir: str = Field("results", description="root of runs/ and checkpoints/ (made absolute)")
    algo: Literal["ppo", "r2d2", "td3"] = Field("ppo", description="algorithm: ppo, r2d2 or td3")
    task: TaskConfig = Field(description="environment id and kwargs")
    model: ModelConfig = Field(default_factory=ModelConfig, description="memory core and heads")
    ppo: PPOHyperparameters = Field(default_factory=PPOHyperparameters, description="PPO")
    r2d2: R2D2Hyperparameters = Field(default_factory=R2D2Hyperparameters, description="R2D2")
    td3: TD3Hyperparameters = Field(default_factory=TD3Hyperparameters, description="TD3")
    replay: ReplaySection = Field(default_factory=ReplaySection, description="off-policy replay")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="placement")
    stop: StopConfig = Field(description="stop conditions")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="saving")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="reporting")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="eval")

    @field_validator("name")
    @classmethod
    def _name_is_a_folder(cls, value: str) -> str:
        if not value or value.strip() != value or value.startswith(("/", ".")):
            raise ValueError(f"must be a non-empty relative folder name, got {value!r}")
        return value

    @property
    def run_dir(self) -> Path:
        """Absolute TensorBoard folder of this run."""
        return Path(self.output_dir).expanduser().resolve() / "runs" / self.name

    @property
    def checkpoint_dir(self) -> Path:
        """Absolute folder holding this run's checkpoints."""
        return Path(self.output_dir).expanduser().resolve() / "checkpoints" / self.name

    @property
    def replay_checkpoint_dir(self) -> Path:
        """Where an off-policy run's replay shards checkpoint for fault tolerance by default."""
        return Path(self.output_dir).expanduser().resolve() / "replay_shards" / self.name

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain data that :func:`config_from_dict` turns back into an equal config."""
        data = self.model_dump(mode="json", by_alias=True)
        # Only the network keys given: TD3 rejects PPO's shared_core when it is set at all.
        data["model"]["network"] = self.model.network.model_dump(mode="json", exclude_unset=True)
        data["output_dir"] = str(Path(self.output_dir).expanduser().resolve())
        return data

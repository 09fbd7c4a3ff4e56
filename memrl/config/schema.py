"""``TrainConfig``: one training run, the sections side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from memrl.config.algorithms import PPOHyperparameters, R2D2Hyperparameters, TD3Hyperparameters
from memrl.config.model import ModelConfig
from memrl.config.qtransformer import DataSection, QTransformerHyperparameters
from memrl.config.replay import ReplaySection
from memrl.config.resources import ResourcesConfig
from memrl.config.run import CheckpointConfig, EvaluationConfig, LoggingConfig, StopConfig
from memrl.config.section import Section
from memrl.config.task import TaskConfig

# Algorithms with a section in TrainConfig (r2d2 and td3 also use the replay section;
# qtransformer, offline, reads the dataset of the data section).
ALGOS: tuple[str, ...] = ("ppo", "r2d2", "td3", "qtransformer")


class TrainConfig(Section):
    """One training run. Sections: task, model, ppo | r2d2 | td3 (+ replay) | qtransformer
    (+ data), resources, stop, checkpoint, logging, evaluation."""

    name: str = Field(description="run name: names the log and checkpoint folders")
    seed: int | None = Field(0, description="seed for envs and weights (null = random)")
    output_dir: str = Field("results", description="root of runs/ and checkpoints/ (made absolute)")
    algo: Literal["ppo", "r2d2", "td3", "qtransformer"] = Field(
        "ppo", description="algorithm: ppo, r2d2, td3 or qtransformer (offline)"
    )
    task: TaskConfig = Field(description="environment id and kwargs")
    model: ModelConfig = Field(default_factory=ModelConfig, description="memory core and heads")
    ppo: PPOHyperparameters = Field(default_factory=PPOHyperparameters, description="PPO")
    r2d2: R2D2Hyperparameters = Field(default_factory=R2D2Hyperparameters, description="R2D2")
    td3: TD3Hyperparameters = Field(default_factory=TD3Hyperparameters, description="TD3")
    qtransformer: QTransformerHyperparameters = Field(
        default_factory=QTransformerHyperparameters, description="Q-Transformer (offline)"
    )
    data: DataSection = Field(default_factory=DataSection, description="offline dataset")
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

    @model_validator(mode="after")
    def _compile_acting_is_ppo_only(self) -> TrainConfig:
        if self.model.compile_acting and self.algo != "ppo":
            raise ValueError(
                f"model.compile_acting: only algo 'ppo' acts through torch.compile; "
                f"set it false for algo {self.algo!r}"
            )
        return self

    @model_validator(mode="after")
    def _offline_needs_data(self) -> TrainConfig:
        if self.algo == "qtransformer" and not self.data.path:
            raise ValueError(
                "data.path: required for algo 'qtransformer': the dataset folder written by "
                "`memrl data collect CONFIG|ENV_ID --episodes N --out DIR`"
            )
        return self

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
        if self.data.path is not None:
            data["data"]["path"] = str(Path(self.data.path).expanduser().resolve())
        return data

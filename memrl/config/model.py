"""The ``model`` section: the memory core and the network around it (encoders and heads)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from memrl.config.section import Section

ACTIVATIONS = ("relu", "tanh", "elu", "silu")


class NetworkConfig(Section):
    """Everything around the memory core: observation encoders and policy/value heads.

    ``model.network`` of a config, and the ``model`` dict of the RLModules (validated again
    there with :meth:`from_dict`, so the defaults live here only). Lists become tuples, so the
    object is hashable and compares by value.
    """

    model_config = ConfigDict(frozen=True)
    label = "model"

    encoder_hiddens: tuple[int, ...] = Field(
        (64,),
        description="MLP layer sizes for vector-like observations (Box of rank <= 2, "
        "MultiBinary, Discrete, MultiDiscrete; the last three one-hot/binary encoded first)",
    )
    cnn_filters: tuple[tuple[int, int, int], ...] = Field(
        ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
        description="(channels, kernel, stride) per conv layer for image observations (Box of "
        "rank 3, H x W x C); the default is the DQN Nature stack",
    )
    cnn_out: int = Field(256, description="size of the linear layer after the conv stack")
    activation: str = Field("relu", description=f"activation of encoders and heads: {ACTIVATIONS}")
    head_hiddens: tuple[int, ...] = Field(
        (), description="MLP layer sizes between the core output and each policy/value output"
    )
    shared_core: bool = Field(
        True,
        description="PPO: one core feeds policy and value heads (False: the value function "
        "gets its own encoder and core, twice the state per step)",
    )
    log_std_init: float = Field(
        0.0, description="initial log std of the Gaussian head (Box actions), learned per dim"
    )

    @field_validator("encoder_hiddens", "head_hiddens", mode="before")
    @classmethod
    def _positive_sizes(cls, value: Any, info: Any) -> Any:
        sizes = list(value) if isinstance(value, list | tuple) else value
        if not isinstance(sizes, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes
        ):
            raise ValueError(
                f"model.{info.field_name} must be a list of positive ints, got {value!r}"
            )
        return value

    @field_validator("cnn_filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> Any:
        ok = isinstance(value, list | tuple) and len(value) > 0
        ok = ok and all(
            isinstance(f, list | tuple)
            and len(f) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in f)
            for f in value
        )
        if not ok:
            raise ValueError(
                "model.cnn_filters must be a non-empty list of [channels, kernel, stride] "
                f"positive ints, got {value!r}"
            )
        return value

    @field_validator("cnn_out", mode="before")
    @classmethod
    def _cnn_out(cls, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"model.cnn_out must be a positive int, got {value!r}")
        return value

    @field_validator("activation")
    @classmethod
    def _activation(cls, value: str) -> str:
        if value not in ACTIVATIONS:
            raise ValueError(f"model.activation must be one of {ACTIVATIONS}, got {value!r}")
        return value

    @field_validator("shared_core", mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"model.shared_core must be a bool, got {value!r}")
        return value

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class ModelConfig(Section):
    """The ``model`` section: the memory core and the network around it."""

    core: str = Field("gru", description="memory core: a memrl.models name ('mlp': no memory)")
    core_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="core hyperparameters; keys checked against core_class(core).hyperparameters()",
    )
    network: NetworkConfig = Field(
        default_factory=NetworkConfig, description="encoder/head settings of the RLModule"
    )
    max_seq_len: int = Field(
        64, gt=0, description="steps per training sequence (truncated backprop length)"
    )
    compile_acting: bool = Field(
        False,
        description="ppo: env runners act through torch.compile (compiled once per runner; "
        "window cores then act without the K/V cache)",
    )

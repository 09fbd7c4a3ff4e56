"""Encoder and head settings of memrl's RLModules (the ``model`` dict of ``build_ppo_config``).

``ModelConfig.from_dict({})`` gives the defaults; an unknown key raises ValueError listing the
valid ones, a bad value names the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ACTIVATIONS = ("relu", "tanh", "elu", "silu")


@dataclass(frozen=True)
class ModelConfig:
    """Everything around the memory core: observation encoders and policy/value heads."""

    encoder_hiddens: tuple[int, ...] = (64,)
    """MLP layer sizes for vector-like observations (Box of rank <= 2, MultiBinary, Discrete,
    MultiDiscrete; the last three are one-hot/binary encoded first)."""

    cnn_filters: tuple[tuple[int, int, int], ...] = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
    """``(channels, kernel, stride)`` per conv layer for image observations (Box of rank 3,
    height x width x channels, e.g. Memory Gym 84x84x3, Memory Maze 64x64x3). The default is the
    DQN Nature stack."""

    cnn_out: int = 256
    """Size of the linear layer after the conv stack."""

    activation: str = "relu"
    """Activation of the encoders and head MLPs; one of ``ACTIVATIONS``."""

    head_hiddens: tuple[int, ...] = ()
    """MLP layer sizes between the core output and each of the policy and value outputs."""

    shared_core: bool = True
    """True: one core feeds both policy and value heads. False: the value function gets its own
    encoder and core (twice the state per step)."""

    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian head (Box actions); a learned,
    state-independent parameter per action dimension."""

    @classmethod
    def from_dict(cls, model: dict[str, Any] | None) -> ModelConfig:
        """Validate ``model`` (None or {} = defaults). Raises ValueError naming the bad key."""
        model = dict(model or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(model) - set(valid))
        if unknown:
            raise ValueError(f"unknown model key(s) {unknown}; valid keys: {', '.join(valid)}")
        cfg = cls(**{k: _freeze(v) for k, v in model.items()})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("encoder_hiddens", "head_hiddens"):
            sizes = getattr(self, name)
            if not all(isinstance(s, int) and s > 0 for s in sizes):
                raise ValueError(f"model.{name} must be a list of positive ints, got {sizes!r}")
        if not self.cnn_filters or not all(
            len(f) == 3 and all(isinstance(v, int) and v > 0 for v in f) for f in self.cnn_filters
        ):
            raise ValueError(
                "model.cnn_filters must be a non-empty list of [channels, kernel, stride] "
                f"positive ints, got {self.cnn_filters!r}"
            )
        if not isinstance(self.cnn_out, int) or self.cnn_out <= 0:
            raise ValueError(f"model.cnn_out must be a positive int, got {self.cnn_out!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"model.activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        if not isinstance(self.shared_core, bool):
            raise ValueError(f"model.shared_core must be a bool, got {self.shared_core!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _freeze(value: Any) -> Any:
    """Lists (from YAML/JSON) to tuples, so the config is hashable and compares by value."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value

"""The memoryless baseline "core": an MLP on the current observation's features, no state."""

from __future__ import annotations

from torch import Tensor, nn

from memrl.rllib.encoders import mlp

MEMORYLESS = "mlp"


def check_core_name(core: object, field: str = "core") -> None:
    """ValueError naming ``field`` unless ``core`` is a registered core or ``"mlp"``."""
    from memrl.models import CORES

    if core not in (*CORES, MEMORYLESS):
        raise ValueError(f"{field} must be one of {[*CORES, MEMORYLESS]}, got {core!r}")


# Keyword arguments of the memoryless core and their defaults (the config layer validates these).
MLP_DEFAULTS: dict[str, int] = {"hidden_size": 64, "num_layers": 1}


class MLPCore(nn.Module):
    """``[*lead, input_dim] -> [*lead, hidden_size]``; ``num_layers`` Linear+ReLU layers.

    Raises ValueError for non-positive sizes or unknown keyword arguments (listing the valid ones).
    """

    def __init__(self, input_dim: int, **kwargs: object) -> None:
        super().__init__()
        valid = MLP_DEFAULTS
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown argument(s) {unknown} for core 'mlp'; valid: "
                + ", ".join(f"{k}={v!r}" for k, v in valid.items())
            )
        hidden_size = kwargs.get("hidden_size", valid["hidden_size"])
        num_layers = kwargs.get("num_layers", valid["num_layers"])
        if not isinstance(hidden_size, int) or not isinstance(num_layers, int):
            raise ValueError("hidden_size and num_layers of core 'mlp' must be ints")
        if hidden_size <= 0 or num_layers < 0:
            raise ValueError(
                f"core 'mlp' needs hidden_size > 0 and num_layers >= 0, got {hidden_size}, "
                f"{num_layers}"
            )
        self.net, self.output_dim = mlp(input_dim, (hidden_size,) * num_layers, "relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

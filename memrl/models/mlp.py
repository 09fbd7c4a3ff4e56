"""The memoryless baseline "core": an MLP on the current step's features, no state.

It keeps the core contract (``x [B, T, D]``, a state, ``first``) with an empty state, so every
algorithm builds it like any other core; only the absence of state tells it apart.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from memrl.models.base import MemoryCore, State, StateSpec


class MLPCore(MemoryCore):
    """``[B, T, input_dim] -> [B, T, hidden_size]``: ``num_layers`` Linear+ReLU layers per step.

    ``num_layers=0`` is the identity (``output_dim == input_dim``).
    Raises ValueError for non-integer or out-of-range sizes.
    """

    name: ClassVar[str] = "mlp"

    def __init__(self, input_dim: int, *, hidden_size: int = 64, num_layers: int = 1) -> None:
        super().__init__(input_dim)
        if not isinstance(hidden_size, int) or not isinstance(num_layers, int):
            raise ValueError("hidden_size and num_layers of core 'mlp' must be ints")
        if hidden_size <= 0 or num_layers < 0:
            raise ValueError(
                f"core 'mlp' needs hidden_size > 0 and num_layers >= 0, got {hidden_size}, "
                f"{num_layers}"
            )
        layers: list[nn.Module] = []
        size = input_dim
        for _ in range(num_layers):
            layers += [nn.Linear(size, hidden_size), nn.ReLU()]
            size = hidden_size
        self.net = nn.Sequential(*layers)
        self.output_dim = size

    def state_spec(self) -> dict[str, StateSpec]:
        return {}

    def _forward(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State]:
        return self.net(x), {}

"""The memory-core interface every algorithm in memrl trains against.

A core maps a sequence of features to a sequence of outputs while carrying a recurrent state:

    y, state = core(x, state, first)     # x [B, T, D_in]; first [B, T] bool; y [B, T, output_dim]

``first[b, t]`` marks the first step of an episode: the state is reset *before* that step is
processed, wherever it falls in the sequence. Running T steps in one call must equal T calls of
one step (the central test of every core).

State comes in two kinds (``StateSpec.kind``):

* ``"carry"``: a fixed-size tensor; its value at a step is the whole state (GRU hidden, linear
  attention matrices, block-recurrent state vectors).
* ``"window"``: an attention memory ``[layers, M, d]`` holding the per-layer inputs of the last
  ``M`` steps. Each step contributes one slice ``[layers, d]`` (returned by ``step_slices``), so a
  replay stores slices and gathers the window at sample time. A window field ``k`` travels with a
  validity mask ``state[k + "_mask"]`` of shape ``[B, M]`` (True = a step of the current episode);
  slots are ordered oldest first and invalid slots hold zeros, so a window rebuilt from slices is
  bit-for-bit the state the actor had.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

State = dict[str, Tensor]
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class StateSpec:
    """Shape (without batch) and dtype of one state field.

    kind: "carry" (value per step is the full state) or "window" (shape ``(layers, M, d)``; one
    ``(layers, d)`` slice per step; comes with a ``[B, M]`` bool mask under ``<name>_mask``).
    """

    kind: Literal["carry", "window"]
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def slice_shape(self) -> tuple[int, ...]:
        """Shape of what one step stores: the full value for a carry, one slice for a window."""
        if self.kind == "window":
            layers, _memory, dim = self.shape
            return (layers, dim)
        return self.shape

    @property
    def memory_len(self) -> int:
        if self.kind != "window":
            raise ValueError(f"memory_len is only defined for window state, not {self.kind!r}")
        return self.shape[1]


class MemoryCore(nn.Module):
    """Base class: input checks, state bookkeeping, and the registry contract.

    Subclasses set ``name``, build their layers in ``__init__`` (keyword-only hyperparameters with
    the paper's defaults), set ``self.output_dim``, and implement ``state_spec`` and ``_forward``.
    Window cores also implement ``step_slices``.
    """

    name: ClassVar[str] = ""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        if not isinstance(input_dim, int) or input_dim <= 0:
            raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
        self.input_dim = input_dim
        self.output_dim: int = input_dim

    # --- contract -----------------------------------------------------------------------------
    def state_spec(self) -> dict[str, StateSpec]:
        raise NotImplementedError

    def _forward(self, x: Tensor, state: State, first: Tensor) -> tuple[Tensor, State]:
        raise NotImplementedError

    def step_slices(self, x: Tensor, state: State, first: Tensor) -> dict[str, Tensor]:
        """Per-step slices of every window field for a call with the same arguments as forward.

        Returns ``{field: [B, T, layers, d]}``: what replay stores per step. Carry-only cores
        return ``{}``. The default runs forward and asks the core for the slices it cached.
        """
        if not any(s.kind == "window" for s in self.state_spec().values()):
            return {}
        raise NotImplementedError(f"{type(self).__name__} must implement step_slices")

    # --- shared behaviour ---------------------------------------------------------------------
    @property
    def state_dtype(self) -> torch.dtype:
        """Float dtype of the state: that of the parameters (so ``core.double()`` carries f64)."""
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero state for ``batch_size`` episodes; window fields start with an all-False mask."""
        state: State = {}
        for key, spec in self.state_spec().items():
            state[key] = torch.zeros((batch_size, *spec.shape), dtype=spec.dtype, device=device)
            if spec.kind == "window":
                state[key + MASK_SUFFIX] = torch.zeros(
                    (batch_size, spec.memory_len), dtype=torch.bool, device=device
                )
        return state

    def forward(self, x: Tensor, state: State | None, first: Tensor | None = None):
        """Process ``x`` [B, T, input_dim] from ``state``; returns (y [B, T, output_dim], state).

        ``state=None`` starts from ``initial_state``; ``first=None`` means no episode starts.
        Raises ValueError on a wrong rank, feature size, ``first`` shape or state layout.
        """
        state, first = self._checked_inputs(x, state, first)
        return self._forward(x, state, first)

    def _checked_inputs(
        self, x: Tensor, state: State | None, first: Tensor | None
    ) -> tuple[State, Tensor]:
        """Validate forward's arguments; fill in the defaults; ``first`` as bool on x's device."""
        self._check_x(x)
        batch, steps = x.shape[:2]
        if first is None:
            first = torch.zeros(batch, steps, dtype=torch.bool, device=x.device)
        self._check_first(first, batch, steps)
        if state is None:
            state = self.initial_state(batch, device=x.device)
        self._check_state(state, batch)
        return state, first.to(device=x.device, dtype=torch.bool)

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a float tensor [B, T, input_dim], got shape {got}")
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"x has {x.shape[-1]} features but {self.name} was built with "
                f"input_dim={self.input_dim}"
            )
        if not torch.is_floating_point(x):
            raise ValueError(f"x must be floating point, got dtype {x.dtype}")

    @staticmethod
    def _check_first(first: Tensor, batch: int, steps: int) -> None:
        if not isinstance(first, Tensor) or tuple(first.shape) != (batch, steps):
            got = tuple(first.shape) if isinstance(first, Tensor) else type(first).__name__
            raise ValueError(
                f"first must be a bool tensor of shape [B, T]=({batch}, {steps}), got {got}"
            )

    def _check_state(self, state: State, batch: int) -> None:
        expected: dict[str, tuple[int, ...]] = {}
        for key, spec in self.state_spec().items():
            expected[key] = (batch, *spec.shape)
            if spec.kind == "window":
                expected[key + MASK_SUFFIX] = (batch, spec.memory_len)
        if set(state) != set(expected):
            raise ValueError(
                f"state for {self.name} must have keys {sorted(expected)}, got {sorted(state)}"
            )
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(
                    f"state[{key!r}] must have shape {shape}, got {tuple(state[key].shape)}"
                )

    @classmethod
    def hyperparameters(cls) -> dict[str, object]:
        """Keyword arguments the constructor accepts (besides input_dim), with their defaults."""
        params = inspect.signature(cls.__init__).parameters
        return {
            n: p.default
            for n, p in params.items()
            if n not in ("self", "input_dim") and p.kind == p.KEYWORD_ONLY
        }


def reset_state(state: State, first_t: Tensor, initial: State) -> State:
    """Where ``first_t`` [B] is True, replace each field's row by ``initial``'s row."""
    out: State = {}
    for key, value in state.items():
        keep = ~first_t.view(-1, *([1] * (value.dim() - 1)))
        init = initial[key].to(value.device)
        out[key] = torch.where(keep, value, init)
    return out

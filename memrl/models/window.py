"""Attention-memory windows rebuilt from per-step slices.

A window core's memory before step ``t`` holds the per-layer inputs of steps ``t-M .. t-1``
(oldest first), keeping only steps of the episode that step ``t-1`` belongs to; the other slots
are zero and masked. The replay shard, the RLlib learner connector and the reference
:func:`window_before` all rebuild windows with :func:`window_positions` and
:func:`gather_window`, so the rule lives here, beside the cores that define it; each caller only
says which positions are valid (same episode, still stored).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

Array = TypeVar("Array", np.ndarray, Tensor)


def window_positions(before: Array, memory_len: int) -> Array:
    """Positions of the window before each position in ``before`` ([C] ints), oldest first:
    ``[C, M]`` with row ``c`` = ``before[c] - M .. before[c] - 1`` (may be negative)."""
    if isinstance(before, Tensor):
        offsets = torch.arange(memory_len, device=before.device, dtype=before.dtype)
    else:
        offsets = np.arange(memory_len, dtype=before.dtype)
    return before[:, None] - memory_len + offsets[None]


def gather_window(slices: Array, positions: Array, valid: Array) -> Array:
    """Windows ``[C, layers, M, d]`` of ``slices`` ``[N, layers, d]`` at ``positions`` ``[C, M]``.

    Slots where ``valid`` ``[C, M]`` is False are zero (whatever their position, which may lie
    outside ``0..N-1``). Gathers straight into the window layout (no transpose copy); numpy
    arrays or torch tensors alike.
    """
    layers = slices.shape[1]
    if isinstance(slices, Tensor):
        index = positions.clamp(0, max(slices.shape[0] - 1, 0))
        layer = torch.arange(layers, device=slices.device)[None, :, None]
        window = slices[index[:, None, :], layer]
        return torch.where(valid[:, None, :, None], window, window.new_zeros(()))
    index = np.clip(positions, 0, max(slices.shape[0] - 1, 0))
    window = slices[index[:, None, :], np.arange(layers)[None, :, None]]
    window *= valid[:, None, :, None]  # a fresh array: zero the invalid slots in place
    return window


def episode_index(first: Tensor) -> Tensor:
    """Running episode counter along the last axis: increments at each ``first`` step."""
    return torch.cumsum(first.to(torch.long), dim=-1)


def window_before(slices: Tensor, first: Tensor, t: int, memory_len: int) -> tuple[Tensor, Tensor]:
    """The window state a core had before processing step ``t`` of a recorded sequence.

    slices: [B, T, layers, d], what the core produced per step (``step_slices``).
    first:  [B, T] bool; ``first[:, 0]`` should be True (nothing is known before the recording).
    Returns (memory [B, layers, M, d], mask [B, M]).
    """
    batch, steps, layers, dim = slices.shape
    if not 0 <= t <= steps:
        raise ValueError(f"t must be in [0, {steps}], got {t}")
    if t == 0:
        memory = slices.new_zeros(batch, layers, memory_len, dim)
        return memory, torch.zeros(batch, memory_len, dtype=torch.bool, device=slices.device)
    steps_before = window_positions(torch.tensor([t], device=slices.device), memory_len)[0]
    episode = episode_index(first)
    inside = steps_before >= 0  # [M]
    same = episode[:, steps_before.clamp(min=0)] == episode[:, t - 1 : t]  # [B, M]
    mask = same & inside[None]
    rows = torch.arange(batch, device=slices.device)[:, None] * steps + steps_before[None]
    memory = gather_window(slices.reshape(batch * steps, layers, dim), rows, mask)
    return memory, mask

"""Attention-memory windows rebuilt from per-step slices.

A window core's memory before step ``t`` holds the per-layer inputs of steps ``t-M .. t-1``
(oldest first), keeping only steps of the episode that step ``t-1`` belongs to; the other slots
are zero and masked. Replay and the RLlib learner connector both rebuild windows this way, so
the rule lives here, beside the cores that define it.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    memory = slices.new_zeros(batch, layers, memory_len, dim)
    mask = torch.zeros(batch, memory_len, dtype=torch.bool, device=slices.device)
    if t == 0:
        return memory, mask
    episode = episode_index(first)
    for slot in range(memory_len):
        s = t - memory_len + slot
        if s < 0:
            continue
        same = episode[:, s] == episode[:, t - 1]
        mask[:, slot] = same
        memory[:, :, slot] = torch.where(same.view(-1, 1, 1), slices[:, s], 0.0)
    return memory, mask

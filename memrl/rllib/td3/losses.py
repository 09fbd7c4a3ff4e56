"""The pieces of the TD3 update (Fujimoto et al. 2018) as small functions on tensors.

Steps ``t`` of a replayed sequence (``[B, L]``): ``mask`` marks the steps of the sequence's
episode (False on padding after it ends); ``terminated[t]``/``truncated[t]`` say the episode
ended after the action of step ``t``. The successor of step ``t`` is step ``t + 1`` when it is
in the same episode (``mask[t + 1]``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def gaussian_exploration(
    action: Tensor,
    low: Tensor,
    high: Tensor,
    noise: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``clip(action + N(0, (noise * (high - low) / 2)^2), low, high)``; action ``[..., A]``."""
    std = noise * (high - low) / 2
    eps = torch.randn(action.shape, generator=generator, device=action.device) * std
    return torch.maximum(torch.minimum(action + eps, high), low)


def smoothed_target_action(
    action: Tensor,
    low: Tensor,
    high: Tensor,
    noise: float,
    noise_clip: float,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Target policy smoothing: ``clip(a' + clip(eps, -c, c) * (high - low) / 2, low, high)``.

    ``eps ~ N(0, noise^2)`` (drawn unless given, same shape as ``action`` ``[..., A]``); the
    noise and its clip ``c = noise_clip`` are in units of the half action range, as in
    Fujimoto et al.'s code (noise scaled by ``max_action``).
    """
    if eps is None:
        eps = torch.randn(action.shape, generator=generator, device=action.device) * noise
    half_range = (high - low) / 2
    smoothed = action + eps.clamp(-noise_clip, noise_clip) * half_range
    return torch.maximum(torch.minimum(smoothed, high), low)


def next_step(values: Tensor) -> Tensor:
    """``values[:, t + 1]`` at ``t`` (``[B, L, ...]``), zero at the last step."""
    return torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)


def td_step_mask(mask: Tensor, terminated: Tensor) -> Tensor:
    """``[B, L]`` bool: steps with a TD target.

    A step needs to be real (``mask``) and either terminated (the target is the reward) or
    followed by a stored step of the same episode (bootstrapped from it). A truncated step is
    bootstrapped like any other when its final observation is stored as the next step; when it
    is not (or the sequence ends at ``t``), the step has no target and is left out, never
    bootstrapped from a wrong observation.
    """
    mask = mask.to(torch.bool)
    return mask & (terminated.to(torch.bool) | next_step(mask))


def bootstrap_targets(
    reward: Tensor, terminated: Tensor, next_q1: Tensor, next_q2: Tensor, gamma: float
) -> Tensor:
    """Clipped double-Q target ``r + gamma * (1 - terminated) * min(Q1', Q2')``; all ``[B, T]``.

    Only ``terminated`` cuts the bootstrap: a time-limit truncation is not a terminal state.
    """
    keep = (~terminated.to(torch.bool)).to(reward.dtype)
    return reward + gamma * keep * torch.minimum(next_q1, next_q2)


def masked_mean(values: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """``sum(w_b * mask * values) / sum(mask)`` over ``[B, T]`` (0 when nothing is masked in)."""
    mask = mask.to(values.dtype)
    count = mask.sum().clamp(min=1.0)
    if weights is not None:
        mask = mask * weights.to(values.dtype)[:, None]
    return (values * mask).sum() / count


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * online`` for parameters; buffers are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o, tau)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)

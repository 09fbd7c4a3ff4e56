"""R2D2's learning targets (Kapturowski et al. 2019): value rescaling, n-step double-Q targets,
Ape-X per-actor epsilons. Pure PyTorch/numpy, no RLlib."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def value_rescale(x: Tensor, eps: float = 1e-3) -> Tensor:
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + eps * x


def inverse_value_rescale(x: Tensor, eps: float = 1e-3) -> Tensor:
    """h^-1(x) = sign(x) (((sqrt(1 + 4 eps (|x| + 1 + eps)) - 1) / (2 eps))^2 - 1)."""
    inner = (torch.sqrt(1.0 + 4.0 * eps * (x.abs() + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(x) * (inner.square() - 1.0)


def n_step_targets(
    reward: Tensor,
    terminated: Tensor,
    mask: Tensor,
    bootstrap: Tensor,
    *,
    gamma: float,
    n: int,
    rescale: bool = True,
    rescale_eps: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """n-step targets ``[B, T]`` for the training steps of one-episode sequences, and their mask.

    reward ``[B, T]`` (reward after each step's action), terminated ``[B, T]`` bool (the
    episode terminated after this step), mask ``[B, T]`` bool (a prefix per row: the steps of
    the sequence's episode; after it, padding), bootstrap ``[B, T]``: the (rescaled, if
    ``rescale``) target-network value of each step's state, ``Q'(s_k, argmax_a Q(s_k, a))`` for
    double Q. With ``e`` the row's last valid step:

    * ``t + n <= e``, or ``t + n > e`` without termination at ``e``: bootstrap from step
      ``b = min(t + n, e)``: ``y_t = sum_{k=t}^{b-1} gamma^(k-t) r_k + gamma^(b-t) Q(s_b)``
      (shorter horizons where the sequence, a truncation or a cut ends the data);
    * terminated at ``e`` and ``t + n > e``: ``y_t = sum_{k=t}^{e} gamma^(k-t) r_k``;
    * ``t == e`` without termination (nothing after it to bootstrap from) and padding steps:
      no target (mask False).

    With ``rescale``, ``y = h(sum + gamma^m h^-1(bootstrap))``. Returns (target, valid).
    """
    batch, steps = reward.shape
    mask = mask.bool()
    last = mask.long().sum(dim=1) - 1  # [B] index of the last valid step (-1: none)
    t = torch.arange(steps, device=reward.device)[None].expand(batch, steps)
    end = last[:, None]
    ends_terminal = terminated.bool().gather(1, end.clamp(min=0)) & (end >= 0)
    terminal_reach = ends_terminal & (t + n > end)
    horizon = torch.where(terminal_reach, end - t + 1, torch.minimum(t + n, end) - t)
    valid = mask & (horizon > 0)
    horizon = horizon.clamp(min=0)
    returns = torch.zeros_like(reward)
    for k in range(n):
        index = (t + k).clamp(max=steps - 1)
        use = (k < horizon).to(reward.dtype)
        returns = returns + (gamma**k) * use * reward.gather(1, index)
    boot_index = (t + horizon).clamp(max=steps - 1)
    boot = bootstrap.gather(1, boot_index)
    if rescale:
        boot = inverse_value_rescale(boot, rescale_eps)
    discount = torch.where(
        terminal_reach, torch.zeros_like(reward), gamma ** horizon.to(reward.dtype)
    )
    target = returns + discount * boot
    if rescale:
        target = value_rescale(target, rescale_eps)
    return torch.where(valid, target, torch.zeros_like(target)), valid


def ape_x_epsilons(num_actors: int, epsilon: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """Ape-X exploration rates ``eps_i = epsilon ** (1 + i / (N - 1) * alpha)``, ``[N]`` float64.

    One actor gets ``epsilon``. Raises ValueError for ``num_actors < 1`` or epsilon outside [0, 1].
    """
    if not isinstance(num_actors, int | np.integer) or num_actors < 1:
        raise ValueError(f"num_actors must be a positive int, got {num_actors!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if num_actors == 1:
        return np.array([epsilon], dtype=np.float64)
    i = np.arange(num_actors, dtype=np.float64)
    return epsilon ** (1.0 + i / (num_actors - 1) * alpha)

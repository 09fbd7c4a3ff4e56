"""Q-Transformer's targets and loss (pure PyTorch), in value space.

With ``Q'`` the target network, teacher-forced with the dataset's bins ``b_t``:

    y^i_t = max_b Q'^{i+1}(h_t, b_t^{<=i}, b)                 i < d  (same step: no r, no gamma)
    y^d_t = sum_{k<m} gamma^k r_{t+k} + gamma^m (1 - term) max_b Q'^1(h_{t+m}, b)   (n-step)
    y     <- max(y, G_t)                                      (episodes that terminated)

The last dimension's n-step return, its truncation and padding handling are
:func:`memrl.rllib.r2d2.targets.n_step_targets` (without value rescaling).

    loss = 1/2 mean_{valid t,i} ((Q^i(b^i_t) - y^i_t) / s)^2
         + 1/2 alpha mean_{valid t,i} mean_{b != b^i_t} ((Q^i(b) - r_min) / s)^2

with ``s`` the value scale (``value_scale``, default 1: the paper's loss), so the gradients
stay unit-sized whatever the returns' scale.

Both means run over the valid (step, dimension) pairs (and the ``B - 1`` unseen bins), so
neither term changes with batch size, sequence length or ``d``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from memrl.rllib.r2d2.targets import n_step_targets


def autoregressive_targets(
    q_target: Tensor,
    reward: Tensor,
    terminated: Tensor,
    mask: Tensor,
    *,
    gamma: float,
    n: int = 1,
    mc_return: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Targets ``y`` ``[B, T, d]`` and their validity ``[B, T, d]`` bool.

    q_target ``[B, T, d, NB]``: the target network's ``Q'^i(h_t, b_t^{<i}, .)``; reward ``[B, T]``;
    terminated ``[B, T]`` bool (the episode terminated after this step); mask ``[B, T]`` bool, a
    prefix per row holding one episode's steps (padding after); mc_return ``[B, T]`` or None:
    the lower bound per step, ``-inf`` where there is none. Invalid entries are 0.
    Dimensions ``< d`` are valid on every masked step; the last one where ``n_step_targets``
    gives a target (not the final step of a row that did not terminate).
    """
    if q_target.dim() != 4:
        raise ValueError(f"q_target must be [B, T, d, NB], got {tuple(q_target.shape)}")
    best = q_target.amax(dim=-1)  # [B, T, d]
    last, last_valid = n_step_targets(
        reward, terminated, mask, best[..., 0], gamma=gamma, n=n, rescale=False
    )
    y = torch.cat([best[..., 1:], last[..., None]], dim=-1)
    inner_valid = mask.bool()[..., None].expand(*mask.shape, q_target.shape[2] - 1)
    valid = torch.cat([inner_valid, last_valid[..., None]], dim=-1)
    if mc_return is not None:
        y = torch.maximum(y, mc_return.to(y.dtype)[..., None])
    return torch.where(valid, y, torch.zeros_like(y)), valid


def qtransformer_loss(
    q: Tensor,
    bins: Tensor,
    y: Tensor,
    valid: Tensor,
    *,
    alpha: float,
    r_min: float,
    scale: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss (module doc, ``scale`` its ``s``) and its parts (``td_abs`` in value units).

    q ``[B, T, d, NB]`` online Q-values; bins ``[B, T, d]`` long, the dataset's; y, valid
    ``[B, T, d]``. Returns (loss, {"td_loss", "conservative_loss", "q_taken", "td_abs"}).
    """
    num_bins = q.shape[-1]
    taken = q.gather(-1, bins[..., None]).squeeze(-1)  # [B, T, d]
    weight = valid.to(q.dtype)
    count = weight.sum().clamp(min=1.0)
    td = taken - y.detach()
    td_loss = 0.5 * ((td / scale).square() * weight).sum() / count
    unseen = torch.ones_like(q).scatter(-1, bins[..., None], 0.0)
    gap = (((q - r_min) / scale).square() * unseen).sum(dim=-1) / max(num_bins - 1, 1)
    conservative = 0.5 * alpha * (gap * weight).sum() / count
    info = {
        "td_loss": td_loss.detach(),
        "conservative_loss": conservative.detach(),
        "q_taken": ((taken * weight).sum() / count).detach(),
        "td_abs": (td.abs() * weight).detach(),
    }
    return td_loss + conservative, info

"""Policy heads chosen from the action space, with the RLlib distribution each one feeds.

* Discrete(n)           -> n logits, ``TorchCategorical``;
* MultiDiscrete(nvec)   -> sum(nvec) logits, ``TorchMultiCategorical`` (one categorical per dim);
* Box of rank 1 (float) -> Gaussian: mean from a linear layer and a learned, state-independent
  log std, ``TorchDiagGaussian`` over ``[mean, log_std]``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchCategorical,
    TorchDiagGaussian,
    TorchMultiCategorical,
)
from torch import Tensor, nn


class PolicyHead(nn.Module):
    """Features ``[*lead, in_dim]`` -> action-distribution inputs ``[*lead, dist_inputs]``."""

    def __init__(self, in_dim: int, action_space: gym.Space, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.action_space = action_space
        self.log_std: nn.Parameter | None = None
        if isinstance(action_space, gym.spaces.Discrete):
            out = int(action_space.n)
            self.dist_cls = TorchCategorical
        elif isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
            nvec = [int(n) for n in action_space.nvec]
            out = sum(nvec)
            self.dist_cls = TorchMultiCategorical.get_partial_dist_cls(input_lens=nvec)
        elif (
            isinstance(action_space, gym.spaces.Box)
            and len(action_space.shape) == 1
            and np.issubdtype(action_space.dtype, np.floating)
        ):
            out = int(action_space.shape[0])
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))
            self.dist_cls = TorchDiagGaussian
        else:
            raise ValueError(
                f"unsupported action space {action_space}; supported: Discrete, MultiDiscrete "
                "(1-D), Box of rank 1 with a float dtype"
            )
        self.linear = nn.Linear(in_dim, out)
        # Small initial logits/means: a near-uniform (or near-zero-mean) first policy.
        nn.init.orthogonal_(self.linear.weight, gain=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        out = self.linear(features)
        if self.log_std is None:
            return out
        return torch.cat([out, self.log_std.expand_as(out)], dim=-1)

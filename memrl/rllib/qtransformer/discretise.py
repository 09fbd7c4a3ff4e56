"""Per-dimension action bins: a Box of ``d`` dimensions becomes ``d`` choices of ``B`` bins.

``bin = clip(floor((a - low) / (high - low) * B), 0, B - 1)``; a bin acts at its centre
``low + (bin + 1/2) (high - low) / B``, so a round trip moves an in-range action by at most
``(high - low) / (2B)``. A ``Discrete(n)`` space is one dimension of ``n`` bins (the action
minus ``start``). Bounds must be finite: an offline dataset without them cannot be discretised.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class ActionBins:
    """The discretisation of one action space.

    Attributes: ``num_dims`` (d), ``num_bins`` (B), ``discrete`` (a Discrete space),
    ``low``/``high`` float64 ``[d]`` (a Discrete space: ``start`` and ``start + n - 1``).
    """

    def __init__(self, space: gym.Space, bins: int) -> None:
        """``space``: a rank-1 Box with finite bounds (``high > low``) or a Discrete; ``bins`` is
        B for a Box (ignored for a Discrete, whose B is ``n``). Raises ValueError otherwise."""
        self.space = space
        if isinstance(space, gym.spaces.Discrete):
            self.discrete = True
            self.num_dims, self.num_bins = 1, int(space.n)
            self.start = int(space.start)
            self.low = np.array([self.start], dtype=np.float64)
            self.high = np.array([self.start + self.num_bins - 1], dtype=np.float64)
            return
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ValueError(f"action space must be a rank-1 Box or a Discrete, got {space}")
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"action bounds must be finite, got low={low}, high={high}")
        if np.any(high <= low):
            raise ValueError(f"action bounds need high > low in every dim, got {low}, {high}")
        if not isinstance(bins, int | np.integer) or bins < 2:
            raise ValueError(f"bins must be an int >= 2, got {bins!r}")
        self.discrete = False
        self.num_dims, self.num_bins = int(space.shape[0]), int(bins)
        self.low, self.high = low, high

    def to_bins(self, action: Any) -> np.ndarray:
        """Actions ``[..., d]`` (a Discrete: ``[...]``) -> int64 bins ``[..., d]``; out-of-range
        actions go to the edge bins."""
        action = np.asarray(action)
        if self.discrete:
            return np.clip(action.astype(np.int64) - self.start, 0, self.num_bins - 1)[..., None]
        if action.shape[-1:] != (self.num_dims,):
            raise ValueError(f"actions must be [..., {self.num_dims}], got {action.shape}")
        unit = (action.astype(np.float64) - self.low) / (self.high - self.low)
        return np.clip(np.floor(unit * self.num_bins), 0, self.num_bins - 1).astype(np.int64)

    def to_action(self, bins: Any) -> np.ndarray:
        """Bins ``[..., d]`` -> actions at the bin centres, in the space's dtype (a Discrete:
        int64 ``[...]``). Raises ValueError for bins outside ``[0, B)``."""
        bins = np.asarray(bins)
        if bins.shape[-1:] != (self.num_dims,):
            raise ValueError(f"bins must be [..., {self.num_dims}], got {bins.shape}")
        if bins.size and (bins.min() < 0 or bins.max() >= self.num_bins):
            raise ValueError(
                f"bins must be in [0, {self.num_bins}), got {bins.min()}..{bins.max()}"
            )
        if self.discrete:
            return bins[..., 0].astype(np.int64) + self.start
        width = (self.high - self.low) / self.num_bins
        return (self.low + (bins + 0.5) * width).astype(self.space.dtype)

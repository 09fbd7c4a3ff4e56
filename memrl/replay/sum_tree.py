"""A sum-tree (with a min-tree beside it) over item priorities, updated and sampled in batches.

Leaves hold non-negative values (``priority ** alpha``); a zero leaf is never sampled. Both
batch update and batch sample walk the tree one level at a time with numpy, so their cost is
``O(batch * log(size))`` numpy work and ``O(log(size))`` Python steps.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sums (and minima over non-zero leaves) of ``size`` non-negative leaf values.

    Parents are recomputed from their children on every update (never incremented), so sums do
    not drift and a positive parent always has a positive child.
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"SumTree size must be a positive int, got {size!r}")
        self.size = size
        self._first_leaf = 1 << max(0, (size - 1).bit_length())
        self.depth = self._first_leaf.bit_length() - 1
        self._sum = np.zeros(2 * self._first_leaf, dtype=np.float64)
        self._min = np.full(2 * self._first_leaf, np.inf, dtype=np.float64)
        self.count = 0  # leaves > 0

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._sum[1])

    @property
    def min_positive(self) -> float:
        """Smallest non-zero leaf (``inf`` when all are zero)."""
        return float(self._min[1])

    @property
    def leaves(self) -> np.ndarray:
        """Read-only view of the ``size`` leaf values."""
        view = self._sum[self._first_leaf : self._first_leaf + self.size]
        view.flags.writeable = False
        return view

    def get(self, index: np.ndarray) -> np.ndarray:
        """Leaf values at ``index`` (int array)."""
        return self._sum[self._first_leaf + np.asarray(index, dtype=np.int64)]

    def update(self, index: np.ndarray, value: np.ndarray) -> None:
        """Set leaves ``index`` to ``value`` (broadcast); for repeated indices the last wins.

        Raises ValueError on an index out of range or a negative / non-finite value.
        """
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), index.shape)
        if index.size == 0:
            return
        if index.min() < 0 or index.max() >= self.size:
            raise ValueError(f"SumTree index out of range [0, {self.size})")
        if not np.all(np.isfinite(value)) or np.any(value < 0):
            raise ValueError("SumTree values must be finite and >= 0")
        # Keep the last write of each index, as a sequential loop would.
        rev_unique, rev_pos = np.unique(index[::-1], return_index=True)
        value = value[::-1][rev_pos]
        nodes = rev_unique + self._first_leaf
        self.count += int(np.count_nonzero(value > 0) - np.count_nonzero(self._sum[nodes] > 0))
        self._sum[nodes] = value
        self._min[nodes] = np.where(value > 0, value, np.inf)
        while nodes[0] > 1:
            nodes = nodes >> 1  # still sorted: drop repeats without another sort
            nodes = nodes[np.concatenate(([True], nodes[1:] != nodes[:-1]))]
            left = nodes << 1
            self._sum[nodes] = self._sum[left] + self._sum[left + 1]
            self._min[nodes] = np.minimum(self._min[left], self._min[left + 1])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` leaf indices drawn proportionally to leaf value (stratified: one per 1/n slice).

        Raises ValueError when every leaf is zero.
        """
        total = self.total
        if total <= 0.0:
            raise ValueError("cannot sample from a SumTree whose leaves are all zero")
        target = (np.arange(n) + rng.random(n)) * (total / n)
        node = np.ones(n, dtype=np.int64)
        for _ in range(self.depth):
            left = node << 1
            left_sum = self._sum[left]
            # Go right only into a non-empty subtree, so rounding never lands on a zero leaf.
            right = (target >= left_sum) & (self._sum[left + 1] > 0)
            target = np.where(right, target - left_sum, target)
            node = np.where(right, left + 1, left)
        return node - self._first_leaf

    def clear(self) -> None:
        """Set every leaf to zero."""
        self._sum[:] = 0.0
        self._min[:] = np.inf
        self.count = 0

"""A stats class for RLlib's metrics logger: the mean of one iteration, not an EMA of all.

RLlib 2.60 reduces its timers (``log_time``'s default ``reduce="ema"``) with an EMA of
coefficient 0.01 that starts at the first value, so an iteration-level timer reports mostly the
first (slowest) iteration for hundreds of iterations. Registered under ``"ema"`` through
``config.reporting(custom_stats_cls_lookup=...)``, :class:`IterationMeanStats` reports at each
reduce the plain mean of the values pushed since the previous one (on an env runner: since the
last sample call), which is what a per-iteration time breakdown needs.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.utils.metrics.metrics_logger import DEFAULT_STATS_CLS_LOOKUP
from ray.rllib.utils.metrics.stats.ema import EmaStats
from ray.rllib.utils.metrics.stats.utils import safe_isnan


class IterationMeanStats(EmaStats):
    """``EmaStats`` whose leaf value is the mean of the values pushed since the last reduce
    (the previous value stays until the next push). Aggregation (root) is EmaStats' own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cycle_sum: Any = 0.0
        self._cycle_n = 0

    def push(self, value: Any) -> None:
        if safe_isnan(value):
            return
        if isinstance(value, torch.Tensor):
            value = value.detach()
        self._cycle_sum = value if self._cycle_n == 0 else self._cycle_sum + value
        self._cycle_n += 1
        self._value = self._cycle_sum / self._cycle_n

    def reduce(self, compile: bool = True) -> Any:
        out = super().reduce(compile)
        if self.is_leaf:
            self._cycle_n = 0  # the next push starts the next iteration's mean
        return out


def iteration_mean_lookup() -> dict:
    """RLlib's default stats classes with ``"ema"`` replaced by :class:`IterationMeanStats`."""
    return {**DEFAULT_STATS_CLS_LOOKUP, "ema": IterationMeanStats}

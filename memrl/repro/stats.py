"""Statistics over seeds: t intervals of a mean, learning curves on a common step grid."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of ``values`` (scipy).

    One value, or all values equal: a zero-width interval. Raises ValueError when empty.
    """
    if len(values) == 0:
        raise ValueError("need at least one value")
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2 or float(data.std()) == 0.0:
        return mean, mean, mean
    from scipy import stats

    low, high = stats.t.interval(confidence, len(data) - 1, loc=mean, scale=stats.sem(data))
    return mean, float(low), float(high)


def first_crossing(curve: Sequence[tuple[int, float | None]], threshold: float) -> int | None:
    """Env steps of the first point whose return is >= ``threshold`` (None: never)."""
    for steps, value in curve:
        if value is not None and not math.isnan(value) and value >= threshold:
            return int(steps)
    return None


def curves_on_grid(
    curves: Sequence[Sequence[tuple[int, float | None]]], points: int = 60
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves interpolated on one env-step grid: (steps, mean, low, high).

    The grid spans 0 .. the shortest seed's last step (so every seed covers it); before a
    seed's first reported return its value is NaN and that seed is left out of the point.
    A point with one seed has a zero-width band; with none, NaN.
    """
    cleaned = []
    for curve in curves:
        pts = [(s, v) for s, v in curve if v is not None and not math.isnan(v)]
        if pts:
            cleaned.append((np.array([p[0] for p in pts], float), np.array([p[1] for p in pts])))
    if not cleaned:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    end = min(x[-1] for x, _ in cleaned)
    grid = np.linspace(0.0, end, points)
    rows = np.stack([np.interp(grid, x, y, left=np.nan) for x, y in cleaned])
    mean, low, high = (np.full(points, np.nan) for _ in range(3))
    for i in range(points):
        column = rows[:, i][~np.isnan(rows[:, i])]
        if len(column):
            mean[i], low[i], high[i] = t_interval(column)
    return grid, mean, low, high

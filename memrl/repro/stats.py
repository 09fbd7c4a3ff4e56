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
    curves: Sequence[Sequence[tuple[int, float | None]]],
    points: int = 60,
    held: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves interpolated on one env-step grid: (steps, mean, low, high).

    ``held[i]``: seed i stopped early because it reached its return target
    (``stop.episode_return_mean``), so its last value stands for the rest of the run and is
    carried forward. The grid spans 0 .. the shortest last step of the seeds that were not
    held (so every seed covers it), or the longest held one when all were. Before a seed's
    first reported return its value is NaN and that seed is left out of the point. A point
    with one seed has a zero-width band; with none, NaN.
    """
    held = list(held) if held is not None else [False] * len(curves)
    if len(held) != len(curves):
        raise ValueError(f"held has {len(held)} entries for {len(curves)} curves")
    cleaned, cleaned_held = [], []
    for curve, hold in zip(curves, held, strict=True):
        pts = [(s, v) for s, v in curve if v is not None and not math.isnan(v)]
        if pts:
            cleaned.append((np.array([p[0] for p in pts], float), np.array([p[1] for p in pts])))
            cleaned_held.append(hold)
    if not cleaned:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    ran_out = [x[-1] for (x, _), hold in zip(cleaned, cleaned_held, strict=True) if not hold]
    end = min(ran_out) if ran_out else max(x[-1] for x, _ in cleaned)
    # np.interp holds the last value beyond a curve's end (only held seeds reach past theirs).
    grid = np.linspace(0.0, end, points)
    rows = np.stack([np.interp(grid, x, y, left=np.nan) for x, y in cleaned])
    mean, low, high = (np.full(points, np.nan) for _ in range(3))
    for i in range(points):
        column = rows[:, i][~np.isnan(rows[:, i])]
        if len(column):
            mean[i], low[i], high[i] = t_interval(column)
    return grid, mean, low, high

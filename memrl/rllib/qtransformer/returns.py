"""Monte-Carlo returns-to-go, the lower bound of Q-Transformer's targets."""

from __future__ import annotations

import numpy as np


def returns_to_go(reward: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = sum_{k>=t} gamma^(k-t) r_k`` for one episode's rewards ``[T]`` (float64, ``[T]``),
    by a backward scan ``G_t = r_t + gamma G_{t+1}``."""
    reward = np.asarray(reward, dtype=np.float64)
    out = np.empty_like(reward)
    running = 0.0
    for t in range(len(reward) - 1, -1, -1):
        running = reward[t] + gamma * running
        out[t] = running
    return out


def mc_lower_bound(reward: np.ndarray, terminated: bool, gamma: float) -> np.ndarray:
    """The per-step lower bound of one episode (float32 ``[T]``): its return-to-go if it ended
    by termination; ``-inf`` (no bound) if it was truncated or is unfinished, since its
    return-to-go then misses the rewards after the cut."""
    if not terminated:
        return np.full(len(reward), -np.inf, dtype=np.float32)
    return returns_to_go(reward, gamma).astype(np.float32)

"""What writers send (``Chunk``), what samplers return (``SequenceBatch``), and the R2D2
sequence priority."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

STEP_FIELDS = ("obs", "action", "reward", "terminated", "truncated", "first")
"""Per-step fields every chunk carries, besides the state fields."""


@dataclass
class Chunk:
    """Consecutive steps ``start_step .. start_step + n - 1`` of one env's step stream.

    stream: id of the stream (one env of one writer incarnation; unique per shard).
    data: ``obs [n, *obs_shape]``, ``action [n, *action_shape]``, ``reward [n]`` float32,
        ``terminated``/``truncated`` ``[n]`` bool (the episode ended after this step's action),
        ``first [n]`` bool (this step starts an episode), and for each state field ``k`` of the
        core's ``state_spec()``: a carry's value *before* the step (``[n, *shape]``), or a
        window's slice produced *by* the step (``[n, layers, d]``, from ``core.step_slices``).
    """

    stream: int
    start_step: int
    data: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.data["first"].shape[0])


@dataclass
class SequenceBatch:
    """``B`` sequences of ``L = burn_in + seq_len`` steps and the state before each first step.

    Steps after the end of a sequence's episode are padding: ``mask`` False, all fields zero.
    state: for a carry ``k``: ``[B, *shape]`` float32; for a window ``k``: ``[B, layers, M, d]``
        float32 and ``k + "_mask"`` ``[B, M]`` bool (same layout as ``core.initial_state``).
    weights: importance-sampling weights ``[B]`` float32 (all 1 for uniform replay).
    item_id, generation: identify the sampled start for ``update_priorities``.
    shard: ``[B]`` int32 index of the shard each sequence came from.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    first: np.ndarray
    mask: np.ndarray
    state: dict[str, np.ndarray]
    weights: np.ndarray
    item_id: np.ndarray
    generation: np.ndarray
    priority: np.ndarray
    stream: np.ndarray
    stream_step: np.ndarray
    shard: np.ndarray
    burn_in: int = 0
    info: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @staticmethod
    def concatenate(batches: list[SequenceBatch]) -> SequenceBatch:
        """Stack batches along the batch axis (``info`` of the first batch is kept)."""
        if not batches:
            raise ValueError("concatenate needs at least one batch")
        out = {}
        for f in fields(SequenceBatch):
            if f.name in ("burn_in", "info"):
                continue
            if f.name == "state":
                keys = batches[0].state.keys()
                out["state"] = {k: np.concatenate([b.state[k] for b in batches]) for k in keys}
            else:
                out[f.name] = np.concatenate([getattr(b, f.name) for b in batches])
        return SequenceBatch(**out, burn_in=batches[0].burn_in, info=dict(batches[0].info))


def sequence_priority(td_abs: np.ndarray, mask: np.ndarray, eta: float = 0.9) -> np.ndarray:
    """R2D2's priority of each sequence: ``eta * max|delta| + (1 - eta) * mean|delta|``.

    td_abs: ``[B, T]`` absolute TD errors; mask: ``[B, T]`` bool, steps that count. A sequence
    with no counted step gets priority 0 (the shard floors it at ``min_priority``).
    Returns ``[B]`` float64.
    """
    td_abs = np.abs(np.asarray(td_abs, dtype=np.float64))
    mask = np.asarray(mask, dtype=bool)
    if td_abs.shape != mask.shape or td_abs.ndim != 2:
        raise ValueError(
            f"td_abs and mask must both be [B, T]; got {td_abs.shape} and {mask.shape}"
        )
    masked = np.where(mask, td_abs, 0.0)
    count = mask.sum(axis=1)
    mean = masked.sum(axis=1) / np.maximum(count, 1)
    return eta * masked.max(axis=1, initial=0.0) + (1.0 - eta) * mean


def importance_weights(
    priority: np.ndarray, total: float, count: int, min_priority: float, beta: float
) -> np.ndarray:
    """PER weights ``(N * P(i)) ** -beta`` normalised by the largest possible weight.

    priority: sampled leaf values (``p ** alpha``); total: their sum over all items; count:
    items with non-zero priority; min_priority: the smallest non-zero leaf. Returns float32.
    """
    prob = np.asarray(priority, dtype=np.float64) / total
    max_weight = (count * min_priority / total) ** -beta
    return ((count * prob) ** -beta / max_weight).astype(np.float32)

"""Compact per-step state: what an episode stores per timestep, and the state rebuilt from it.

RLlib stores the module's whole ``STATE_OUT`` in every timestep of an episode. memrl stores,
under the same key, only the *record* that ``state_spec()`` calls for:

* ``carry`` field: its full value after the step;
* ``window`` field ``(layers, M, d)``: the step's own slice ``(layers, d)``; after a step the
  window's newest slot (index ``M - 1``) is that step's slice, so the record is ``[..., -1, :]``.
  The ``<field>_mask`` is not stored; it is implied by the episode boundaries.

The state *before* step ``t`` of an episode (what a training chunk starting at ``t`` needs):
the initial state if ``t == 0``; else each carry field's record of step ``t - 1``, and each
window field's slices of steps ``t - M .. t - 1`` (oldest first), slots before the episode's step
0 zero and masked, as in :func:`memrl.models.window.window_before`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from memrl.models.base import MASK_SUFFIX, StateSpec
from memrl.models.window import gather_window, window_positions


def step_record(state: Mapping, spec: Mapping[str, StateSpec]) -> dict:
    """The per-step record of the state *after* a step (numpy arrays or tensors, any batch dims).

    state: ``{field: [..., *spec.shape]}`` (plus window masks, ignored).
    Returns ``{field: [..., *spec.slice_shape]}``.
    """
    return {
        key: state[key][..., -1, :] if s.kind == "window" else state[key] for key, s in spec.items()
    }


def record_nbytes(spec: Mapping[str, StateSpec]) -> int:
    """Bytes of one step's record."""
    total = 0
    for s in spec.values():
        itemsize = np.dtype(str(s.dtype).removeprefix("torch.")).itemsize
        total += int(np.prod(s.slice_shape)) * itemsize
    return total


def states_before(
    records: Mapping[str, np.ndarray],
    spec: Mapping[str, StateSpec],
    initial: Mapping[str, np.ndarray],
    starts: np.ndarray,
    first_row: int,
) -> dict[str, np.ndarray]:
    """States before several steps of one episode, rebuilt from its stored records.

    records: ``{field: [R, *slice_shape]}``, row ``r`` holds the record of episode step
        ``r - first_row`` (rows may begin after step 0, e.g. in a cut episode chunk whose
        lookback does not reach the start: then ``first_row < 0``).
    initial: the unbatched initial state ``{field: [*shape], <window>_mask: [M]}``.
    starts: ``[C]`` int rows; the state before the step at row ``s`` is wanted (``s`` may equal
        ``R``: the state after the last record).
    Returns ``{field: [C, *shape]}`` plus ``{<window>_mask: [C, M]}`` (bool).
    Raises ValueError if a needed record lies before the stored rows (the lookback is too short).
    """
    starts = np.asarray(starts, dtype=np.int64)
    at_start = starts <= first_row  # chunk begins the episode: initial state
    out: dict[str, np.ndarray] = {}
    for key, s in spec.items():
        rec = records.get(key)
        init = np.broadcast_to(initial[key], (len(starts), *initial[key].shape))
        if s.kind == "carry":
            prev = starts - 1
            missing = ~at_start & (prev < 0)
            if missing.any():
                raise ValueError(
                    f"state field {key!r}: the record before row {int(starts[missing][0])} is "
                    "not stored; the episode's lookback must hold at least one step"
                )
            if rec is None or len(rec) == 0:
                out[key] = np.array(init)
                continue
            value = rec[np.clip(prev, 0, len(rec) - 1)]
            out[key] = np.where(at_start.reshape(-1, *[1] * (value.ndim - 1)), init, value)
            continue
        memory_len = s.memory_len
        rows = window_positions(starts, memory_len)  # [C, M]
        valid = (rows >= first_row) & ~at_start[:, None]
        missing = valid & (rows < 0)
        if missing.any():
            raise ValueError(
                f"window field {key!r} (M={memory_len}) needs records before the stored rows; "
                f"set episode_lookback_horizon >= {memory_len}"
            )
        layers, _, dim = s.shape
        if rec is None or len(rec) == 0:
            memory = np.zeros((len(starts), layers, memory_len, dim), dtype=initial[key].dtype)
        else:
            memory = gather_window(np.asarray(rec), rows, valid)  # [C, layers, M, d]
        out[key] = memory.astype(initial[key].dtype, copy=False)
        out[key + MASK_SUFFIX] = valid
    return out

"""One replay shard: per-stream ring buffers of steps with per-step recurrent state.

Layout. A shard holds up to ``max_streams`` *streams* (the step sequence of one env of one
writer). Each stream owns a *lane*: a ring of ``lane_capacity`` steps in preallocated arrays
``[lanes, lane_capacity, ...]``, so stream step ``s`` lives at slot ``s % lane_capacity``. Keeping
a stream contiguous is what makes state reconstruction pure index arithmetic: the window before
step ``s`` is slots ``(s - M .. s - 1) % lane_capacity``, gathered for a whole batch at once.

Bookkeeping per stored step: its stream step (``-1`` = empty; comparing it with the wanted step
detects overwritten slots), the stream step its episode started at (two steps are in the same
episode iff these agree), and a generation (a shard-wide write counter) naming the item for
priority updates. Per lane: the stream id, its first step, and the oldest/newest stored steps.

Items. Every stored step is a candidate sequence start. Its sum-tree leaf is non-zero only while
the start is *valid*: its sequence is complete (``burn_in + seq_len`` steps stored, or its
episode ended within the stored steps), and every step its window state needs is still stored
(steps ``max(s - M, episode start of s - 1) .. s - 1``). Validity is updated on every insert, so
a sample never refers to an overwritten step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from memrl.models.base import MASK_SUFFIX, StateSpec
from memrl.models.window import gather_window, window_positions
from memrl.replay import codec, persist
from memrl.replay.batch import STEP_FIELDS, Chunk, SequenceBatch, importance_weights
from memrl.replay.config import ReplayConfig
from memrl.replay.persist import CheckpointError
from memrl.replay.sum_tree import SumTree

log = logging.getLogger(__name__)

STATE_PREFIX = "state."
# Columns a checkpoint holds besides the step fields: where each step sits and its leaf.
BOOKKEEPING_COLUMNS = {
    "lane": np.int32,
    "slot": np.int32,
    "stream": np.int64,
    "stream_step": np.int64,
    "episode_start": np.int64,
    "generation": np.int64,
    "priority": np.float64,
}
# Config fields that may differ between the saving and the restoring shard.
_FREE_CONFIG_FIELDS = ("seed", "extra")
"""Storage-array (and Arrow column) name prefix of state fields."""


class ReplayShard:
    """A ring-buffer replay shard storing per-step recurrent state. Plain Python, no Ray.

    config: the validated ``ReplayConfig``; state_spec: ``core.state_spec()``; shard_id: index
    reported in samples and file names. Raises ValueError when a lane cannot hold a window
    history plus one sample (``lane_capacity <= max memory_len + burn_in + seq_len``).
    """

    def __init__(
        self, config: ReplayConfig, state_spec: Mapping[str, StateSpec], shard_id: int = 0
    ) -> None:
        self.config = config
        self.state_spec = dict(state_spec)
        self.shard_id = int(shard_id)
        for key, spec in self.state_spec.items():
            if spec.kind not in ("carry", "window"):
                raise ValueError(f"state field {key!r}: kind must be 'carry' or 'window'")
            if key.endswith(MASK_SUFFIX) or key in STEP_FIELDS:
                raise ValueError(f"state field name {key!r} clashes with a replay field name")
        self.history = max(
            (s.memory_len for s in self.state_spec.values() if s.kind == "window"), default=0
        )
        self.lanes = config.max_streams
        self.lane_capacity = config.lane_capacity
        need = self.history + config.sample_len
        if self.lane_capacity <= need:
            raise ValueError(
                f"ReplayConfig.capacity / max_streams = {self.lane_capacity} steps per stream "
                f"must exceed memory_len + burn_in + seq_len = {need}"
            )
        self.field_shapes, self.field_dtypes = self._field_layout()
        self._rng = np.random.default_rng(config.seed)
        self._allocate()

    # --- layout ---------------------------------------------------------------------------------
    def _field_layout(self) -> tuple[dict[str, tuple[int, ...]], dict[str, np.dtype]]:
        cfg = self.config
        shapes: dict[str, tuple[int, ...]] = {
            "obs": cfg.obs_shape,
            "action": cfg.action_shape,
            "reward": (),
            "terminated": (),
            "truncated": (),
            "first": (),
        }
        dtypes = {
            "obs": np.dtype(cfg.obs_dtype),
            "action": np.dtype(cfg.action_dtype),
            "reward": np.dtype(np.float32),
            "terminated": np.dtype(bool),
            "truncated": np.dtype(bool),
            "first": np.dtype(bool),
        }
        storage = codec.STORAGE_NUMPY_DTYPE[cfg.state_storage]
        for key, spec in self.state_spec.items():
            shapes[STATE_PREFIX + key] = tuple(spec.slice_shape)
            dtypes[STATE_PREFIX + key] = storage
        return shapes, dtypes

    def _allocate(self) -> None:
        lanes, cap = self.lanes, self.lane_capacity
        self._data = {
            name: np.zeros((lanes, cap, *shape), dtype=self.field_dtypes[name])
            for name, shape in self.field_shapes.items()
        }
        self._step = np.full((lanes, cap), -1, dtype=np.int64)
        self._episode_start = np.zeros((lanes, cap), dtype=np.int64)
        self._generation = np.full((lanes, cap), -1, dtype=np.int64)
        self._lane_stream = np.full(lanes, -1, dtype=np.int64)
        self._lane_first = np.zeros(lanes, dtype=np.int64)
        self._lane_lo = np.zeros(lanes, dtype=np.int64)
        self._lane_hi = np.full(lanes, -1, dtype=np.int64)
        self._lane_tick = np.zeros(lanes, dtype=np.int64)
        self._stream_lane: dict[int, int] = {}
        self._tree = SumTree(lanes * cap)
        self._max_priority = 1.0
        self._writes = 0  # generations handed out so far
        self._saved_writes = 0  # ``_writes`` at the last save / restore (0: never saved)
        self._tick = 0  # chunks inserted so far (LRU clock of lanes)

    @property
    def nbytes(self) -> int:
        """Bytes of all preallocated arrays (data, bookkeeping, sum-tree)."""
        arrays = [*self._data.values(), self._step, self._episode_start, self._generation]
        tree = self._tree._sum.nbytes + self._tree._min.nbytes
        return int(sum(a.nbytes for a in arrays) + tree)

    def __len__(self) -> int:
        """Steps stored."""
        return int(np.count_nonzero(self._step >= 0))

    @property
    def num_valid_starts(self) -> int:
        """Stored steps that can start a sequence now."""
        return self._tree.count

    def stats(self) -> dict[str, Any]:
        """Counters for logs and for the sampler's global weights."""
        return {
            "shard": self.shard_id,
            "steps": len(self),
            "valid_starts": self._tree.count,
            "streams": len(self._stream_lane),
            "total_priority": self._tree.total,
            "min_priority": self._tree.min_positive,
            "max_priority": self._max_priority,
            "writes": self._writes,
            "unsaved_steps": self.unsaved_steps,
        }

    @property
    def unsaved_steps(self) -> int:
        """Steps inserted since the last ``save`` / ``restore`` (all of them if never saved)."""
        return self._writes - self._saved_writes

    # --- insert ---------------------------------------------------------------------------------
    def add_chunk(self, chunk: Chunk, *, allow_gap: bool = False) -> int:
        """Store the steps of ``chunk`` this shard does not hold yet; returns how many.

        allow_gap: accept a chunk that starts after a gap in its stream (or a stream unknown
        here that starts mid-episode), as after a restore from a checkpoint that misses the
        stream's newest steps. The gap is stored as missing steps: no sequence runs through it
        (it masks like an episode end), and a window state that would need a missing step makes
        its start invalid. Carry states are stored per step, so those starts stay valid.

        Raises ValueError on a missing/unknown field, a wrong shape, a gap after the stream's
        newest stored step (unless ``allow_gap``), a chunk longer than a lane, or a new stream
        that does not start an episode (unless ``allow_gap``).
        """
        data = self._check_chunk(chunk)
        n = len(chunk)
        if n > self.lane_capacity:
            raise ValueError(f"chunk has {n} steps; a lane holds only {self.lane_capacity}")
        cap = self.lane_capacity
        gap = False  # True: the steps before this chunk are missing, their episode unknown
        lane = self._stream_lane.get(chunk.stream)
        if lane is None:
            if not data["first"][0]:
                if not (allow_gap and chunk.start_step > 0):
                    raise ValueError(
                        f"the first chunk of stream {chunk.stream} must start an episode "
                        "(first[0] True): the state before it is unknown to the replay"
                    )
                # The stream's earlier steps existed but are missing here: a virtual first
                # step just before the chunk keeps its first stored step from counting as a
                # stream start (whose state would be the initial one).
                lane = self._open_lane(chunk.stream, chunk.start_step, chunk.start_step - 1)
                gap = True
            else:
                lane = self._open_lane(chunk.stream, chunk.start_step)
        hi_old = stored_hi = int(self._lane_hi[lane])
        if chunk.start_step > hi_old + 1:
            if not allow_gap:
                raise ValueError(
                    f"chunk of stream {chunk.stream} starts at step {chunk.start_step} but the "
                    f"shard holds it only up to step {hi_old}: a chunk was lost"
                )
            gap = True
            # Slots of the missing steps may still hold older steps of the stream: empty them.
            missing = np.arange(max(hi_old + 1, chunk.start_step - cap), chunk.start_step)
            self._tree.update(lane * cap + missing % cap, 0.0)
            self._step[lane, missing % cap] = -1
            self._generation[lane, missing % cap] = -1
            hi_old = chunk.start_step - 1
        skip = hi_old + 1 - chunk.start_step  # the overlap already stored
        if skip >= n:
            return 0
        steps = np.arange(hi_old + 1, chunk.start_step + n, dtype=np.int64)
        slots = steps % cap
        base = lane * cap
        self._tree.update(base + slots, 0.0)  # the items these slots held are gone
        for name, array in self._data.items():
            array[lane, slots] = data[name][skip:]
        first = data["first"][skip:]
        if gap:
            # The episode of the steps before the chunk's first ``first`` began at an unknown
            # missing step: name it by the missing step just before the chunk, so that it
            # differs from every stored episode and a window reaching before the chunk is
            # invalid (that step is not stored).
            previous_start = chunk.start_step - 1
        elif hi_old >= self._lane_first[lane]:
            previous_start = self._episode_start[lane, hi_old % cap]
        else:
            previous_start = steps[0]  # the stream's first step, which starts an episode
        self._episode_start[lane, slots] = np.maximum.accumulate(
            np.where(first, steps, previous_start)
        )
        self._step[lane, slots] = steps
        self._generation[lane, slots] = self._writes + np.arange(steps.size)
        self._writes += int(steps.size)
        hi = int(steps[-1])
        lo = max(int(self._lane_lo[lane]), hi - cap + 1)
        if gap and lo > int(self._lane_hi[lane]):
            lo = int(steps[0])  # nothing from before the gap is left in the ring
        self._lane_hi[lane], self._lane_lo[lane] = hi, lo
        self._tick += 1
        self._lane_tick[lane] = self._tick

        # Starts whose validity may have changed: those not complete before this chunk, and
        # those whose window history may have just been overwritten.
        length = self.config.sample_len
        # (After a gap, the incomplete starts before it are now complete: the gap ends them.)
        candidates = np.arange(max(lo, stored_hi - length + 2), hi + 1)
        if self.history and lo > self._lane_first[lane]:
            candidates = np.union1d(candidates, np.arange(lo, min(lo + self.history, hi) + 1))
        valid = self._valid_starts(lane, candidates)
        items = base + candidates % cap
        current = self._tree.get(items)
        fresh = np.where(current > 0, current, self._new_leaf())
        self._tree.update(items, np.where(valid, fresh, 0.0))
        return int(steps.size)

    def _check_chunk(self, chunk: Chunk) -> dict[str, np.ndarray]:
        if not isinstance(chunk, Chunk):
            raise TypeError(f"add_chunk expects a Chunk, got {type(chunk).__name__}")
        expected = set(STEP_FIELDS) | set(self.state_spec)
        got = set(chunk.data)
        if got != expected:
            raise ValueError(
                f"chunk fields must be {sorted(expected)}; missing {sorted(expected - got)}, "
                f"unknown {sorted(got - expected)}"
            )
        n = int(np.shape(chunk.data["first"])[0])
        if n == 0:
            raise ValueError("chunk must hold at least one step")
        if chunk.start_step < 0:
            raise ValueError(f"chunk start_step must be >= 0, got {chunk.start_step}")
        if not 0 <= chunk.stream < 2**63:
            raise ValueError(f"chunk stream id must be in [0, 2**63), got {chunk.stream}")
        out: dict[str, np.ndarray] = {}
        for name, shape in self.field_shapes.items():
            key = name.removeprefix(STATE_PREFIX)
            value = np.asarray(chunk.data[key])
            if value.shape != (n, *shape):
                raise ValueError(
                    f"chunk field {key!r} must have shape {(n, *shape)}, got {value.shape}"
                )
            if name.startswith(STATE_PREFIX):
                out[name] = codec.encode(value, self.config.state_storage)
            else:
                out[name] = value.astype(self.field_dtypes[name], copy=False)
        return out

    def add_chunk_acked(self, chunk: Chunk, allow_gap: bool = False) -> tuple[int, int]:
        """``add_chunk`` that also returns the shard's write counter after the insert.

        Returns ``(steps stored, writes)``; comparing ``writes`` with the counter a checkpoint
        saved tells whether the insert is in that checkpoint (used to count lost steps exactly).
        """
        stored = self.add_chunk(chunk, allow_gap=allow_gap)
        return stored, self._writes

    def _open_lane(self, stream: int, start_step: int, first_step: int | None = None) -> int:
        free = np.flatnonzero(self._lane_stream < 0)
        if free.size:
            lane = int(free[0])
        else:
            lane = int(np.argmin(self._lane_tick))
            evicted = int(self._lane_stream[lane])
            log.info("replay shard %d: stream %d evicts stream %d", self.shard_id, stream, evicted)
            del self._stream_lane[evicted]
            cap = self.lane_capacity
            self._tree.update(lane * cap + np.arange(cap), 0.0)
            self._step[lane] = -1
            self._generation[lane] = -1
        self._stream_lane[int(stream)] = lane
        self._lane_stream[lane] = stream
        self._lane_first[lane] = start_step if first_step is None else first_step
        self._lane_lo[lane] = start_step
        self._lane_hi[lane] = start_step - 1
        return lane

    def _new_leaf(self) -> float:
        if not self.config.prioritized:
            return 1.0
        return float(self._max_priority**self.config.alpha)

    def _valid_starts(self, lane: int, start: np.ndarray) -> np.ndarray:
        """Which stream steps ``start`` (sorted int array) of ``lane`` can start a sequence."""
        if start.size == 0:
            return np.zeros(0, dtype=bool)
        cap = self.lane_capacity
        lo, hi = int(self._lane_lo[lane]), int(self._lane_hi[lane])
        # A stream may have missing steps after a restore (``allow_gap``): check each step.
        stored = (start >= lo) & (start <= hi) & (self._step[lane, start % cap] == start)
        # Complete: the whole sequence is stored, or its episode ends within the stored steps.
        first_span = max(int(start.min()), lo)
        span = np.arange(first_span, hi + 1)
        span_slots = span % cap
        data = self._data
        present = self._step[lane, span_slots] == span
        ends = data["terminated"][lane, span_slots] | data["truncated"][lane, span_slots]
        ends |= ~present  # a missing step ends a sequence like an episode end
        ends[:-1] |= data["first"][lane, span_slots[1:]] | ~present[1:]
        ends_from = np.cumsum(ends[::-1])[::-1] > 0  # some episode end at or after each step
        at = np.clip(start - first_span, 0, span.size - 1)
        complete = (start + self.config.sample_len - 1 <= hi) | ends_from[at]
        if not self.history:
            return stored & complete
        # Window history: steps max(s - M, episode start of s - 1) .. s - 1 must all be stored.
        at_stream_start = start == self._lane_first[lane]
        previous = start - 1
        previous_episode = self._episode_start[lane, previous % cap]
        needed_from = np.maximum(start - self.history, previous_episode)
        # Steps of one episode after a gap are contiguous (see add_chunk), so the first and the
        # last needed step being stored means all of them are.
        needed_stored = (self._step[lane, previous % cap] == previous) & (
            self._step[lane, needed_from % cap] == needed_from
        )
        history_ok = at_stream_start | ((previous >= lo) & (needed_from >= lo) & needed_stored)
        return stored & complete & history_ok

    # --- sample ---------------------------------------------------------------------------------
    def sample(self, batch_size: int) -> SequenceBatch:
        """``batch_size`` sequences, by priority (or uniformly), with their start states.

        Raises ValueError when no start is valid yet.
        """
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if self._tree.count == 0:
            raise ValueError(f"replay shard {self.shard_id} has no valid sequence start yet")
        item_id = self._tree.sample(batch_size, self._rng)
        return self.gather(item_id)

    def gather(self, item_id: np.ndarray) -> SequenceBatch:
        """The sequences starting at items ``item_id`` ([B] int) and their start states.

        Raises ValueError for an item that is not a valid start (zero priority).
        """
        item_id = np.asarray(item_id, dtype=np.int64)
        if item_id.size and (item_id.min() < 0 or item_id.max() >= self._tree.size):
            raise ValueError(f"item_id out of range [0, {self._tree.size})")
        priority = self._tree.get(item_id)
        if np.any(priority <= 0):
            raise ValueError(f"items {item_id[priority <= 0][:5].tolist()} are not valid starts")
        cap, length = self.lane_capacity, self.config.sample_len
        lane, slot = np.divmod(item_id, cap)
        start = self._step[lane, slot]
        episode = self._episode_start[lane, slot]
        steps = start[:, None] + np.arange(length)  # [B, L]
        lanes_bl = lane[:, None]
        slots_bl = steps % cap
        mask = (self._step[lanes_bl, slots_bl] == steps) & (
            self._episode_start[lanes_bl, slots_bl] == episode[:, None]
        )
        fields = {}
        for name in STEP_FIELDS:
            value = self._data[name][lanes_bl, slots_bl]
            fields[name] = _zero_where(value, ~mask)

        state: dict[str, np.ndarray] = {}
        previous_episode = self._episode_start[lane, (start - 1) % cap]
        has_previous = start > self._lane_first[lane]
        for key, spec in self.state_spec.items():
            stored = self._data[STATE_PREFIX + key]
            if spec.kind == "carry":
                state[key] = codec.decode(stored[lane, slot], self.config.state_storage)
                continue
            past = window_positions(start, spec.memory_len)  # [B, M], oldest first
            past_slots = past % cap
            valid = (
                has_previous[:, None]
                & (past >= self._lane_lo[lane][:, None])
                & (self._step[lanes_bl, past_slots] == past)
                & (self._episode_start[lanes_bl, past_slots] == previous_episode[:, None])
            )
            # The ring's (lane, slot) as one flat position (a view: no copy of the store).
            flat = stored.reshape(-1, *stored.shape[2:])
            window = gather_window(flat, lane[:, None] * cap + past_slots, valid)
            state[key] = codec.decode(window, self.config.state_storage)
            state[key + MASK_SUFFIX] = valid
        info = {
            "total_priority": self._tree.total,
            "valid_starts": float(self._tree.count),
            "min_priority": self._tree.min_positive,
        }
        if self.config.prioritized:
            weights = importance_weights(
                priority,
                self._tree.total,
                self._tree.count,
                self._tree.min_positive,
                self.config.beta,
            )
        else:
            weights = np.ones(item_id.shape, dtype=np.float32)
        return SequenceBatch(
            **fields,
            mask=mask,
            state=state,
            weights=weights,
            item_id=item_id,
            generation=self._generation[lane, slot],
            priority=priority,
            stream=self._lane_stream[lane],
            stream_step=start,
            shard=np.full(item_id.shape, self.shard_id, dtype=np.int32),
            burn_in=self.config.burn_in,
            info=info,
        )

    # --- priorities -----------------------------------------------------------------------------
    def update_priorities(
        self, item_id: np.ndarray, generation: np.ndarray, priority: np.ndarray
    ) -> int:
        """Set the priorities (before ``alpha``) of sampled items; returns how many applied.

        An item overwritten since it was sampled (other generation) or no longer a valid start
        is skipped. Uniform replay ignores updates (returns 0). Raises ValueError on mismatched
        lengths, an out-of-range id, or a negative / non-finite priority.
        """
        item_id = np.asarray(item_id, dtype=np.int64).reshape(-1)
        generation = np.asarray(generation, dtype=np.int64).reshape(-1)
        priority = np.asarray(priority, dtype=np.float64).reshape(-1)
        if not item_id.shape == generation.shape == priority.shape:
            raise ValueError(
                "item_id, generation and priority must have the same length, got "
                f"{item_id.shape}, {generation.shape}, {priority.shape}"
            )
        if item_id.size and (item_id.min() < 0 or item_id.max() >= self._tree.size):
            raise ValueError(f"item_id out of range [0, {self._tree.size})")
        if not np.all(np.isfinite(priority)) or np.any(priority < 0):
            raise ValueError("priorities must be finite and >= 0")
        if not self.config.prioritized:
            return 0
        current = self._generation.reshape(-1)[item_id] == generation
        live = current & (self._tree.get(item_id) > 0)
        if not live.any():
            return 0
        priority = np.maximum(priority[live], self.config.min_priority)
        self._max_priority = max(self._max_priority, float(priority.max()))
        self._tree.update(item_id[live], priority**self.config.alpha)
        return int(live.sum())

    # --- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Checkpoint to ``directory/shard-<id>-<tag>.arrow`` plus its manifest (atomic, see
        :mod:`memrl.replay.persist`); returns the data file's path.

        One row per stored step: the bookkeeping columns (``lane``, ``slot``, ``stream``,
        ``stream_step``, ``episode_start``, ``generation``, ``priority`` = the sum-tree leaf),
        the step fields, and ``state.<key>`` (a carry's value before the step, or a window's
        slice of the step; uint16 holds bfloat16 bits). The metadata holds the ReplayConfig,
        the state spec, the field shapes and the lane bookkeeping (for an exact restore).
        """
        contents = self._export_contents()
        meta = {
            "shard_id": self.shard_id,
            "config": self.config.to_dict(),
            "state_spec": self._describe_spec(),
            "field_shapes": {k: list(v) for k, v in self.field_shapes.items()},
            "shard": contents["meta"],
        }
        path = persist.write_rows(Path(directory), self.shard_id, contents["rows"], meta)
        self._saved_writes = self._writes
        return path

    def checkpoint(self, directory: str | Path) -> dict[str, Any]:
        """``save`` and say what the checkpoint holds (one actor call, so nothing interleaves).

        Returns ``{"path": str, "writes": write counter saved, "steps": steps stored}``.
        """
        path = self.save(directory)
        return {"path": str(path), "writes": self._writes, "steps": len(self)}

    def restore(self, directory: str | Path) -> None:
        """Load the checkpoint of this shard id from ``directory``; all or nothing.

        Raises CheckpointError (a ValueError) on a missing, truncated, corrupt or incompatible
        checkpoint; the shard is then unchanged.
        """
        columns = {name: ((), np.dtype(dtype)) for name, dtype in BOOKKEEPING_COLUMNS.items()}
        columns.update(
            {name: (shape, self.field_dtypes[name]) for name, shape in self.field_shapes.items()}
        )
        rows, meta, path = persist.read_rows(Path(directory), self.shard_id, columns)
        self._check_compatible(meta, path)
        self._load_contents({"rows": rows, "meta": meta["shard"]})

    def _describe_spec(self) -> dict[str, Any]:
        return {
            key: {"kind": spec.kind, "shape": list(spec.shape), "dtype": str(spec.dtype)}
            for key, spec in self.state_spec.items()
        }

    def _check_compatible(self, meta: dict[str, Any], path: Path) -> None:
        """CheckpointError unless ``meta`` was saved by this shard id with this config (but for
        the fields that may differ) and state spec."""
        if "shard" not in meta:
            raise CheckpointError(f"replay checkpoint file {path} lacks its memrl.replay metadata")
        if meta.get("shard_id") != self.shard_id:
            raise CheckpointError(f"{path} holds shard {meta.get('shard_id')}, not {self.shard_id}")
        saved = dict(meta.get("config", {}))
        mine = self.config.to_dict()
        for key in _FREE_CONFIG_FIELDS:
            saved.pop(key, None)
            mine.pop(key, None)
        differ = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if differ:
            detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs {mine.get(k)!r}" for k in differ)
            raise CheckpointError(f"{path} was written with another ReplayConfig ({detail})")
        if meta.get("state_spec") != self._describe_spec():
            raise CheckpointError(
                f"{path} was written for state spec {meta.get('state_spec')}, this shard has "
                f"{self._describe_spec()}"
            )

    def _export_contents(self) -> dict[str, Any]:
        """Stored steps (rows) and bookkeeping, for persistence."""
        lane, slot = np.nonzero(self._step >= 0)
        rows = {
            "lane": lane,
            "slot": slot,
            "stream": self._lane_stream[lane],
            "stream_step": self._step[lane, slot],
            "episode_start": self._episode_start[lane, slot],
            "generation": self._generation[lane, slot],
            "priority": self._tree.get(lane * self.lane_capacity + slot),
        }
        rows = {name: rows[name].astype(dtype) for name, dtype in BOOKKEEPING_COLUMNS.items()}
        rows.update({name: array[lane, slot] for name, array in self._data.items()})
        meta = {
            "lane_stream": self._lane_stream.tolist(),
            "lane_first": self._lane_first.tolist(),
            "lane_lo": self._lane_lo.tolist(),
            "lane_hi": self._lane_hi.tolist(),
            "lane_tick": self._lane_tick.tolist(),
            "max_priority": self._max_priority,
            "writes": self._writes,
            "tick": self._tick,
            "rng": self._rng.bit_generator.state,
        }
        return {"rows": rows, "meta": meta}

    def _load_contents(self, contents: dict[str, Any]) -> None:
        """Replace everything with ``contents`` (built and checked before anything is touched)."""
        rows, meta = contents["rows"], contents["meta"]
        lanes, cap = self.lanes, self.lane_capacity
        lane, slot = rows["lane"].astype(np.int64), rows["slot"].astype(np.int64)
        if lane.size and (
            lane.min() < 0 or lane.max() >= lanes or slot.min() < 0 or slot.max() >= cap
        ):
            raise ValueError("checkpoint rows address lanes/slots outside this shard's layout")
        data = {}
        for name, shape in self.field_shapes.items():
            array = np.zeros((lanes, cap, *shape), dtype=self.field_dtypes[name])
            array[lane, slot] = rows[name]
            data[name] = array
        step = np.full((lanes, cap), -1, dtype=np.int64)
        step[lane, slot] = rows["stream_step"]
        episode_start = np.zeros((lanes, cap), dtype=np.int64)
        episode_start[lane, slot] = rows["episode_start"]
        generation = np.full((lanes, cap), -1, dtype=np.int64)
        generation[lane, slot] = rows["generation"]
        tree = SumTree(lanes * cap)
        tree.update(lane * cap + slot, rows["priority"])
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        lane_stream = np.asarray(meta["lane_stream"], dtype=np.int64)
        # Everything is built; swap it in.
        self._data, self._step, self._episode_start = data, step, episode_start
        self._generation, self._tree, self._rng = generation, tree, rng
        self._lane_stream = lane_stream
        self._lane_first = np.asarray(meta["lane_first"], dtype=np.int64)
        self._lane_lo = np.asarray(meta["lane_lo"], dtype=np.int64)
        self._lane_hi = np.asarray(meta["lane_hi"], dtype=np.int64)
        self._lane_tick = np.asarray(meta["lane_tick"], dtype=np.int64)
        self._stream_lane = {int(s): i for i, s in enumerate(lane_stream) if s >= 0}
        self._max_priority = float(meta["max_priority"])
        self._writes = int(meta["writes"])
        self._saved_writes = self._writes
        self._tick = int(meta["tick"])


def _zero_where(value: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """``value`` with entries zeroed where ``invalid`` (broadcast over trailing dims)."""
    invalid = invalid.reshape(invalid.shape + (1,) * (value.ndim - invalid.ndim))
    return np.where(invalid, np.zeros((), dtype=value.dtype), value)

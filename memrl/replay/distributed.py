"""Replay shards as Ray actors: writers route chunks, the learner samples with prefetching.

* ``create_shards`` starts ``N`` ``ReplayShard`` actors.
* ``replay_writer`` (one per env runner) gives the :class:`ShardWriter` that sends chunks to
  shard ``writer_id % N`` with a bounded number of unacknowledged sends.
* ``PrefetchSampler`` (in the learner) keeps ``prefetch`` sample rounds in flight, each asking
  every shard for its share of the batch in parallel, so sampling overlaps the learner update;
  it computes importance weights over all shards and routes priority updates back.

A shard actor that died surfaces as ``ReplayShardError`` naming the shard; it is never skipped.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError

from memrl.models.base import StateSpec
from memrl.replay.batch import SequenceBatch, importance_weights, sequence_priority
from memrl.replay.config import ReplayConfig
from memrl.replay.shard import ReplayShard
from memrl.replay.shard_writer import ShardWriter

log = logging.getLogger(__name__)


class ReplayShardError(RuntimeError):
    """A replay shard actor died or is unreachable; ``shard`` is its index."""

    def __init__(self, shard: int, num_shards: int, cause: BaseException) -> None:
        super().__init__(
            f"replay shard {shard} (of {num_shards}) is dead or unreachable: "
            f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
        )
        self.shard = shard


def create_shards(
    num_shards: int,
    config: ReplayConfig,
    state_spec: Mapping[str, StateSpec],
    *,
    num_cpus: float = 1.0,
) -> list[ray.actor.ActorHandle]:
    """Start ``num_shards`` shard actors (shard ``i`` seeded ``config.seed + i`` when seeded).

    The actors are not restarted by Ray: a lost shard is an error the caller sees.
    """
    if not isinstance(num_shards, int) or num_shards <= 0:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
    return [start_shard(i, config, state_spec, num_cpus=num_cpus) for i in range(num_shards)]


def start_shard(
    shard: int,
    config: ReplayConfig,
    state_spec: Mapping[str, StateSpec],
    *,
    num_cpus: float = 1.0,
) -> ray.actor.ActorHandle:
    """Start the actor of shard ``shard`` (seeded ``config.seed + shard`` when seeded).

    ``max_restarts=0``: Ray must not bring a shard back empty behind the caller's back; a
    ``ShardSupervisor`` restarts it from its checkpoint instead.
    """
    cfg = config
    if config.seed is not None:
        cfg = ReplayConfig.from_dict({**config.to_dict(), "seed": config.seed + shard})
    actor = ray.remote(ReplayShard).options(num_cpus=num_cpus, max_restarts=0)
    return actor.remote(cfg, dict(state_spec), shard)


def get_from_shards(refs: Sequence[ray.ObjectRef], shard_ids: Sequence[int], num_shards: int):
    """``ray.get`` each ref; a dead actor raises ReplayShardError naming its shard."""
    out = []
    for ref, shard in zip(refs, shard_ids, strict=True):
        try:
            out.append(ray.get(ref))
        except RayActorError as err:
            raise ReplayShardError(shard, num_shards, err) from err
    return out


def call_all(shards: Sequence[ray.actor.ActorHandle], method: str, *args: Any) -> list[Any]:
    """Call ``method(*args)`` on every shard in parallel and return the results in shard order."""
    refs = [getattr(s, method).remote(*args) for s in shards]
    return get_from_shards(refs, range(len(shards)), len(shards))


def save_shards(shards: Sequence[ray.actor.ActorHandle], directory: str | Path) -> list[Path]:
    """Checkpoint every shard into ``directory`` (in parallel)."""
    return call_all(shards, "save", str(directory))


def restore_shards(shards: Sequence[ray.actor.ActorHandle], directory: str | Path) -> None:
    """Restore every shard from ``directory``; raises the first shard's error, if any."""
    call_all(shards, "restore", str(directory))


def replay_writer(
    shards: Sequence[ray.actor.ActorHandle], writer_id: int, max_in_flight: int = 4
) -> ShardWriter:
    """A writer to shard ``writer_id % N`` of unsupervised ``shards``: at most ``max_in_flight``
    unacknowledged chunks (``add`` blocks on the oldest, backpressure). Nothing restores a
    dead shard here, so ``add`` / ``flush`` raise ReplayShardError naming it (and the shard's
    ValueError for a bad chunk)."""
    if not shards:
        raise ValueError("replay_writer needs at least one shard")
    index = writer_id % len(shards)

    def unrecoverable(_incarnation: int, cause: BaseException | None) -> tuple[int, Any]:
        error = cause or RuntimeError("the actor died")
        raise ReplayShardError(index, len(shards), error) from cause

    return ShardWriter(index, shards[index], 0, max_in_flight=max_in_flight, recover=unrecoverable)


class PrefetchSampler:
    """Samples batches of sequences from all shards, keeping ``prefetch`` rounds in flight.

    Each round splits ``batch_size`` over the shards in proportion to their total priority
    (multinomial; uniform replay: to their valid-start counts), asks them in parallel, and
    concatenates. Importance weights are recomputed over all shards from the totals each shard
    reported with its part. Call ``next()`` for a batch and ``update_priorities`` after the
    learner step.
    """

    def __init__(
        self,
        shards: Sequence[ray.actor.ActorHandle],
        batch_size: int,
        *,
        prefetch: int = 3,
        beta: float = 0.6,
        prioritized: bool = True,
        eta: float = 0.9,
        seed: int | None = None,
    ) -> None:
        if not shards:
            raise ValueError("PrefetchSampler needs at least one shard")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(prefetch, int) or prefetch <= 0:
            raise ValueError(f"prefetch must be a positive int, got {prefetch!r}")
        self.shards = list(shards)
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.beta = beta
        self.prioritized = prioritized
        self.eta = eta
        self._rng = np.random.default_rng(seed)
        self._rounds: collections.deque[list[tuple[int, ray.ObjectRef]]] = collections.deque()
        self._updates: collections.deque[tuple[int, ray.ObjectRef]] = collections.deque()
        # Last reported per shard: total priority, valid starts, smallest non-zero leaf.
        self._total = np.zeros(len(shards))
        self._count = np.zeros(len(shards))
        self._min = np.full(len(shards), np.inf)
        self.wait_s = 0.0  # time spent blocked in next()

    @property
    def _mass(self) -> np.ndarray:
        return self._total if self.prioritized else self._count

    def refresh(self) -> None:
        """Ask every shard for its totals (used to split the next rounds)."""
        for i, stats in enumerate(call_all(self.shards, "stats")):
            self._note_stats(i, stats)

    def _note_stats(self, shard: int, stats: Mapping[str, Any]) -> None:
        """Remember a shard's totals (from its stats or a sample's info)."""
        self._total[shard] = stats["total_priority"]
        self._count[shard] = stats["valid_starts"]
        self._min[shard] = stats["min_priority"]

    def _launch(self) -> None:
        if self._mass.sum() <= 0:
            self.refresh()
            if self._mass.sum() <= 0:
                raise ValueError("replay has no valid sequence start in any shard yet")
        counts = self._rng.multinomial(self.batch_size, self._mass / self._mass.sum())
        round_ = [(i, self.shards[i].sample.remote(int(n))) for i, n in enumerate(counts) if n > 0]
        self._rounds.append(round_)

    def next(self) -> SequenceBatch:
        """The next batch (``batch_size`` sequences); launches rounds to keep the pipe full.

        Raises ReplayShardError naming a dead shard, ValueError when nothing is sampleable.
        """
        while len(self._rounds) < self.prefetch:
            self._launch()
        round_ = self._rounds.popleft()
        self._launch()  # the replacement is in flight while the learner works on this one
        began = time.perf_counter()
        parts = get_from_shards([r for _, r in round_], [i for i, _ in round_], len(self.shards))
        self.wait_s += time.perf_counter() - began
        for (shard, _), part in zip(round_, parts, strict=True):
            self._note_stats(shard, part.info)
        return self._merge(parts)

    def _merge(self, parts: list[SequenceBatch]) -> SequenceBatch:
        """One batch of the shards' parts, importance weights over all shards' totals."""
        batch = SequenceBatch.concatenate(parts)
        total, count = float(self._total.sum()), int(self._count.sum())
        if self.prioritized:
            batch.weights = importance_weights(
                batch.priority, total, count, float(self._min.min()), self.beta
            )
        batch.info = {"total_priority": total, "valid_starts": float(count)}
        return batch

    def update_priorities(
        self,
        batch: SequenceBatch,
        td_abs: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        priority: np.ndarray | None = None,
    ) -> None:
        """Send new priorities of ``batch``'s sequences to their shards (asynchronously).

        Either ``td_abs`` ``[B, T]`` (with ``mask`` ``[B, T]``, default ``batch.mask`` over the
        last T steps) turned into R2D2 sequence priorities, or ``priority`` ``[B]`` directly.
        Updates to items overwritten since sampling are ignored by the shard.
        """
        priority = self._batch_priority(batch, td_abs, mask, priority)
        for shard in np.unique(batch.shard):
            rows = batch.shard == shard
            ref = self.shards[int(shard)].update_priorities.remote(
                batch.item_id[rows], batch.generation[rows], priority[rows]
            )
            self._updates.append((int(shard), ref))
        # Surface a dead shard soon without waiting on every update.
        while len(self._updates) > 4 * len(self.shards):
            shard, ref = self._updates.popleft()
            get_from_shards([ref], [shard], len(self.shards))

    def _batch_priority(
        self,
        batch: SequenceBatch,
        td_abs: np.ndarray | None,
        mask: np.ndarray | None,
        priority: np.ndarray | None,
    ) -> np.ndarray:
        """``[B]`` float64 priorities from ``update_priorities``'s arguments (checked)."""
        if priority is None:
            if td_abs is None:
                raise ValueError("update_priorities needs td_abs or priority")
            td_abs = np.asarray(td_abs)
            if mask is None:
                mask = batch.mask[:, -td_abs.shape[1] :]
            priority = sequence_priority(td_abs, mask, self.eta)
        priority = np.asarray(priority, dtype=np.float64).reshape(-1)
        if priority.shape[0] != len(batch):
            raise ValueError(f"priority has {priority.shape[0]} entries, batch has {len(batch)}")
        return priority

    def close(self) -> None:
        """Wait for outstanding priority updates and drop prefetched rounds."""
        while self._updates:
            shard, ref = self._updates.popleft()
            get_from_shards([ref], [shard], len(self.shards))
        self._rounds.clear()

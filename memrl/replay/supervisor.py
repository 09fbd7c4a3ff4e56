"""Replay fault tolerance: a dead shard actor comes back from its last checkpoint.

``ShardSupervisor`` owns the ``N`` shard actors. It checkpoints each shard atomically into
``<checkpoint_dir>/shard_<i>/`` once ``checkpoint_every_steps`` steps were stored in it since its
last checkpoint (the previous checkpoint stays readable until the new one is complete, see
``memrl.replay.persist``). When any call to a shard fails with ``RayActorError`` it kills what is
left of the actor, starts a new one, restores it from the shard's last checkpoint (an empty shard
if it was never checkpointed), logs a warning with the number of steps lost, and hands the new
actor to whoever asked. Writers and the sampler continue.

Usage (in the process that owns the learner; writers in the same process)::

    sup = ShardSupervisor(num_shards, config, state_spec, checkpoint_dir,
                          checkpoint_every_steps=10_000)
    writer = sup.writer(writer_id)          # a ShardWriter: add(chunks), flush()
    sampler = sup.sampler(batch_size=64)    # like PrefetchSampler: next(), update_priorities()
    ...
    sup.poll()                              # optional: finishes / starts checkpoints
    metrics.update(sup.metrics())           # flat floats for TensorBoard, see below
    sup.report()                            # per shard, see below
    sup.shutdown()

``report()`` returns one dict per shard:

==========================  ================================================================
``shard``                   index
``incarnation``             0 for the first actor, +1 per restart
``restarts``                times the shard was restarted
``steps_lost``              steps lost over all restarts (definition below)
``checkpoints``             checkpoints completed (restores excluded)
``last_checkpoint_steps``   steps stored in the shard's last checkpoint (None: none yet)
``last_checkpoint_writes``  the shard's write counter in that checkpoint (None: none yet)
``unsaved_steps``           steps acknowledged since then (what a death now would lose)
``size``                    steps stored now (asked from the live actor)
``failed``                  None, or why the shard could not be restored (it stays down)
==========================  ================================================================

``metrics()`` flattens it: ``replay/shard_<i>/<key>`` for the numeric keys plus
``replay/restarts``, ``replay/steps_lost``, ``replay/size`` and ``replay/failed_shards``.

What is lost, exactly. A writer's insert is *acknowledged* when the shard's reply reached it.
``steps_lost`` of a restart is the number of steps whose insert the dead actor acknowledged
after its last checkpoint (the restored checkpoint's write counter decides "after"). Chunks that
were in flight (sent, no reply) when the actor died are re-sent, in order, to the new actor and
are not counted as lost; a chunk whose insert ran but whose reply was lost is therefore stored
again, never counted twice. A reply that arrives late from the dead actor (a writer collecting
it after the restart) is added to ``steps_lost`` then. Some lost steps may come back anyway as
the R2D2 overlap of the next chunk; they are stored as new steps and still count as lost.

After a restart each writer's streams continue after a gap (their lost tail): the first chunk
of each stream to the new actor is sent with ``allow_gap`` (see ``ReplayShard.add_chunk``), so
no sequence is sampled across the gap and no window state reaches into it.

Sampling: a sample request the dead actor did not answer is re-issued to the new actor (or to
the other shards when the restored shard has no valid start yet). Priority updates for
sequences sampled from a dead actor are dropped (counted in ``SupervisedSampler.
updates_dropped``): their items no longer exist; the restored shard keeps the priorities of its
checkpoint.

Scope. Step counts come from the acknowledgements the supervisor's own writers report, so
exact loss accounting and step-triggered checkpoints need the writers in the supervisor's
process (``sup.writer``), or writers elsewhere whose acknowledgements the owner passes to
``note_ack`` and whose unacknowledged chunks are re-sent to the restored actor (what a
:class:`memrl.replay.shard_writer.ShardWriter` without ``recover`` and ``OffPolicyAlgorithm`` do
for env runners in other processes). A plain ``replay_writer`` against ``sup.handles()`` just gets
``ReplayShardError``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError

from memrl.models.base import StateSpec
from memrl.replay.batch import SequenceBatch
from memrl.replay.config import ReplayConfig
from memrl.replay.distributed import PrefetchSampler, ReplayShardError, start_shard
from memrl.replay.persist import CheckpointError, manifest_path
from memrl.replay.shard_writer import ShardWriter

log = logging.getLogger(__name__)


class ShardRestoreError(ReplayShardError):
    """A dead shard could not be restored from its checkpoint (e.g. the file is corrupt).

    The shard stays down (``report()[i]["failed"]``): restarting it empty would lose its
    checkpointed steps silently.
    """


@dataclass
class _ShardState:
    """The supervisor's bookkeeping of one shard."""

    index: int
    handle: Any
    directory: Path
    incarnation: int = 0
    restarts: int = 0
    steps_lost: int = 0
    checkpoints: int = 0
    checkpoint_steps: int | None = None
    checkpoint_writes: int | None = None
    # Write counter the current actor started from or last saved: acks above it are unsaved.
    base_writes: int = 0
    # (writes after the insert, steps stored) of acknowledged inserts above ``base_writes``.
    unsaved: list[tuple[int, int]] = field(default_factory=list)
    dead_base: dict[int, int] = field(default_factory=dict)  # incarnation -> its base at death
    pending: tuple[int, ray.ObjectRef] | None = None  # (incarnation, checkpoint ref)
    checkpoint_failures: int = 0
    failed: str | None = None

    @property
    def unsaved_steps(self) -> int:
        return sum(stored for _, stored in self.unsaved)


class ShardSupervisor:
    """Owns ``num_shards`` replay shard actors; checkpoints them and restores dead ones.

    checkpoint_dir: shard ``i`` checkpoints into ``checkpoint_dir/shard_<i>/``.
    checkpoint_every_steps: checkpoint a shard once this many acknowledged steps are unsaved.
    checkpoint_every_s: also checkpoint a shard with unsaved steps after this many seconds
        (None: steps only).
    resume: restore shards from checkpoints already in ``checkpoint_dir``. Without it an
        existing checkpoint there is an error (it would be mixed with this run's).
    num_cpus: per shard actor.

    Raises ValueError on a bad argument or, without ``resume``, an existing checkpoint;
    ShardRestoreError when ``resume`` finds a corrupt checkpoint.
    """

    def __init__(
        self,
        num_shards: int,
        config: ReplayConfig,
        state_spec: Mapping[str, StateSpec],
        checkpoint_dir: str | Path,
        *,
        checkpoint_every_steps: int = 10_000,
        checkpoint_every_s: float | None = None,
        resume: bool = False,
        num_cpus: float = 1.0,
    ) -> None:
        if not isinstance(num_shards, int) or num_shards <= 0:
            raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
        if not isinstance(checkpoint_every_steps, int) or checkpoint_every_steps <= 0:
            raise ValueError(
                f"checkpoint_every_steps must be a positive int, got {checkpoint_every_steps!r}"
            )
        if checkpoint_every_s is not None and not checkpoint_every_s > 0:
            raise ValueError(f"checkpoint_every_s must be > 0 or None, got {checkpoint_every_s}")
        self.num_shards = num_shards
        self.config = config
        self.state_spec = dict(state_spec)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoint_every_steps = checkpoint_every_steps
        self.checkpoint_every_s = checkpoint_every_s
        self.num_cpus = num_cpus
        self.restart_log: list[int] = []  # shard index of every restart, in order
        self._last_checkpoint_time = [time.monotonic()] * num_shards
        directories = [self.checkpoint_dir / f"shard_{i}" for i in range(num_shards)]
        if not resume:
            existing = [d for i, d in enumerate(directories) if manifest_path(d, i).exists()]
            if existing:
                raise ValueError(
                    f"checkpoint_dir already holds replay checkpoints ({existing[0]}); pass "
                    "resume=True to continue from them, or use an empty directory"
                )
        self._shards = [
            _ShardState(i, start_shard(i, config, state_spec, num_cpus=num_cpus), d)
            for i, d in enumerate(directories)
        ]
        if resume:
            for state in self._shards:
                if manifest_path(state.directory, state.index).exists():
                    try:
                        self._restore(state, state.handle)
                    except CheckpointError as err:
                        self.shutdown()
                        raise ShardRestoreError(state.index, num_shards, err) from err

    # --- handles ------------------------------------------------------------------------------
    def handles(self) -> list[Any]:
        """The current actor handle of every shard (changes when a shard is restarted)."""
        return [s.handle for s in self._shards]

    def current(self, shard: int) -> tuple[int, Any]:
        """``(incarnation, handle)`` of ``shard``; raises ShardRestoreError if it failed."""
        state = self._shards[shard]
        if state.failed is not None:
            raise ShardRestoreError(shard, self.num_shards, RuntimeError(state.failed))
        return state.incarnation, state.handle

    def writer(self, writer_id: int, max_in_flight: int = 4) -> ShardWriter:
        """A writer for shard ``writer_id % num_shards`` that survives shard restarts.

        At most ``max_in_flight`` unacknowledged chunks; ``add`` raises the shard's ValueError
        for a bad chunk, ShardRestoreError if the shard cannot be restored. After a restart,
        chunks that were in flight are re-sent (``steps_resent``) and each stream's first chunk
        to the new actor may follow a gap (the lost tail).
        """
        index = writer_id % self.num_shards
        incarnation, handle = self.current(index)

        def refresh() -> tuple[int, Any]:
            self.poll()
            return self.current(index)

        return ShardWriter(
            index,
            handle,
            incarnation,
            max_in_flight=max_in_flight,
            on_ack=functools.partial(self.note_ack, index),
            recover=functools.partial(self.recover, index),
            refresh=refresh,
        )

    def sampler(self, batch_size: int, **kwargs: Any) -> SupervisedSampler:
        """A prefetching sampler over all shards that survives shard restarts.

        kwargs: those of ``PrefetchSampler`` (prefetch, beta, prioritized, eta, seed).
        """
        return SupervisedSampler(self, batch_size, **kwargs)

    # --- failure handling ---------------------------------------------------------------------
    def recover(self, shard: int, incarnation: int, cause: BaseException | None = None):
        """Report that ``incarnation`` of ``shard`` failed; returns ``(incarnation, handle)``.

        If that incarnation is still the current one, the actor is killed, a new one started
        and restored from the shard's last checkpoint, and the loss recorded and logged; an
        older incarnation (someone else already recovered it) just gets the current handle.
        Raises ShardRestoreError when the checkpoint cannot be read (the shard stays down).
        """
        state = self._shards[shard]
        if state.failed is None and incarnation == state.incarnation:
            self._restart(state, cause)
        return self.current(shard)

    def call(self, shard: int, method: str, *args: Any) -> Any:
        """``method(*args)`` on ``shard``, restoring the shard and retrying once if it died."""
        for attempt in range(2):
            incarnation, handle = self.current(shard)
            try:
                return ray.get(getattr(handle, method).remote(*args))
            except RayActorError as err:
                if attempt:
                    raise ReplayShardError(shard, self.num_shards, err) from err
                self.recover(shard, incarnation, err)
        raise AssertionError("unreachable")

    def call_all(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every shard in parallel (restoring dead ones), in shard order."""
        issued = [(self.current(i), i) for i in range(self.num_shards)]
        refs = [getattr(h, method).remote(*args) for (_, h), _ in issued]
        out = []
        for ((incarnation, _), i), ref in zip(issued, refs, strict=True):
            try:
                out.append(ray.get(ref))
            except RayActorError as err:
                self.recover(i, incarnation, err)
                out.append(self.call(i, method, *args))
        return out

    def _restart(self, state: _ShardState, cause: BaseException | None) -> None:
        dead, old = state.incarnation, state.handle
        # An unreachable actor must not come back beside the new one; a dead one may raise.
        with contextlib.suppress(Exception):
            ray.kill(old, no_restart=True)
        state.pending = None  # its checkpoint (if any) died with it
        new = start_shard(state.index, self.config, self.state_spec, num_cpus=self.num_cpus)
        has_checkpoint = manifest_path(state.directory, state.index).exists()
        if state.checkpoint_writes is not None or has_checkpoint:
            try:
                self._restore(state, new)
            except (CheckpointError, RayActorError) as err:
                ray.kill(new, no_restart=True)
                state.failed = (
                    f"replay shard {state.index} died and its checkpoint in {state.directory} "
                    f"cannot be restored: {err}"
                )
                log.error("%s", state.failed)
                raise ShardRestoreError(state.index, self.num_shards, err) from err
        else:
            state.base_writes = 0  # never checkpointed: the new shard is empty
        lost = sum(stored for writes, stored in state.unsaved if writes > state.base_writes)
        state.steps_lost += lost
        state.dead_base[dead] = state.base_writes
        state.unsaved = []
        state.handle, state.incarnation = new, dead + 1
        state.restarts += 1
        self.restart_log.append(state.index)
        self._last_checkpoint_time[state.index] = time.monotonic()
        source = (
            f"its checkpoint of {state.checkpoint_steps} steps"
            if state.checkpoint_writes is not None
            else "nothing (no checkpoint yet): it restarts empty"
        )
        log.warning(
            "replay shard %d died (%s); restored from %s; %d steps lost (%d over all restarts)",
            state.index,
            _describe(cause),
            source,
            lost,
            state.steps_lost,
        )

    def _restore(self, state: _ShardState, handle: Any) -> None:
        """Restore ``handle`` from the shard's checkpoint; note what the checkpoint holds."""
        try:
            ray.get(handle.restore.remote(str(state.directory)))
        except CheckpointError as err:  # a RayTaskError subclassing the shard's CheckpointError
            raise CheckpointError(str(err).splitlines()[-1]) from err
        stats = ray.get(handle.stats.remote())
        state.base_writes = int(stats["writes"])
        state.checkpoint_steps = int(stats["steps"])
        # A checkpoint whose reply was lost can be newer than the one we heard of.
        state.checkpoint_writes = state.base_writes

    # --- acknowledgements and checkpoints -----------------------------------------------------
    def note_ack(self, shard: int, incarnation: int, stored: int, writes: int) -> None:
        """A writer's insert of ``stored`` steps into ``incarnation`` of ``shard`` was
        acknowledged; ``writes``: the shard's write counter right after it."""
        state = self._shards[shard]
        if incarnation == state.incarnation:
            if stored and writes > state.base_writes:
                state.unsaved.append((writes, stored))
            return
        if stored and writes > state.dead_base.get(incarnation, writes):
            # A late reply from a dead actor: those steps died with it.
            state.steps_lost += stored
            log.warning(
                "replay shard %d: a late acknowledgement adds %d lost steps (%d in all)",
                shard,
                stored,
                state.steps_lost,
            )

    def poll(self) -> None:
        """Collect finished checkpoints and start those that are due. Cheap; never blocks."""
        for state in self._shards:
            if state.pending is not None:
                incarnation, ref = state.pending
                ready, _ = ray.wait([ref], timeout=0)
                if ready:
                    self._finish_checkpoint(state, incarnation, ref)
        now = time.monotonic()
        for state in self._shards:
            if state.pending is not None or state.failed is not None:
                continue
            unsaved = state.unsaved_steps
            due = unsaved >= self.checkpoint_every_steps or (
                unsaved > 0
                and self.checkpoint_every_s is not None
                and now - self._last_checkpoint_time[state.index] >= self.checkpoint_every_s
            )
            if due:
                self._start_checkpoint(state)

    def wait_checkpoints(self) -> None:
        """Wait for the checkpoints that are running (starts none)."""
        for state in self._shards:
            if state.pending is not None:
                self._finish_checkpoint(state, *state.pending)

    def checkpoint(self, shards: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Checkpoint ``shards`` (default: all) now and wait; returns their checkpoint infos.

        A shard found dead is restored first (and then checkpointed).
        """
        indices = list(range(self.num_shards) if shards is None else shards)
        for i in indices:
            state = self._shards[i]
            if state.pending is not None:  # a running checkpoint finishes first
                self._finish_checkpoint(state, *state.pending)
            self._start_checkpoint(state)
        out = []
        for i in indices:
            state = self._shards[i]
            for _ in range(3):  # a shard found dead is restored, then saved again
                info = self._finish_checkpoint(state, *state.pending)
                if info is not None:
                    out.append(info)
                    break
                self._start_checkpoint(state)
            else:
                raise ReplayShardError(i, self.num_shards, RuntimeError("checkpoint keeps failing"))
        return out

    def _start_checkpoint(self, state: _ShardState) -> None:
        incarnation, handle = self.current(state.index)
        state.directory.mkdir(parents=True, exist_ok=True)
        state.pending = (incarnation, handle.checkpoint.remote(str(state.directory)))

    def _finish_checkpoint(
        self, state: _ShardState, incarnation: int, ref: ray.ObjectRef
    ) -> dict[str, Any] | None:
        state.pending = None
        self._last_checkpoint_time[state.index] = time.monotonic()
        try:
            info = ray.get(ref)
        except RayActorError as err:
            self.recover(state.index, incarnation, err)
            return None
        except (OSError, ValueError) as err:  # the previous checkpoint is still intact
            state.checkpoint_failures += 1
            log.error("replay shard %d: checkpoint failed: %s", state.index, err)
            return None
        if incarnation != state.incarnation:
            return None  # from an actor that died since; the restore counted what it holds
        state.checkpoints += 1
        state.checkpoint_steps = int(info["steps"])
        state.checkpoint_writes = state.base_writes = int(info["writes"])
        state.unsaved = [(w, n) for w, n in state.unsaved if w > state.base_writes]
        log.debug("replay shard %d checkpointed %d steps", state.index, info["steps"])
        return info

    # --- reporting ----------------------------------------------------------------------------
    def report(self, poll: bool = True) -> list[dict[str, Any]]:
        """Per shard: restarts, steps lost, last checkpoint, size (see the module docstring).

        Asks the live shards for their size (restoring one found dead); a failed shard
        reports size 0. poll: first collect finished checkpoints and start due ones.
        """
        if poll:
            self.poll()
        out = []
        for state in self._shards:
            size = 0
            if state.failed is None:
                with contextlib.suppress(ShardRestoreError):
                    size = int(self.call(state.index, "stats")["steps"])
            out.append(
                {
                    "shard": state.index,
                    "incarnation": state.incarnation,
                    "restarts": state.restarts,
                    "steps_lost": state.steps_lost,
                    "checkpoints": state.checkpoints,
                    "checkpoint_failures": state.checkpoint_failures,
                    "last_checkpoint_steps": state.checkpoint_steps,
                    "last_checkpoint_writes": state.checkpoint_writes,
                    "unsaved_steps": state.unsaved_steps,
                    "size": size,
                    "failed": state.failed,
                }
            )
        return out

    def metrics(self, prefix: str = "replay") -> dict[str, float]:
        """``report()`` flattened into floats for training metrics."""
        out: dict[str, float] = {}
        rows = self.report()
        for row in rows:
            for key, value in row.items():
                if key in ("shard", "failed") or value is None:
                    continue
                out[f"{prefix}/shard_{row['shard']}/{key}"] = float(value)
        out[f"{prefix}/restarts"] = float(sum(r["restarts"] for r in rows))
        out[f"{prefix}/steps_lost"] = float(sum(r["steps_lost"] for r in rows))
        out[f"{prefix}/size"] = float(sum(r["size"] for r in rows))
        out[f"{prefix}/failed_shards"] = float(sum(r["failed"] is not None for r in rows))
        return out

    def counters(self) -> dict[str, int]:
        """Totals over the shards without asking them anything: ``restarts``, ``steps_lost``,
        ``checkpoints``, ``unsaved_steps``, ``failed_shards``."""
        return {
            "restarts": sum(s.restarts for s in self._shards),
            "steps_lost": sum(s.steps_lost for s in self._shards),
            "checkpoints": sum(s.checkpoints for s in self._shards),
            "unsaved_steps": sum(s.unsaved_steps for s in self._shards),
            "failed_shards": sum(s.failed is not None for s in self._shards),
        }

    def shutdown(self) -> None:
        """Kill every shard actor (checkpoints on disk stay)."""
        for state in self._shards:
            ray.kill(state.handle, no_restart=True)


def _describe(cause: BaseException | None) -> str:
    if cause is None:
        return "reported dead"
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text}"[:200]


class SupervisedSampler(PrefetchSampler):
    """``PrefetchSampler`` over a supervisor's shards that survives shard restarts.

    A part of a round the dead actor did not answer is re-issued to the restored actor (or,
    if it has no valid start yet, to the other shards). Priority updates for sequences from an
    actor that has died since are dropped and counted in ``updates_dropped``.
    """

    def __init__(self, supervisor: ShardSupervisor, batch_size: int, **kwargs: Any) -> None:
        super().__init__(supervisor.handles(), batch_size, **kwargs)
        self.supervisor = supervisor
        # Rounds hold (shard, count, incarnation, ref); updates (shard, incarnation, ref).
        self._rounds: collections.deque = collections.deque()
        self._updates: collections.deque = collections.deque()
        self.updates_dropped = 0
        self.requests_reissued = 0

    def refresh(self) -> None:
        for i, stats in enumerate(self.supervisor.call_all("stats")):
            self._note_stats(i, stats)

    def _issue(self, n: int, exclude: frozenset[int] = frozenset()) -> list[tuple]:
        mass = self._mass.copy()
        mass[list(exclude)] = 0.0
        if mass.sum() <= 0:
            self.refresh()
            mass = self._mass.copy()
            mass[list(exclude)] = 0.0
            if mass.sum() <= 0:
                raise ValueError("replay has no valid sequence start in any shard yet")
        counts = self._rng.multinomial(n, mass / mass.sum())
        parts = []
        for i, k in enumerate(counts):
            if k > 0:
                incarnation, handle = self.supervisor.current(i)
                parts.append((i, int(k), incarnation, handle.sample.remote(int(k))))
        return parts

    def _launch(self) -> None:
        self._rounds.append(self._issue(self.batch_size))

    def next(self) -> SequenceBatch:
        """The next batch; a shard that died is restored and its part re-issued.

        Raises ShardRestoreError if a shard cannot be restored, ValueError when nothing is
        sampleable.
        """
        self.supervisor.poll()
        while len(self._rounds) < self.prefetch:
            self._launch()
        todo = list(self._rounds.popleft())
        self._launch()
        began = time.perf_counter()
        parts: list[tuple[int, int, SequenceBatch]] = []
        while todo:
            shard, n, incarnation, ref = todo.pop(0)
            try:
                part = ray.get(ref)
            except RayActorError as err:
                self.supervisor.recover(shard, incarnation, err)
                self._note_stats(shard, self.supervisor.call(shard, "stats"))
                self.requests_reissued += 1
                # The restored shard takes its share again if it can; else the others do.
                exclude = frozenset() if self._mass[shard] > 0 else frozenset({shard})
                if exclude:
                    todo.extend(self._issue(n, exclude))
                else:
                    inc, handle = self.supervisor.current(shard)
                    todo.append((shard, n, inc, handle.sample.remote(n)))
                continue
            parts.append((shard, incarnation, part))
            self._note_stats(shard, part.info)
        self.wait_s += time.perf_counter() - began
        batch = self._merge([p for _, _, p in parts])
        # Which actor each row came from, so that updates skip actors that died since.
        batch._incarnation = np.concatenate(  # type: ignore[attr-defined]
            [np.full(len(p), inc, dtype=np.int64) for _, inc, p in parts]
        )
        return batch

    def update_priorities(
        self,
        batch: SequenceBatch,
        td_abs: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        priority: np.ndarray | None = None,
    ) -> None:
        priority = self._batch_priority(batch, td_abs, mask, priority)
        incarnation = getattr(batch, "_incarnation", None)
        for shard in np.unique(batch.shard):
            shard = int(shard)
            current, handle = self.supervisor.current(shard)
            rows = batch.shard == shard
            if incarnation is not None:
                stale = rows & (incarnation != current)
                self.updates_dropped += int(stale.sum())
                rows &= ~stale
            if not rows.any():
                continue
            ref = handle.update_priorities.remote(
                batch.item_id[rows], batch.generation[rows], priority[rows]
            )
            self._updates.append((shard, current, ref, int(rows.sum())))
        while len(self._updates) > 4 * self.supervisor.num_shards:
            self._settle_update()

    def _settle_update(self) -> None:
        shard, incarnation, ref, rows = self._updates.popleft()
        try:
            ray.get(ref)
        except RayActorError as err:
            self.updates_dropped += rows  # the update died with the actor
            self.supervisor.recover(shard, incarnation, err)

    def close(self) -> None:
        while self._updates:
            self._settle_update()
        self._rounds.clear()

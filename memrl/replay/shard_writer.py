"""The one writer of the acknowledged shard protocol, for the driver and for env runners.

A :class:`ShardWriter` sends chunks to one shard actor ``(incarnation, handle)`` with
``add_chunk_acked`` and keeps at most ``max_in_flight`` unacknowledged (backpressure). Every
acknowledgement ``(incarnation, steps stored, write counter)`` goes to ``on_ack`` (default: kept
for :meth:`drain_acks`; an env runner returns them to the driver, which hands them to
``ShardSupervisor.note_ack``). When a write hits a dead actor the writer does not raise: every
chunk that actor did not acknowledge is kept, in order, in a bounded buffer (as are chunks added
while the shard is down) and re-sent to the restored actor. Who restores it:

* in the driver, ``recover(dead_incarnation, cause) -> (incarnation, handle)`` (the supervisor
  restarts the shard at once; ``refresh() -> (incarnation, handle)`` lets the writer notice a
  restart someone else did);
* in an env runner, nobody here: the driver later hands over the new actor with
  :meth:`set_shard`. Only a buffer overflow drops chunks (oldest first), counted in
  ``dropped_steps`` and logged.

Gaps: a restored actor holds the shard as of its last checkpoint, so each stream's first chunk
to it (and every re-sent chunk) is sent with ``allow_gap``; no sequence is sampled across it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from memrl.replay.batch import Chunk

log = logging.getLogger(__name__)

Ack = tuple[int, int, int]  # (incarnation, steps stored, shard write counter after it)


class ShardWriter:
    """Writes chunks to one shard and survives the actor's death (see the module docstring).

    max_in_flight: unacknowledged chunks before ``add`` blocks; max_buffered_chunks: chunks kept
    while the shard is down before the oldest are dropped. ``add`` still raises the shard's
    ValueError for a bad chunk, and whatever ``recover`` raises (ShardRestoreError).
    """

    def __init__(
        self,
        shard_index: int,
        handle: Any,
        incarnation: int,
        *,
        max_in_flight: int = 4,
        max_buffered_chunks: int = 4096,
        on_ack: Callable[[int, int, int], None] | None = None,
        recover: Callable[[int, BaseException | None], tuple[int, Any]] | None = None,
        refresh: Callable[[], tuple[int, Any]] | None = None,
    ) -> None:
        if max_buffered_chunks <= 0:
            raise ValueError(f"max_buffered_chunks must be > 0, got {max_buffered_chunks}")
        self.shard_index = shard_index
        self.max_in_flight = max_in_flight
        self.max_buffered_chunks = max_buffered_chunks
        self._on_ack, self._recover, self._refresh = on_ack, recover, refresh
        self._handle, self.incarnation = handle, incarnation
        self._pending: collections.deque[tuple[Chunk, ray.ObjectRef, int]] = collections.deque()
        self._buffer: collections.deque[Chunk] = collections.deque()
        self._synced: set[int] = set()  # streams sent to the current actor
        self._acks: list[Ack] = []
        self._cause: BaseException | None = None
        self.dead: int | None = None  # incarnation found dead, until a new one replaces it
        self.steps_stored = 0  # acknowledged steps (some may be lost later with the actor)
        self.steps_resent = 0
        self.dropped_steps = 0  # steps of chunks dropped from a full buffer

    @property
    def buffered_chunks(self) -> int:
        """Chunks waiting for a restored shard."""
        return len(self._buffer)

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Send ``chunks`` (or buffer them while the shard is down)."""
        self._follow_refresh()
        for chunk in chunks:
            if self.dead is not None:
                self._keep(chunk)
                continue
            self._send(chunk, resent=False)
            while len(self._pending) > self.max_in_flight:
                self._collect()
                self._recover_if_dead()

    def flush(self) -> None:
        """Wait for every sent chunk's acknowledgement (a dead actor's go to the buffer, and to
        the restored actor where this writer can restore it)."""
        while self._pending:
            self._collect()
            self._recover_if_dead()
        self._follow_refresh()

    def drain_acks(self) -> list[Ack]:
        """Acknowledgements since the last call (those not handed to ``on_ack``)."""
        acks, self._acks = self._acks, []
        return acks

    def set_shard(self, handle: Any, incarnation: int) -> None:
        """The current actor of the shard; on a new incarnation, switch to it and re-send what
        the old one did not acknowledge (call ``flush`` to wait for it)."""
        if incarnation == self.incarnation:
            return
        if incarnation < self.incarnation:
            raise ValueError(
                f"shard {self.shard_index}: incarnation {incarnation} is older than the "
                f"current {self.incarnation}"
            )
        self._settle()  # replies that arrived count, the rest is kept
        self._switch(handle, incarnation)

    # --- internals ------------------------------------------------------------------------------
    def _follow_refresh(self) -> None:
        if self._refresh is not None:
            incarnation, handle = self._refresh()
            self.set_shard(handle, incarnation)

    def _recover_if_dead(self) -> None:
        if self.dead is not None and self._recover is not None:
            incarnation, handle = self._recover(self.dead, self._cause)
            self._switch(handle, incarnation)

    def _switch(self, handle: Any, incarnation: int) -> None:
        self._handle, self.incarnation = handle, incarnation
        self.dead, self._synced, self._cause = None, set(), None
        resend, self._buffer = list(self._buffer), collections.deque()
        for chunk in resend:
            self._send(chunk, resent=True)
            self.steps_resent += len(chunk)
            while len(self._pending) > self.max_in_flight:
                self._collect()
        if resend:
            log.info(
                "replay shard %d (incarnation %d): re-sent %d chunks the old actor did not "
                "acknowledge",
                self.shard_index,
                incarnation,
                len(resend),
            )

    def _settle(self) -> None:
        while self._pending:
            self._collect()

    def _send(self, chunk: Chunk, resent: bool) -> None:
        # allow_gap only where a gap is expected: re-sent chunks and each stream's first chunk
        # to a restored actor; anywhere else a gap is a lost chunk and stays an error.
        allow_gap = resent or (self.incarnation > 0 and chunk.stream not in self._synced)
        self._synced.add(chunk.stream)
        ref = self._handle.add_chunk_acked.remote(chunk, allow_gap)
        self._pending.append((chunk, ref, self.incarnation))

    def _collect(self) -> None:
        chunk, ref, incarnation = self._pending.popleft()
        try:
            stored, writes = ray.get(ref)
        except RayActorError as err:
            if self.dead is None:
                log.warning(
                    "replay shard %d (incarnation %d) is dead (%s); keeping its chunks until "
                    "it is restored",
                    self.shard_index,
                    incarnation,
                    str(err).splitlines()[0] if str(err) else type(err).__name__,
                )
                self._cause = err
            self.dead = incarnation
            self._keep(chunk)
            # Settle the rest now, so that the buffer keeps the chunks in sending order.
            self._settle()
            return
        self.steps_stored += stored
        if self._on_ack is not None:
            self._on_ack(incarnation, int(stored), int(writes))
        else:
            self._acks.append((incarnation, int(stored), int(writes)))

    def _keep(self, chunk: Chunk) -> None:
        self._buffer.append(chunk)
        if len(self._buffer) > self.max_buffered_chunks:
            old = self._buffer.popleft()
            self.dropped_steps += len(old)
            log.warning(
                "replay shard %d is down and %d chunks are waiting: dropped the oldest "
                "(%d steps; %d dropped so far)",
                self.shard_index,
                self.max_buffered_chunks,
                len(old),
                self.dropped_steps,
            )

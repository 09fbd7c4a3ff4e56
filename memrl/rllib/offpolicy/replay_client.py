"""An env runner's writer to its replay shard that survives the shard's death.

The shard actors belong to the driver's :class:`memrl.replay.supervisor.ShardSupervisor`; env
runners live in other processes and write to the shards directly. :class:`ShardClient` is their
writer: like ``ReplayWriter`` it keeps at most ``max_in_flight`` unacknowledged chunks, and in
addition

* it records every acknowledgement ``(incarnation, steps stored, write counter)``; the env runner
  returns them to the driver, which hands them to ``ShardSupervisor.note_ack`` (the supervisor
  then knows exactly which steps a death of the shard loses, and when a checkpoint is due);
* when a write hits a dead actor it does not raise: every chunk the dead actor did not
  acknowledge is kept, in order, in a bounded buffer (as are chunks added while the shard is
  down) and re-sent once the driver hands over the restored actor (:meth:`set_shard`). Only a
  buffer overflow drops chunks (oldest first), counted in ``dropped_steps`` and logged.

Gaps: the restored actor holds the shard as of its last checkpoint, so each stream's first chunk
to it (and every re-sent chunk) is sent with ``allow_gap``; no sequence is sampled across the gap.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from memrl.replay.batch import Chunk

log = logging.getLogger(__name__)


class ShardClient:
    """Writes chunks to one shard ``(incarnation, handle)``; survives the actor's death.

    max_in_flight: unacknowledged chunks before ``add`` blocks (backpressure);
    max_buffered_chunks: chunks kept while the shard is down before the oldest are dropped.
    ``add`` still raises the shard's ValueError for a bad chunk.
    """

    def __init__(
        self,
        shard_index: int,
        handle: Any,
        incarnation: int,
        *,
        max_in_flight: int = 4,
        max_buffered_chunks: int = 4096,
    ) -> None:
        if max_buffered_chunks <= 0:
            raise ValueError(f"max_buffered_chunks must be > 0, got {max_buffered_chunks}")
        self.shard_index = shard_index
        self.max_in_flight = max_in_flight
        self.max_buffered_chunks = max_buffered_chunks
        self._handle, self.incarnation = handle, incarnation
        self._pending: collections.deque[tuple[Chunk, ray.ObjectRef, int]] = collections.deque()
        self._buffer: collections.deque[Chunk] = collections.deque()
        self._synced: set[int] = set()  # streams sent to the current actor
        self._acks: list[tuple[int, int, int]] = []  # (incarnation, stored, writes)
        self.dead: int | None = None  # incarnation found dead, until set_shard replaces it
        self.steps_stored = 0  # acknowledged steps (some may be lost later with the actor)
        self.steps_resent = 0
        self.dropped_steps = 0  # steps of chunks dropped from a full buffer

    @property
    def buffered_chunks(self) -> int:
        """Chunks waiting for a restored shard."""
        return len(self._buffer)

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Send ``chunks`` (or buffer them while the shard is down)."""
        for chunk in chunks:
            if self.dead is not None:
                self._keep(chunk)
                continue
            self._send(chunk, resent=False)
            while len(self._pending) > self.max_in_flight:
                self._collect()

    def flush(self) -> None:
        """Wait for every sent chunk's acknowledgement (a dead actor's go to the buffer)."""
        while self._pending:
            self._collect()

    def drain_acks(self) -> list[tuple[int, int, int]]:
        """Acknowledgements ``(incarnation, stored, writes)`` since the last call."""
        acks, self._acks = self._acks, []
        return acks

    def set_shard(self, handle: Any, incarnation: int) -> None:
        """The driver's current actor of the shard; on a new incarnation, switch to it and
        re-send what the old one did not acknowledge (call ``flush`` to wait for it)."""
        if incarnation == self.incarnation:
            return
        if incarnation < self.incarnation:
            raise ValueError(
                f"shard {self.shard_index}: incarnation {incarnation} is older than the "
                f"current {self.incarnation}"
            )
        self.flush()  # settles the old actor: replies that arrived count, the rest is kept
        if self.dead is None:  # the driver found it dead first: nothing may go to it anymore
            self.dead = self.incarnation
        self._handle, self.incarnation = handle, incarnation
        self.dead, self._synced = None, set()
        resend, self._buffer = list(self._buffer), collections.deque()
        for chunk in resend:
            self._send(chunk, resent=True)
            self.steps_resent += len(chunk)
            while len(self._pending) > self.max_in_flight:
                self._collect()
        if resend:
            log.info(
                "replay shard %d (incarnation %d): re-sent %d chunks kept while it was down",
                self.shard_index,
                incarnation,
                len(resend),
            )

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
                    "the driver restores it",
                    self.shard_index,
                    incarnation,
                    str(err).splitlines()[0] if str(err) else type(err).__name__,
                )
            self.dead = incarnation
            self._keep(chunk)
            # Settle the rest now, so that the buffer keeps the chunks in sending order.
            while self._pending:
                self._collect()
            return
        self.steps_stored += stored
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

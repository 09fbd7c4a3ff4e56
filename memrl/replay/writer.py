"""Cut a vector env's per-step records into fixed-length, overlapping chunks (R2D2 style)."""

from __future__ import annotations

import numpy as np

from memrl.replay.batch import Chunk
from memrl.replay.config import ChunkConfig


class ChunkWriter:
    """Buffers the steps of ``num_envs`` envs that step in lockstep and emits chunks.

    Each env is one stream with a random 63-bit id (a restarted writer gets new ids, so a shard
    never mistakes its steps for old ones). Once ``length`` steps are buffered a chunk of the last
    ``length`` steps is emitted per env, then every ``length - overlap`` steps after that.
    """

    def __init__(
        self,
        num_envs: int,
        chunk: ChunkConfig | None = None,
        streams: list[int] | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs <= 0:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.chunk = chunk or ChunkConfig()
        if streams is None:
            streams = np.random.default_rng(seed).integers(0, 2**63 - 1, size=num_envs).tolist()
        if len(streams) != num_envs or len(set(streams)) != num_envs:
            raise ValueError(f"streams must be {num_envs} distinct ids, got {streams!r}")
        self.streams = [int(s) for s in streams]
        self._buffer: dict[str, np.ndarray] | None = None
        self._filled = 0  # steps in the buffer
        self._unsent = 0  # of which not yet in an emitted chunk
        self.steps = 0  # stream step of the next record (the same for every env)

    def add(self, record: dict[str, np.ndarray]) -> list[Chunk]:
        """Buffer one step of every env; returns the chunks completed by it (maybe none).

        record: ``{field: [num_envs, ...]}`` with the fields of ``Chunk.data``. Raises
        ValueError on a wrong batch size or a field set other than the first record's.
        """
        if self._buffer is None:
            self._buffer = {
                k: np.zeros(
                    (self.num_envs, self.chunk.length, *np.shape(v)[1:]), dtype=np.asarray(v).dtype
                )
                for k, v in record.items()
            }
        if set(record) != set(self._buffer):
            raise ValueError(f"record fields must be {sorted(self._buffer)}, got {sorted(record)}")
        for key, value in record.items():
            value = np.asarray(value)
            if value.shape[0] != self.num_envs:
                raise ValueError(
                    f"record field {key!r} has batch {value.shape[0]}, expected {self.num_envs}"
                )
            self._buffer[key][:, self._filled] = value
        self._filled += 1
        self._unsent += 1
        self.steps += 1
        if self._filled == self.chunk.length:
            return self._emit()
        return []

    def flush(self) -> list[Chunk]:
        """Emit the buffered steps not sent yet (e.g. before the writer stops)."""
        if self._unsent == 0:
            return []
        return self._emit()

    def _emit(self) -> list[Chunk]:
        assert self._buffer is not None
        start = self.steps - self._filled
        chunks = [
            Chunk(
                stream=stream,
                start_step=start,
                data={k: v[env, : self._filled].copy() for k, v in self._buffer.items()},
            )
            for env, stream in enumerate(self.streams)
        ]
        # Keep the overlap at the head of the buffer for the next chunk.
        keep = min(self.chunk.overlap, self._filled)
        for value in self._buffer.values():
            value[:, :keep] = value[:, self._filled - keep : self._filled].copy()
        self._filled = keep
        self._unsent = 0
        return chunks

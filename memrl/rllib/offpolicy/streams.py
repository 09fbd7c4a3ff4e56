"""RLlib episode fragments -> replay streams -> fixed-length chunks.

A replay *stream* is the step sequence of one env of one env-runner incarnation: episode after
episode, no gaps, starting with an episode's first step (the shard knows no state before it).
RLlib hands an env runner's steps back as episode *fragments*: a finished episode, or the part of
an ongoing one sampled so far (``SingleAgentEpisode.cut`` continues it under the same ``id_``
with ``t_started`` = steps already returned). Each env index of the vector env is one stream:

* a fragment with ``t_started == 0`` starts a new episode in its env's stream;
* a fragment continuing the episode the stream saw last (same ``id_``, ``t_started`` equal to the
  steps seen so far) is appended;
* anything else (a continuation whose beginning this writer never saw, or one after lost steps)
  cannot be attached without a gap and is dropped (counted in ``dropped_steps``); the stream
  resumes at the next episode start, which the shard reads as the end of the unfinished episode.

Per-step records follow :class:`memrl.replay.Chunk`: ``obs`` is the observation the action was
taken at (the final observation of an episode is not stored), ``terminated``/``truncated`` are
set on an episode's last step, ``first`` on its first, and a state field holds a carry's value
*before* the step or a window's slice produced *by* the step. The episode stores (under
``STATE_OUT``, see :mod:`memrl.rllib.state`) each carry's value *after* a step, so the carry
before step ``t`` is the record of step ``t - 1`` (the initial state at ``t == 0``); a fragment
that continues an episode reads it from its lookback buffer (``episode_lookback_horizon >= 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from memrl.models.base import StateSpec
from memrl.replay import Chunk, ChunkConfig, ChunkWriter
from memrl.rllib.connectors import episode_records


def episode_step_records(
    episode: SingleAgentEpisode,
    state_spec: Mapping[str, StateSpec],
    initial_state: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The replay records ``{field: [n, ...]}`` of an episode fragment's ``n`` steps.

    Raises ValueError for an empty fragment, or a continued fragment without the record of the
    step before it (its lookback is empty: set ``episode_lookback_horizon >= 1``).
    """
    n = len(episode)
    if n == 0:
        raise ValueError("episode fragment has no steps")
    obs = np.asarray(episode.get_observations(slice(0, n)))
    out: dict[str, np.ndarray] = {
        "obs": obs,
        "action": np.asarray(episode.get_actions(slice(0, n))),
        "reward": np.asarray(episode.get_rewards(slice(0, n)), dtype=np.float32),
        "terminated": np.zeros(n, dtype=bool),
        "truncated": np.zeros(n, dtype=bool),
        "first": np.zeros(n, dtype=bool),
    }
    out["terminated"][-1] = episode.is_terminated
    out["truncated"][-1] = episode.is_truncated
    out["first"][0] = episode.t_started == 0
    if not state_spec:
        return out
    records, lookback = episode_records(episode)
    for key, spec in state_spec.items():
        rec = np.asarray(records[key])  # [lookback + n, *slice_shape]
        if spec.kind == "window":
            out[key] = rec[lookback : lookback + n]
            continue
        if episode.t_started == 0:
            before = np.asarray(initial_state[key])[None]
        elif lookback >= 1:
            before = rec[lookback - 1 : lookback]
        else:
            raise ValueError(
                f"episode {episode.id_} continues at step {episode.t_started} but holds no "
                f"record of the step before it (state field {key!r}); set "
                "episode_lookback_horizon >= 1"
            )
        out[key] = np.concatenate([before, rec[lookback : lookback + n - 1]]).astype(
            rec.dtype, copy=False
        )
    return out


@dataclass
class _Lane:
    writer: ChunkWriter
    episode_id: str | None = None  # episode the stream saw last, while it is unfinished
    next_t: int = 0  # its step the next fragment must start at
    steps: int = 0  # steps written to this stream


class EpisodeStreams:
    """Turns one env runner's episode fragments into chunks, one stream per env index.

    num_envs: envs of the vector env; chunk: chunk length/overlap; state_spec / initial_state:
    the module's flat ``state_spec()`` and unbatched ``get_initial_state()``; seed: seeds the
    random 63-bit stream ids (None: OS entropy; a restarted writer must not reuse ids).
    """

    def __init__(
        self,
        num_envs: int,
        chunk: ChunkConfig,
        state_spec: Mapping[str, StateSpec],
        initial_state: Mapping[str, np.ndarray],
        seed: int | None = None,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs <= 0:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        ids = np.random.default_rng(seed).choice(2**62, size=num_envs, replace=False)
        self.chunk = chunk
        self.state_spec = dict(state_spec)
        self.initial_state = dict(initial_state)
        self.lanes = [_Lane(ChunkWriter(1, chunk, streams=[int(i)])) for i in ids]
        self.dropped_steps = 0

    @property
    def stream_ids(self) -> list[int]:
        """Stream id of each env index."""
        return [lane.writer.streams[0] for lane in self.lanes]

    def add(self, env_index: int, episode: SingleAgentEpisode) -> list[Chunk]:
        """Append a fragment of env ``env_index`` (fragments of one env in sampling order).

        Returns the chunks it completed (maybe none). A fragment that cannot be attached without
        a gap is dropped (see the module docstring).
        """
        lane = self.lanes[env_index]
        n = len(episode)
        if n == 0:
            return []
        continues = episode.id_ == lane.episode_id and episode.t_started == lane.next_t
        if episode.t_started != 0 and not continues:
            self.dropped_steps += n
            lane.episode_id = None
            return []
        records = episode_step_records(episode, self.state_spec, self.initial_state)
        chunks: list[Chunk] = []
        for t in range(n):
            chunks += lane.writer.add({k: v[t : t + 1] for k, v in records.items()})
        lane.steps += n
        lane.episode_id = None if episode.is_done else episode.id_
        lane.next_t = episode.t_started + n
        return chunks

    def flush(self) -> list[Chunk]:
        """Chunks of the steps buffered but not yet sent, for every stream.

        Call at the end of each sampling round so that every sampled step reaches the replay;
        the next chunk of a stream then overlaps the flushed one (the shard skips what it has).
        """
        chunks: list[Chunk] = []
        for lane in self.lanes:
            chunks += lane.writer.flush()
        return chunks

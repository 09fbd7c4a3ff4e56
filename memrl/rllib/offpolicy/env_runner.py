"""An env runner that writes what it samples straight into the replay shards (Ape-X style).

Data never passes through the driver: ``sample_to_replay`` samples with the module's exploration
forward, cuts the episode fragments into chunks (:class:`EpisodeStreams`) and sends them to shard
``worker_index % num_shards`` (:class:`memrl.replay.shard_writer.ShardWriter`, which
survives the shard's death); only metrics and the shard's acknowledgements return to the
algorithm.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from memrl.replay import ChunkConfig

log = logging.getLogger(__name__)


def actor_indices(worker_index: int, num_env_runners: int, num_envs: int) -> tuple[np.ndarray, int]:
    """Global actor ids of one env runner's envs and the number of actors in the algorithm.

    Every env of every sampling env runner is one actor (Ape-X numbering): remote runner ``w``
    (1-based) owns ids ``(w - 1) * num_envs ...``; with no remote runners the local one (index 0)
    samples and owns ``0 .. num_envs - 1``.
    """
    if num_env_runners == 0:
        return np.arange(num_envs), num_envs
    first = max(worker_index - 1, 0) * num_envs
    return np.arange(first, first + num_envs), num_env_runners * num_envs


class OffPolicyEnvRunner(SingleAgentEnvRunner):
    """``SingleAgentEnvRunner`` that remembers which env each episode runs in and writes replay.

    If the module has ``configure_actors(actor_ids: np.ndarray, num_actors: int)``, it is called
    once the module is built, so that per-actor exploration (e.g. Ape-X epsilons) can depend on
    the global actor id of each env (row ``i`` of an exploration batch is env ``i``).
    """

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        self._episode_env: dict[str, int] = {}
        super().__init__(config=config, **kwargs)
        self._streams = None
        self._writer = None
        ids, total = actor_indices(self.worker_index, config.num_env_runners, self.num_envs)
        self.actor_ids, self.num_actors = ids, total
        configure = getattr(self.module, "configure_actors", None)
        # The driver's local runner has no envs beside remote runners: it never explores.
        if configure is not None and self.num_envs > 0 and total > 0:
            configure(ids, total)

    def _new_episode(self, env_index, episodes=None):  # noqa: ANN001 (RLlib's signature)
        super()._new_episode(env_index, episodes)
        episodes = episodes if episodes is not None else self._ongoing_episodes
        self._episode_env[episodes[env_index].id_] = env_index

    def sample_to_replay(
        self,
        shards: list,
        num_timesteps: int,
        chunk: ChunkConfig,
        incarnations: list[int] | None = None,
    ) -> dict[str, Any]:
        """Sample ``num_timesteps`` env steps (all envs together) and write them to replay.

        shards / incarnations: the driver's current actor of every shard and its incarnation
        (``ShardSupervisor.current``; None: all 0). A write that finds the shard dead does not
        raise: the chunks are kept until the driver hands over the restored actor (see
        :class:`ShardWriter`).

        Returns ``{"env_steps": int, "stored": int (steps new to the shard), "dropped": int,
        "metrics": <this runner's reduced metrics>}`` plus the writer's report (see
        :meth:`_writer_report`).
        """
        from memrl.rllib.offpolicy.streams import EpisodeStreams

        if self._streams is None:
            spec = self.module.state_spec() if hasattr(self.module, "state_spec") else {}
            # Stream ids from OS entropy even in seeded runs: a resumed or restarted runner must
            # not reuse the ids of streams a restored shard holds (their steps would be taken
            # for overlap and skipped). Ids only name lanes; they do not change what is sampled.
            self._streams = EpisodeStreams(
                self.num_envs, chunk, spec, self.module.get_initial_state(), seed=None
            )
        before = self._writer.steps_stored if self._writer is not None else 0
        self.set_replay_shards(shards, incarnations, flush=False)
        episodes = self.sample(num_timesteps=num_timesteps)
        chunks = []
        for episode in episodes:
            env_index = self._episode_env.get(episode.id_)
            if env_index is None:  # pragma: no cover - every episode starts in _new_episode
                raise RuntimeError(f"episode {episode.id_} was not created by this env runner")
            chunks += self._streams.add(env_index, episode)
            if episode.is_done:
                del self._episode_env[episode.id_]
        chunks += self._streams.flush()
        self._writer.add(chunks)
        self._writer.flush()
        return {
            "env_steps": int(sum(len(e) for e in episodes)),
            "stored": self._writer.steps_stored - before,
            "dropped": self._streams.dropped_steps,
            "metrics": self.get_metrics(),
            **self._writer_report(),
        }

    def set_replay_shards(
        self, shards: list, incarnations: list[int] | None = None, flush: bool = True
    ) -> dict[str, Any]:
        """Write to ``shards`` (the driver's handle table) from now on.

        When this runner's shard has a new incarnation (the driver restored it), the chunks the
        dead actor did not acknowledge are re-sent to it (and, with ``flush``, acknowledged
        before returning). Returns :meth:`_writer_report`.
        """
        from memrl.replay.shard_writer import ShardWriter

        incarnations = list(incarnations) if incarnations is not None else [0] * len(shards)
        index = self.worker_index % len(shards)
        if self._writer is None or self._writer.shard_index != index:
            self._writer = ShardWriter(index, shards[index], incarnations[index])
        else:
            self._writer.set_shard(shards[index], incarnations[index])
        if flush:
            self._writer.flush()
        return self._writer_report()

    def _writer_report(self) -> dict[str, Any]:
        """``{"shard": index, "acks": [(incarnation, stored, writes), ...] since the last
        report, "dead": incarnation found dead or None, "buffered": chunks waiting,
        "unsent_dropped": steps dropped from a full buffer (lifetime)}``."""
        writer = self._writer
        return {
            "shard": writer.shard_index,
            "acks": writer.drain_acks(),
            "dead": writer.dead,
            "buffered": writer.buffered_chunks,
            "unsent_dropped": writer.dropped_steps,
        }

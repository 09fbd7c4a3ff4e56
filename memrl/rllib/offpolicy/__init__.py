"""Recurrent off-policy plumbing on RLlib's new API stack, shared by R2D2 and TD3.

Data flows one way, env runners -> replay shards -> learner; weights flow back::

    OffPolicyEnvRunner.sample_to_replay      (explore with the module; one stream per env)
        episodes -> EpisodeStreams -> Chunk (seq_len steps, overlap chunk_overlap)
        -> ShardWriter -> shard worker_index % num_shards   (acks back to the driver)
    OffPolicyLearner.train_from_replay(n)    (PrefetchSampler: burn_in + T steps + stored state)
        SequenceBatch -> SequenceTensors -> learn_on_batch(batch) -> LearnOutput
        -> priorities back to the shards
    Algorithm.training_step                  (sample; learn once min_replay_steps are stored;
                                              sync inference weights to the env runners)

API for an algorithm built on it:

* ``class MyConfig(OffPolicyConfig)``: ``get_default_rl_module_spec()`` (a stateful module with
  memrl's compact per-step state: ``state_spec()`` flat ``{key: StateSpec}``, the compact-state
  connectors of :mod:`memrl.rllib.connectors`; see :func:`compact_state_env_runner_kwargs`),
  ``get_default_learner_class()`` -> a subclass of :class:`OffPolicyLearner`, and its own
  ``training(...)`` keys. Shared keys: ``config.offpolicy(replay={...}, sequence_batch_size=,
  min_replay_steps=, updates_per_iteration=)``; replay keys: capacity, burn_in, seq_len,
  state_storage, prioritized, alpha, beta, eta, num_shards, chunk_overlap, prefetch,
  checkpoint_every, rollout_fragment_length, checkpoint_every_steps, checkpoint_dir.
* ``class MyAlgo(OffPolicyAlgorithm)`` with ``get_default_config()`` returning ``MyConfig``.
* ``class MyLearner(OffPolicyLearner)``:

  - ``configure_optimizers_for_module(module_id, config)``: register optimizers (RLlib API,
    e.g. ``"actor"`` and ``"critic"``); they are checkpointed with the learner;
  - ``learn_on_batch(batch: SequenceTensors) -> LearnOutput``: one update. ``batch`` holds
    ``[B, burn_in + T, ...]`` tensors on the learner device, the stored state at step 0, ``first``
    (reset flags), ``mask`` (steps of the start's episode; after it: padding) and importance
    ``weights [B]``. Return ``LearnOutput(metrics={...}, td_abs=[B, T], td_mask=[B, T])`` or
    ``LearnOutput(metrics, priority=[B])``; metrics appear as ``learners/default_policy/<key>``.
  - helpers: ``self.rl_module`` (the unwrapped module), ``self.optimizer_step(loss, name,
    grad_clip)``, ``self.updates`` (lifetime update count, checkpointed).

* Per-actor exploration: a module method ``configure_actors(actor_ids: np.ndarray, num_actors:
  int)`` is called in every env runner (row ``i`` of an exploration batch is env ``i``, whose
  global Ape-X actor id is ``actor_ids[i]``).

Metrics: ``env_runners/*`` as PPO's (episode return/length, env steps), ``learners/default_policy/
*`` (the hook's, ``num_updates``, ``learner_idle_fraction``, ``replay_wait_s``), ``replay/*``
(steps, valid_starts, streams, dropped_steps; fault tolerance: restarts, steps_lost, checkpoints,
unsaved_steps, failed_shards, unsent_dropped_steps). ``save_to_path``/``restore_from_path``
include the replay (``<checkpoint>/replay``). The shards belong to a ``ShardSupervisor``: a dead
shard actor is restored from its last Arrow checkpoint and training continues (see
:mod:`memrl.rllib.offpolicy.algorithm`).
"""

from memrl.rllib.connectors import compact_state_env_runner_kwargs
from memrl.rllib.offpolicy.algorithm import (
    REPLAY_DIR,
    OffPolicyAlgorithm,
    OffPolicyConfig,
    space_layout,
)
from memrl.rllib.offpolicy.env_runner import OffPolicyEnvRunner, actor_indices
from memrl.rllib.offpolicy.learner import LearnOutput, OffPolicyLearner, SequenceTensors
from memrl.rllib.offpolicy.streams import EpisodeStreams, episode_step_records

__all__ = [
    "REPLAY_DIR",
    "EpisodeStreams",
    "LearnOutput",
    "OffPolicyAlgorithm",
    "OffPolicyConfig",
    "OffPolicyEnvRunner",
    "OffPolicyLearner",
    "SequenceTensors",
    "actor_indices",
    "compact_state_env_runner_kwargs",
    "episode_step_records",
    "space_layout",
]

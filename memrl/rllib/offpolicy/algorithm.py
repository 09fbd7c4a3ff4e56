"""RLlib Algorithm base of recurrent off-policy learning over memrl's sharded sequence replay.

One ``training_step``:

1. every sampling env runner (:class:`OffPolicyEnvRunner`) samples ``rollout_fragment_length``
   steps per env with the module's exploration forward and writes chunks to its replay shard;
2. once the replay holds ``min_replay_steps`` steps, each learner runs ``updates_per_iteration``
   updates on prefetched sequences (:meth:`OffPolicyLearner.train_from_replay`);
3. the learners' weights (inference part) go to the env runners.

Saving the algorithm (``save_to_path``) also checkpoints the replay shards into
``<path>/replay`` (every ``checkpoint_every``-th save); ``restore_from_path`` loads them back, so
a resumed run continues with its data.

Fault tolerance: the shard actors belong to a :class:`memrl.replay.supervisor.ShardSupervisor`
that checkpoints each shard to Arrow (in a fresh ``run_*`` folder under
``replay.checkpoint_dir``, default ``<logdir>/replay_shards``, removed when the algorithm stops)
once ``replay.checkpoint_every_steps`` acknowledged steps are unsaved in it. A
shard actor that dies is restored from its last checkpoint: the env runners' writers
(:class:`memrl.replay.shard_writer.ShardWriter`) keep what the dead actor did not
acknowledge and re-send it once the driver pushes them the new handle table; the learner in the
driver samples through the supervisor's sampler. Exactly the steps the dead actor acknowledged
after its last checkpoint are lost; they are logged (a warning naming the shard) and reported as
``replay/steps_lost`` with ``replay/restarts`` in every iteration's result.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from memrl.config import ReplaySection
from memrl.replay import ChunkConfig, ReplayConfig
from memrl.rllib.offpolicy.env_runner import OffPolicyEnvRunner

log = logging.getLogger(__name__)

_NEVER = 2**62  # checkpoint_every_steps 0: no step count is ever reached

REPLAY_DIR = "replay"
"""Folder of the replay shards inside an algorithm checkpoint."""


def space_layout(space: Any, what: str) -> tuple[tuple[int, ...], str]:
    """(shape, numpy dtype name) a replay stores for one element of ``space``.

    Raises ValueError for spaces the replay cannot hold (Dict/Tuple), naming ``what``.
    """
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        raise ValueError(
            f"{what} space {space} is not supported by the sequence replay: it stores one array "
            "per step (Box, Discrete, MultiBinary, MultiDiscrete)"
        )
    return tuple(int(d) for d in space.shape), np.dtype(space.dtype).name


class OffPolicyConfig(AlgorithmConfig):
    """Settings shared by memrl's off-policy algorithms (see :meth:`offpolicy`)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        self.replay = ReplaySection()
        self.sequence_batch_size = 32
        self.min_replay_steps = 1000
        self.updates_per_iteration = 1
        self.env_runner_cls = OffPolicyEnvRunner
        # The carry before a continued fragment's first step lives in its lookback buffer.
        self.episode_lookback_horizon = 1

    def memory_agent(
        self,
        *,
        env: str,
        env_config: dict,
        module_class: type,
        core: str,
        core_kwargs: dict,
        model: dict,
        module_settings: dict[str, Any],
        num_env_runners: int,
        num_envs_per_env_runner: int,
        num_learners: int,
        num_gpus_per_learner: float,
        seed: int | None,
    ) -> OffPolicyConfig:
        """What every memrl off-policy algorithm sets alike: the new API stack, ``env`` through
        memrl's env creator, compact per-step state on the env runners, ``module_class`` over
        ``core`` (``module_settings`` join core, core_kwargs and model in its model_config), no
        env-runner restarts (the replay supervisor owns recovery) and the seed.

        Raises ValueError for a core that is neither registered nor ``"mlp"``.
        """
        from memrl.models import check_core_name
        from memrl.rllib.connectors import compact_state_env_runner_kwargs
        from memrl.rllib.env import register_rllib_env
        from memrl.rllib.ppo import window_memory_len

        check_core_name(core)
        memory_len = window_memory_len(core, dict(core_kwargs))
        model_config = {"core": core, "core_kwargs": dict(core_kwargs), "model": dict(model)}
        return (
            self.api_stack(
                enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True
            )
            .framework("torch")
            .environment(env=register_rllib_env(env), env_config=dict(env_config))
            .env_runners(
                num_env_runners=num_env_runners,
                num_envs_per_env_runner=num_envs_per_env_runner,
                **compact_state_env_runner_kwargs(memory_len),
            )
            .learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner)
            .rl_module(
                rl_module_spec=RLModuleSpec(
                    module_class=module_class, model_config={**model_config, **module_settings}
                )
            )
            .fault_tolerance(
                restart_failed_env_runners=False, restart_failed_sub_environments=False
            )
            .debugging(seed=seed)
        )

    def offpolicy(
        self,
        *,
        replay: ReplaySection | dict[str, Any] | None = NotProvided,
        sequence_batch_size: int | None = NotProvided,
        min_replay_steps: int | None = NotProvided,
        updates_per_iteration: int | None = NotProvided,
    ) -> OffPolicyConfig:
        """Replay and update schedule.

        replay: the :class:`memrl.config.ReplaySection` (or a dict of its keys; the rest keep
            their defaults): ReplayConfig's capacity, burn_in, seq_len, state_storage,
            prioritized, alpha, beta, eta, plus num_shards, chunk_overlap, prefetch,
            checkpoint_every, rollout_fragment_length (env steps per env per iteration),
            checkpoint_every_steps (fault tolerance: checkpoint a shard once this many steps
            are unsaved in it; 0 = never, a dead shard then restarts empty) and checkpoint_dir
            (where; None: ``<logdir>/replay_shards``). Unknown keys raise.
        sequence_batch_size: sequences per update; min_replay_steps: replay size before the
        first update; updates_per_iteration: learner updates per ``training_step``.
        """
        if isinstance(replay, ReplaySection):
            self.replay = replay
        elif replay is not NotProvided:
            self.replay = ReplaySection.from_dict(replay)
        if sequence_batch_size is not NotProvided:
            self.sequence_batch_size = sequence_batch_size
        if min_replay_steps is not NotProvided:
            self.min_replay_steps = min_replay_steps
        if updates_per_iteration is not NotProvided:
            self.updates_per_iteration = updates_per_iteration
        return self

    def validate(self) -> None:
        super().validate()
        for name in ("sequence_batch_size", "updates_per_iteration"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                self._value_error(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.min_replay_steps, int) or self.min_replay_steps < 0:
            self._value_error(f"min_replay_steps must be an int >= 0, got {self.min_replay_steps}")
        if self.num_learners > 1:
            self._value_error(
                "memrl's off-policy algorithms support num_learners 0 (in the driver) or 1"
            )

    @property
    def chunk_config(self) -> ChunkConfig:
        """Chunks are one training sequence long (R2D2: 80 steps, overlap 40)."""
        return ChunkConfig(self.replay.seq_len, self.replay.chunk_overlap)


class OffPolicyAlgorithm(Algorithm):
    """Samples into sharded sequence replay, learns from it; see the module docstring.

    Subclasses set ``get_default_config`` (an :class:`OffPolicyConfig` subclass whose
    ``get_default_learner_class`` is an :class:`OffPolicyLearner`).
    """

    @classmethod
    def get_default_config(cls) -> OffPolicyConfig:
        return OffPolicyConfig(algo_class=cls)

    # --- setup --------------------------------------------------------------------------------
    def setup(self, config: OffPolicyConfig) -> None:
        super().setup(config)
        from memrl.replay.supervisor import ShardSupervisor

        def describe(learner: Any) -> tuple:
            module = learner.module[DEFAULT_MODULE_ID].unwrapped()
            spec = module.state_spec() if hasattr(module, "state_spec") else {}
            return spec, module.observation_space, module.action_space

        spec, obs_space, action_space = self._on_learners(describe)[0]
        self.state_spec = spec
        cfg = self.config
        obs_shape, obs_dtype = space_layout(obs_space, "observation")
        action_shape, action_dtype = space_layout(action_space, "action")
        replay = cfg.replay
        num_shards = replay.num_shards
        writers = max(cfg.num_env_runners, 1)
        envs_per_shard = cfg.num_envs_per_env_runner * -(-writers // num_shards)
        # Room for twice the streams that write at once, so that a resumed run (new stream ids)
        # keeps the restored streams until their lanes are reused.
        max_streams = 2 * envs_per_shard
        capacity = replay.capacity
        capacity -= capacity % max_streams
        self.replay_config = ReplayConfig(
            capacity=capacity,
            max_streams=max_streams,
            burn_in=replay.burn_in,
            seq_len=replay.seq_len,
            obs_shape=obs_shape,
            obs_dtype=obs_dtype,
            action_shape=action_shape,
            action_dtype=action_dtype,
            state_storage=replay.state_storage,
            prioritized=replay.prioritized,
            alpha=replay.alpha,
            beta=replay.beta,
            eta=replay.eta,
            seed=cfg.seed,
        )
        every = replay.checkpoint_every_steps
        base = Path(replay.checkpoint_dir or Path(self.logdir) / "replay_shards")
        base.mkdir(parents=True, exist_ok=True)
        # One folder per algorithm instance: a restarted Tune trial (same logdir) or a second
        # run with the same checkpoint_dir must not find this one's checkpoints.
        directory = Path(tempfile.mkdtemp(prefix="run_", dir=base))
        self._fault_dir = directory
        # Shards mostly wait on calls: they take no CPU slot from env runners and learners.
        self.supervisor = ShardSupervisor(
            num_shards,
            self.replay_config,
            spec,
            directory,
            checkpoint_every_steps=every if every > 0 else _NEVER,
            num_cpus=0,
        )
        self._saves = 0
        self._unsent_dropped: dict[int, int] = {}  # env runner -> steps dropped while down
        self._attach_replay()

    @property
    def shards(self) -> list:
        """The current actor of every replay shard (a restored shard has a new one)."""
        supervisor = getattr(self, "supervisor", None)
        return supervisor.handles() if supervisor is not None else []

    def _shard_table(self) -> tuple[list, list[int]]:
        """(handles, incarnations) of the shards, as the env runners get them."""
        current = [self.supervisor.current(i) for i in range(self.supervisor.num_shards)]
        return [h for _, h in current], [inc for inc, _ in current]

    def _on_learners(self, fn: Any) -> list:
        results = self.learner_group.foreach_learner(fn)
        return [r.get() for r in results]

    def _attach_replay(self) -> None:
        cfg = self.config
        shards, self._attached = self._shard_table()
        # A learner in the driver samples through the supervisor (it restores dead shards
        # itself); a remote one gets the handles and is re-attached after a restart.
        supervisor = self.supervisor if self.learner_group.is_local else None
        kwargs = dict(
            batch_size=cfg.sequence_batch_size,
            prefetch=cfg.replay.prefetch,
            beta=self.replay_config.beta,
            prioritized=self.replay_config.prioritized,
            eta=self.replay_config.eta,
            seed=cfg.seed,
        )
        self._on_learners(
            lambda learner: learner.attach_replay(shards, supervisor=supervisor, **kwargs)
        )

    # --- one iteration ------------------------------------------------------------------------
    def replay_stats(self) -> dict[str, float]:
        """Totals over all shards: steps, valid_starts, streams (a dead shard is restored)."""
        stats = self.supervisor.call_all("stats")
        return {k: float(sum(s[k] for s in stats)) for k in ("steps", "valid_starts", "streams")}

    def _settle_writes(self, reports: list[dict]) -> None:
        """Hand the env runners' acknowledgements to the supervisor; restore the shards they
        found dead and push the new handle table until no runner waits on a dead shard."""
        sup = self.supervisor
        for attempt in range(3):
            dead = set()
            for report in reports:
                for incarnation, stored, writes in report["acks"]:
                    sup.note_ack(report["shard"], incarnation, stored, writes)
                if report["dead"] is not None:
                    dead.add((report["shard"], report["dead"]))
                self._unsent_dropped[report["shard"]] = report["unsent_dropped"]
            for shard, incarnation in sorted(dead):
                cause = RuntimeError("an env runner's write found it dead")
                sup.recover(shard, incarnation, cause)
            if not dead:
                break
            if attempt == 2:
                log.error(
                    "replay shards %s keep dying; their chunks wait for the next iteration",
                    sorted(s for s, _ in dead),
                )
                break
            reports = self._push_shard_table()
        sup.poll()

    def _push_shard_table(self) -> list[dict]:
        """Give every sampling env runner the current shards (re-sending what it kept for a
        restored one); returns their writer reports."""
        handles, incarnations = self._shard_table()
        return self.env_runner_group.foreach_env_runner(
            lambda runner: runner.set_replay_shards(handles, incarnations),
            local_env_runner=self.config.num_env_runners == 0,
        )

    def training_step(self) -> None:
        cfg = self.config
        chunk = cfg.chunk_config
        shards, incarnations = self._shard_table()
        steps = cfg.replay.rollout_fragment_length * cfg.num_envs_per_env_runner

        def sample(runner: Any) -> dict:
            return runner.sample_to_replay(shards, steps, chunk, incarnations)

        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            results = self.env_runner_group.foreach_env_runner(
                sample, local_env_runner=cfg.num_env_runners == 0
            )
        self.metrics.aggregate([r["metrics"] for r in results], key=ENV_RUNNER_RESULTS)
        self._settle_writes(results)
        # Health check: stats from every shard; a dead one is restored here.
        stats = self.replay_stats()
        if self._shard_table()[1] != incarnations:
            self._settle_writes(self._push_shard_table())
        for key, value in stats.items():
            self.metrics.log_value(("replay", key), value, window=1)
        self.metrics.log_value(
            ("replay", "dropped_steps"), float(sum(r["dropped"] for r in results)), window=1
        )
        self._log_fault_metrics()
        if stats["steps"] < cfg.min_replay_steps or stats["valid_starts"] == 0:
            return
        updates = cfg.updates_per_iteration
        self._ensure_attached()
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self._on_learners(lambda learner: learner.train_from_replay(updates))
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        self._ensure_attached()
        self._log_fault_metrics()
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group, inference_only=True
            )

    def _ensure_attached(self) -> None:
        """A remote learner whose shard died (or that holds old handles) gets the current
        shards (health-checked first)."""
        if self.learner_group.is_local:
            return
        attached = self._on_learners(lambda learner: learner.replay_attached)[0]
        if not attached:
            self.supervisor.call_all("stats")  # restores the shard the learner found dead
        if not attached or self._shard_table()[1] != self._attached:
            self._attach_replay()

    def _log_fault_metrics(self) -> None:
        counters = self.supervisor.counters()
        for key in ("restarts", "steps_lost", "checkpoints", "unsaved_steps", "failed_shards"):
            self.metrics.log_value(("replay", key), float(counters[key]), window=1)
        self.metrics.log_value(
            ("replay", "unsent_dropped_steps"),
            float(sum(self._unsent_dropped.values())),
            window=1,
        )

    # --- checkpoints --------------------------------------------------------------------------
    def save_to_path(self, path: Any = None, **kwargs: Any) -> str:
        """RLlib's checkpoint plus the replay shards under ``<path>/replay`` (every
        ``checkpoint_every``-th save; 0 = never)."""
        out = super().save_to_path(path, **kwargs)
        every = self.config.replay.checkpoint_every
        self._saves += 1
        if every > 0 and (self._saves - 1) % every == 0:
            self._on_learners(lambda learner: learner.detach_replay())  # flush priorities
            self.supervisor.call_all("save", str(Path(out) / REPLAY_DIR))
            self._attach_replay()
        return out

    def restore_from_path(self, path: Any, *args: Any, **kwargs: Any) -> None:
        """RLlib's restore plus the replay, when the checkpoint holds one."""
        super().restore_from_path(path, *args, **kwargs)
        replay = Path(path) / REPLAY_DIR
        if kwargs.get("component") is None and replay.is_dir():
            self._on_learners(lambda learner: learner.detach_replay())
            self.supervisor.call_all("restore", str(replay))
            # The fault-tolerance checkpoints must hold the restored data from now on.
            self.supervisor.checkpoint()
            self._attach_replay()
            log.info("restored the replay from %s: %s", replay, self.replay_stats())
        elif kwargs.get("component") is None:
            log.warning("checkpoint %s holds no replay; training continues with an empty one", path)

    def cleanup(self) -> None:
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None:
            try:
                self._on_learners(lambda learner: learner.detach_replay())
            except Exception:  # noqa: BLE001 - shutting down: a dead shard must not block it
                log.debug("detaching the replay failed", exc_info=True)
            supervisor.shutdown()
            self.supervisor = None
            # Its checkpoints only serve restarts within this run (resuming uses the
            # algorithm's checkpoint, which holds the replay).
            shutil.rmtree(self._fault_dir, ignore_errors=True)
        super().cleanup()

"""R2D2 (Kapturowski et al. 2019) with any memrl memory core, on the off-policy plumbing."""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from memrl.config import SCHEDULE_KEYS, NetworkConfig, R2D2Hyperparameters
from memrl.rllib.offpolicy import (
    OffPolicyAlgorithm,
    OffPolicyConfig,
)
from memrl.rllib.r2d2.learner import R2D2Learner
from memrl.rllib.r2d2.module import RecurrentQModule


class R2D2Config(OffPolicyConfig):
    """``training(r2d2=...)`` takes the :class:`R2D2Hyperparameters` section (or a dict of its
    loss keys: the schedule keys are RLlib's ``lr`` and :meth:`offpolicy`'s)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or R2D2)
        self.r2d2 = R2D2Hyperparameters()
        self.lr = self.r2d2.lr

    def training(
        self, *, r2d2: R2D2Hyperparameters | dict[str, Any] | None = NotProvided, **kwargs: Any
    ) -> R2D2Config:
        super().training(**kwargs)
        if isinstance(r2d2, R2D2Hyperparameters):
            self.r2d2 = r2d2
        elif r2d2 is not NotProvided:
            schedule = sorted(set(r2d2 or {}) & set(SCHEDULE_KEYS))
            if schedule:
                raise ValueError(
                    f"r2d2 key(s) {schedule} are the schedule: pass them as lr / offpolicy()"
                )
            self.r2d2 = R2D2Hyperparameters.from_dict(r2d2)
        return self

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=RecurrentQModule)

    def get_default_learner_class(self) -> type:
        return R2D2Learner


class R2D2(OffPolicyAlgorithm):
    """Recurrent replay distributed DQN over memrl's sharded sequence replay."""

    @classmethod
    def get_default_config(cls) -> R2D2Config:
        return R2D2Config()


def r2d2_config(
    *,
    env: str,
    env_config: dict,
    core: str,
    core_kwargs: dict,
    model: dict,
    lr: float,
    r2d2: dict,
    replay: Any,
    batch_size: int,
    learning_starts: int,
    updates_per_iteration: int,
    num_env_runners: int,
    num_envs_per_env_runner: int,
    num_learners: int,
    num_gpus_per_learner: float,
    seed: int | None,
) -> R2D2Config:
    """An R2D2Config training :class:`RecurrentQModule` over ``core`` on ``env``.

    r2d2: loss keys of :class:`memrl.config.R2D2Hyperparameters` (``r2d2_kwargs()``); replay:
    see :meth:`OffPolicyConfig.offpolicy`.
    Raises ValueError for an unknown core, model key, r2d2 key or replay key.
    """
    NetworkConfig.from_dict(model)
    schedule = sorted(set(r2d2) & set(SCHEDULE_KEYS))
    if schedule:
        raise ValueError(f"r2d2 key(s) {schedule} are the schedule: pass them as arguments")
    settings = R2D2Hyperparameters.from_dict(
        {
            **r2d2,
            "lr": lr,
            "batch_size": batch_size,
            "learning_starts": learning_starts,
            "updates_per_iteration": updates_per_iteration,
        }
    )
    return (
        R2D2Config()
        .memory_agent(
            env=env,
            env_config=env_config,
            module_class=RecurrentQModule,
            core=core,
            core_kwargs=core_kwargs,
            model=model,
            module_settings={"r2d2": settings, "seed": seed},
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            num_learners=num_learners,
            num_gpus_per_learner=num_gpus_per_learner,
            seed=seed,
        )
        .training(lr=lr, r2d2=settings)
        .offpolicy(
            replay=replay,
            sequence_batch_size=batch_size,
            min_replay_steps=learning_starts,
            updates_per_iteration=updates_per_iteration,
        )
    )


def build_r2d2_config(cfg: Any, resources: Any) -> R2D2Config:
    """The R2D2Config of a validated ``memrl.config.TrainConfig`` on resolved ``resources``
    (the call site in :func:`memrl.train.build_algorithm_config`)."""
    from memrl.envs import resolve_env_id

    section = cfg.r2d2
    return r2d2_config(
        env=resolve_env_id(cfg.task.env_name),
        env_config=cfg.task.env_kwargs,
        core=cfg.model.core,
        core_kwargs=dict(cfg.model.core_kwargs),
        model=cfg.model.network.set_fields(),
        lr=section.lr,
        r2d2=section.r2d2_kwargs(),
        replay=cfg.replay.with_checkpoint_dir(cfg.replay_checkpoint_dir),
        batch_size=section.batch_size,
        learning_starts=section.learning_starts,
        updates_per_iteration=section.updates_per_iteration,
        num_env_runners=resources.num_env_runners,
        num_envs_per_env_runner=resources.num_envs_per_env_runner,
        num_learners=resources.num_learners,
        num_gpus_per_learner=resources.num_gpus_per_learner,
        seed=cfg.seed,
    )

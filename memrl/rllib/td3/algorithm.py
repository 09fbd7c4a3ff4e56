"""Recurrent TD3 as an RLlib Algorithm on memrl's off-policy plumbing (sharded sequence replay).

``td3_config(...)`` / ``build_td3_config(train_cfg, resources)`` give a :class:`TD3Config` whose
``build_algo()`` trains :class:`memrl.rllib.td3.module.TD3Module` with
:class:`memrl.rllib.td3.learner.TD3Learner`: env runners act with the actor (uniform random
actions until the first update, then Gaussian noise), write compact per-step state records to
the replay shards, and the learner runs :class:`memrl.rllib.td3.update.TD3Update` on sampled
sequences and sends TD priorities back.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from memrl.config import TD3Hyperparameters
from memrl.rllib.offpolicy import (
    OffPolicyAlgorithm,
    OffPolicyConfig,
)
from memrl.rllib.td3.learner import TD3Learner
from memrl.rllib.td3.module import TD3Module
from memrl.rllib.td3.networks import td3_network


class TD3Config(OffPolicyConfig):
    """``training(td3={...})`` takes the fields of :class:`TD3Hyperparameters`."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or TD3)
        self.td3 = TD3Hyperparameters()
        # The module emits actions inside the Box already (tanh scaled to the bounds, clipped
        # noise): RLlib must not unsquash them again.
        self.normalize_actions = False
        self.clip_actions = False

    def training(
        self, *, td3: TD3Hyperparameters | dict[str, Any] | None = NotProvided, **kwargs: Any
    ) -> TD3Config:
        """``td3``: the section, or a dict of its keys over the current values."""
        super().training(**kwargs)
        if isinstance(td3, TD3Hyperparameters):
            self.td3 = td3
        elif td3 is not NotProvided:
            self.td3 = TD3Hyperparameters.from_dict({**self.td3.model_dump(), **(td3 or {})})
        return self

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=TD3Module)

    def get_default_learner_class(self) -> type:
        return TD3Learner


class TD3(OffPolicyAlgorithm):
    """Recurrent TD3 over memrl's sharded sequence replay."""

    @classmethod
    def get_default_config(cls) -> TD3Config:
        return TD3Config()


def td3_config(
    *,
    env: str,
    env_config: dict,
    core: str,
    core_kwargs: dict,
    model: dict,
    td3: TD3Hyperparameters | dict,
    replay: Any,
    num_env_runners: int,
    num_envs_per_env_runner: int,
    num_learners: int,
    num_gpus_per_learner: float,
    seed: int | None,
) -> TD3Config:
    """A TD3Config training :class:`TD3Module` over ``core`` on ``env``.

    td3: fields of :class:`TD3Hyperparameters` (``batch_size``, ``learning_starts`` and
    ``updates_per_iteration`` set the off-policy schedule); replay: see
    :meth:`memrl.rllib.offpolicy.OffPolicyConfig.offpolicy`.

    Raises:
        ValueError: an unknown core, model key, td3 key or replay key, a bad value, or an
            empty ``model.head_hiddens``.
    """
    hp = td3 if isinstance(td3, TD3Hyperparameters) else TD3Hyperparameters.from_dict(td3)
    td3_network(model)  # fail here, not inside an env runner
    return (
        TD3Config()
        .memory_agent(
            env=env,
            env_config=env_config,
            module_class=TD3Module,
            core=core,
            core_kwargs=core_kwargs,
            model=model,
            module_settings={"td3": hp},
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            num_learners=num_learners,
            num_gpus_per_learner=num_gpus_per_learner,
            seed=seed,
        )
        .training(td3=hp)
        .offpolicy(
            replay=replay,
            sequence_batch_size=hp.batch_size,
            min_replay_steps=hp.learning_starts,
            updates_per_iteration=hp.updates_per_iteration,
        )
    )


def build_td3_config(cfg: Any, resources: Any) -> TD3Config:
    """The TD3Config of a validated ``memrl.config.TrainConfig`` on resolved ``resources``
    (the call site in :func:`memrl.train.build_algorithm_config`)."""
    from memrl.envs import resolve_env_id

    return td3_config(
        env=resolve_env_id(cfg.task.env_name),
        env_config=cfg.task.env_kwargs,
        core=cfg.model.core,
        core_kwargs=dict(cfg.model.core_kwargs),
        model=cfg.model.network.set_fields(),
        td3=cfg.td3,
        replay=cfg.replay.with_checkpoint_dir(cfg.replay_checkpoint_dir),
        num_env_runners=resources.num_env_runners,
        num_envs_per_env_runner=resources.num_envs_per_env_runner,
        num_learners=resources.num_learners,
        num_gpus_per_learner=resources.num_gpus_per_learner,
        seed=cfg.seed,
    )

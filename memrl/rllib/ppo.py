"""PPO (RLlib's, unchanged loss) with any memrl memory core and compact per-step state."""

from __future__ import annotations

import inspect
import logging

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from memrl.config import NetworkConfig
from memrl.models import check_core_name, window_memory_len
from memrl.rllib.connectors import compact_state_env_runner_kwargs
from memrl.rllib.env import register_rllib_env
from memrl.rllib.learner import MemoryPPOTorchLearner
from memrl.rllib.module import MemoryActorCritic

log = logging.getLogger(__name__)

# training keys memrl sets itself: overriding them would bypass the compact-state learner.
_RESERVED_TRAINING = (
    "learner_class",
    "learner_connector",
    "add_default_connectors_to_learner_pipeline",
)
# EnvRunner restarts before the algorithm gives up: enough for preempted nodes, few enough that
# a deterministic crash fails the run instead of looping.
_MAX_ENV_RUNNER_RESTARTS = 20


def training_keys() -> list[str]:
    """Keyword arguments ``PPOConfig.training`` accepts (PPO's and the generic ones)."""
    keys: set[str] = set()
    for fn in (PPOConfig.training, AlgorithmConfig.training):
        for name, p in inspect.signature(fn).parameters.items():
            if name != "self" and p.kind is p.KEYWORD_ONLY:
                keys.add(name)
    return sorted(keys - set(_RESERVED_TRAINING))


def build_ppo_config(
    *,
    env: str,
    env_config: dict,
    core: str,
    core_kwargs: dict,
    model: dict,
    max_seq_len: int,
    training: dict,
    num_env_runners: int,
    num_envs_per_env_runner: int,
    num_learners: int,
    num_gpus_per_learner: float,
    seed: int | None,
    compile_acting: bool = False,
) -> PPOConfig:
    """A PPOConfig (new API stack) training ``MemoryActorCritic`` over ``core`` on ``env``.

    Args:
        env: a gymnasium id (``memrl/...`` ids are registered inside the env runners).
        env_config: kwargs for the env.
        core: a name of ``memrl.models.CORES`` (``"mlp"``: the memoryless baseline).
        core_kwargs: the core's hyperparameters.
        model: encoder/head settings, keys of :class:`memrl.config.NetworkConfig`
            (``encoder_hiddens``, ``cnn_filters``, ``cnn_out``, ``activation``, ``head_hiddens``,
            ``shared_core``, ``log_std_init``); ``{}`` = defaults.
        max_seq_len: training chunk length (steps per BPTT sequence).
        training: kwargs for ``PPOConfig.training`` (lr, gamma, lambda_, clip_param, num_epochs,
            minibatch_size, train_batch_size_per_learner, entropy_coeff, vf_loss_coeff,
            grad_clip, ...).
        num_env_runners, num_envs_per_env_runner, num_learners, num_gpus_per_learner: scale.
        seed: base seed of env runners and learners (None: unseeded).
        compile_acting: the env runners act through ``torch.compile`` (see
            :mod:`memrl.rllib.module`).

    Raises:
        ValueError: an unknown core, model key or training key (listing the valid ones), or a
            non-positive size.
    """
    check_core_name(core)
    NetworkConfig.from_dict(model)  # fail here, not inside an env runner
    if not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ValueError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    for name, value, low in (
        ("num_env_runners", num_env_runners, 0),
        ("num_envs_per_env_runner", num_envs_per_env_runner, 1),
        ("num_learners", num_learners, 0),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if num_gpus_per_learner < 0:
        raise ValueError(f"num_gpus_per_learner must be >= 0, got {num_gpus_per_learner!r}")
    valid_training = training_keys()
    bad = sorted(set(training) - set(valid_training))
    if bad:
        raise ValueError(
            f"unknown or reserved training key(s) {bad}; valid: {', '.join(valid_training)}"
        )
    memory_len = window_memory_len(core, dict(core_kwargs))

    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(env=register_rllib_env(env), env_config=dict(env_config))
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            # A training chunk that starts where the previous sample batch ended rebuilds its
            # window from the M steps before it: the episode chunk must carry them.
            **compact_state_env_runner_kwargs(memory_len),
        )
        .learners(
            num_learners=num_learners,
            num_gpus_per_learner=num_gpus_per_learner,
            learner_class=MemoryPPOTorchLearner,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=MemoryActorCritic,
                model_config={
                    "core": core,
                    "core_kwargs": dict(core_kwargs),
                    "model": dict(model),
                    "max_seq_len": max_seq_len,
                    "compile_acting": bool(compile_acting),
                },
            )
        )
        .training(**training)
        .fault_tolerance(
            # Local sampling (num_env_runners=0) has nothing to restart; remote runners are
            # restarted a bounded number of times (preemption), and a crash inside an env is an
            # error, not a silent env reset.
            restart_failed_env_runners=num_env_runners > 0,
            max_num_env_runner_restarts=_MAX_ENV_RUNNER_RESTARTS,
            delay_between_env_runner_restarts_s=10.0,
            restart_failed_sub_environments=False,
        )
        .debugging(seed=seed)
    )
    return config

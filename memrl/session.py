"""From a validated config to a built RLlib Algorithm: the layer ``memrl train``, ``memrl tune``
and ``memrl eval`` share (none of them imports another entrypoint).

``check_env`` builds the env once in this process (bad kwargs fail before Ray);
``build_algorithm_config`` dispatches on ``cfg.algo``; ``build_algorithm`` resolves the
resources against the connected cluster and restores a checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memrl import checkpoints
from memrl.config import ConfigError, TrainConfig
from memrl.envs.registry import resolve_env_id
from memrl.resources import (
    ResolvedResources,
    cluster_resources,
    local_cpus,
    resolve_resources,
)

log = logging.getLogger("memrl.session")


def _ppo_builder() -> Callable[..., Any]:
    """memrl.rllib.ppo.build_ppo_config (imported late: it pulls in RLlib)."""
    from memrl.rllib.ppo import build_ppo_config

    return build_ppo_config


def offpolicy_builder(algo: str) -> Callable[..., Any]:
    """``build_<algo>_config(cfg, resources)`` from ``memrl.rllib.<algo>`` (imported late; r2d2,
    td3 and qtransformer).

    Raises ConfigError naming ``algo`` when that module (or its builder) does not exist yet.
    """
    import importlib

    module_name = f"memrl.rllib.{algo}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise  # the module exists but one of its imports is missing: a real error
        raise ConfigError(
            f"algo: {algo!r} is not available in this installation ({module_name} is missing)"
        ) from err
    builder = getattr(module, f"build_{algo}_config", None)
    if builder is None:
        raise ConfigError(
            f"algo: {algo!r} is not available ({module_name} has no "
            f"build_{algo}_config(cfg, resources))"
        )
    return builder


def uses_ray(cfg: TrainConfig) -> bool:
    """Whether ``cfg``'s algorithm runs on Ray: all but qtransformer, which trains offline in
    this process (its learner reads the dataset; no env runners)."""
    return cfg.algo != "qtransformer"


def build_algorithm_config(cfg: TrainConfig, resources: ResolvedResources) -> Any:
    """The RLlib AlgorithmConfig for ``cfg`` on ``resources`` (anything with ``build_algo()``).

    ppo: :func:`memrl.rllib.ppo.build_ppo_config`; r2d2 / td3:
    ``memrl.rllib.<algo>.build_<algo>_config(cfg, resources)``, which read the ``r2d2`` /
    ``td3`` and ``replay`` sections; qtransformer:
    :func:`memrl.rllib.qtransformer.build_qtransformer_config`, an in-process algorithm that
    reads the ``qtransformer`` and ``data`` sections. Raises ConfigError for an algorithm not
    installed.
    """
    if cfg.algo in ("r2d2", "td3", "qtransformer"):
        return offpolicy_builder(cfg.algo)(cfg, resources)
    if cfg.algo != "ppo":  # pragma: no cover - TrainConfig admits only the algorithms above
        raise ValueError(
            f"algo {cfg.algo!r} is not implemented; valid: ppo, r2d2, td3, qtransformer"
        )
    return _ppo_builder()(
        env=resolve_env_id(cfg.task.env_name),
        env_config=cfg.task.env_kwargs,
        core=cfg.model.core,
        core_kwargs=dict(cfg.model.core_kwargs),
        model=cfg.model.network.set_fields(),
        max_seq_len=cfg.model.max_seq_len,
        training=cfg.ppo.training_kwargs(),
        num_env_runners=resources.num_env_runners,
        num_envs_per_env_runner=resources.num_envs_per_env_runner,
        num_learners=resources.num_learners,
        num_gpus_per_learner=resources.num_gpus_per_learner,
        seed=cfg.seed,
        compile_acting=cfg.model.compile_acting,
    )


def check_env(cfg: TrainConfig) -> None:
    """Build the env once in this process so bad kwargs or a missing package fail before Ray.

    Raises ConfigError naming task.* with the env's own message.
    """
    from memrl.envs import make_env

    env_id = resolve_env_id(cfg.task.env_name)
    try:
        env = make_env(env_id, **cfg.task.env_kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"task: env {env_id!r} rejected its kwargs: {err}") from err
    except ImportError as err:
        raise ConfigError(f"task.env_name: env {env_id!r} needs a missing package: {err}") from err
    env.close()


def build_algorithm(cfg: TrainConfig, resume: Path | None = None) -> Any:
    """The RLlib Algorithm for ``cfg`` on the connected Ray cluster (qtransformer: in this
    process, see :func:`uses_ray`), restored from ``resume``.

    ``resume`` is a checkpoint folder (see memrl.checkpoints); its weights, optimizer state,
    connector state and iteration counter are restored.
    """
    if uses_ray(cfg):
        cpus, gpus = cluster_resources()
    else:  # this process's own devices
        import torch

        cpus, gpus = float(local_cpus()), float(torch.cuda.device_count())
    resources = resolve_resources(cfg.resources, cpus=cpus, gpus=gpus)
    log.info("resources: %s (cluster: %g CPUs, %g GPUs)", resources.model_dump(), cpus, gpus)
    algo = build_algorithm_config(cfg, resources).build_algo()
    if resume is not None:
        algo.restore_from_path(str(resume / checkpoints.ALGORITHM_DIR))
    return algo

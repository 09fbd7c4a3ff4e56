"""``memrl train CONFIG [key=value ...] [--resume PATH]``: one training run.

Also the Ray job entrypoint: ``python -m memrl.train ...`` is the same command. The config is
validated (and the env built once in this process) before Ray starts, so a typo costs a second,
not a cluster. On a cluster (``RAY_ADDRESS`` set, or ``resources.address``) this calls plain
``ray.init()``; on a laptop it starts a local Ray sized to the machine (token auth left on).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from memrl import checkpoints
from memrl.config import (
    ConfigError,
    ResolvedResources,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    describe_schema,
    load_config,
    resolve_env_id,
    resolve_resources,
)
from memrl.progress import IterationMetrics, RunLog, flatten, progress_line, steps_this_iter

log = logging.getLogger("memrl.train")  # not __name__: that is "__main__" under python -m


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    config: TrainConfig
    iterations: int
    env_steps: int
    time_s: float
    run_dir: Path
    checkpoint: Path | None
    history: list[IterationMetrics] = field(default_factory=list)

    @property
    def final(self) -> IterationMetrics | None:
        return self.history[-1] if self.history else None


def _ppo_builder() -> Callable[..., Any]:
    """memrl.rllib.ppo.build_ppo_config (imported late: it pulls in RLlib)."""
    from memrl.rllib.ppo import build_ppo_config

    return build_ppo_config


def _offpolicy_builder(algo: str) -> Callable[..., Any]:
    """``build_<algo>_config(cfg, resources)`` from ``memrl.rllib.<algo>`` (imported late).

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


def build_algorithm_config(cfg: TrainConfig, resources: ResolvedResources) -> Any:
    """The RLlib AlgorithmConfig for ``cfg`` on ``resources``.

    ppo: :func:`memrl.rllib.ppo.build_ppo_config`; r2d2 / td3:
    ``memrl.rllib.<algo>.build_<algo>_config(cfg, resources)``, which read the ``r2d2`` /
    ``td3`` and ``replay`` sections. Raises ConfigError for an algorithm not installed.
    """
    if cfg.algo in ("r2d2", "td3"):
        return _offpolicy_builder(cfg.algo)(cfg, resources)
    if cfg.algo != "ppo":  # pragma: no cover - TrainConfig admits only the algorithms above
        raise ValueError(f"algo {cfg.algo!r} is not implemented; valid: ppo, r2d2, td3")
    return _ppo_builder()(
        env=resolve_env_id(cfg.task.env_name),
        env_config=cfg.task.env_kwargs,
        core=cfg.model.core,
        core_kwargs=dict(cfg.model.core_kwargs),
        model=dict(cfg.model.network),
        max_seq_len=cfg.model.max_seq_len,
        training=cfg.ppo.training_kwargs(),
        num_env_runners=resources.num_env_runners,
        num_envs_per_env_runner=resources.num_envs_per_env_runner,
        num_learners=resources.num_learners,
        num_gpus_per_learner=resources.num_gpus_per_learner,
        seed=cfg.seed,
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


def local_cpus() -> int:
    """CPUs this process may use (cgroup/affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def init_ray(cfg: TrainConfig) -> bool:
    """Connect to or start Ray; returns True if this call started it (so it should stop it).

    RAY_ADDRESS set -> plain ``ray.init()`` (the job-submission case: passing resources to an
    existing cluster raises). ``resources.address`` -> ``ray.init(address=...)``. Otherwise a
    local Ray with this machine's CPUs, no dashboard, and Ray's default (token) auth.
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    elif cfg.resources.address:
        ray.init(address=cfg.resources.address)
    else:
        cpus = local_cpus() if cfg.resources.num_cpus == "auto" else cfg.resources.num_cpus
        ray.init(num_cpus=cpus, include_dashboard=False)
    return True


def cluster_resources() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected Ray cluster."""
    import ray

    res = ray.cluster_resources()
    return float(res.get("CPU", 1)), float(res.get("GPU", 0))


def build_algorithm(cfg: TrainConfig, resume: Path | None = None) -> Any:
    """The RLlib Algorithm for ``cfg`` on the connected Ray cluster, restored from ``resume``.

    ``resume`` is a checkpoint folder (see memrl.checkpoints); its weights, optimizer state,
    connector state and iteration counter are restored.
    """
    cpus, gpus = cluster_resources()
    resources = resolve_resources(cfg.resources, cpus=cpus, gpus=gpus)
    log.info("resources: %s (cluster: %g CPUs, %g GPUs)", resources.model_dump(), cpus, gpus)
    algo = build_algorithm_config(cfg, resources).build_algo()
    if resume is not None:
        algo.restore_from_path(str(resume / checkpoints.ALGORITHM_DIR))
    return algo


def stop_reason(cfg: TrainConfig, iteration: int, env_steps: int, time_s: float) -> str | None:
    """Which ``stop`` condition a run at this point has met (None: go on)."""
    stop = cfg.stop
    if stop.iterations is not None and iteration >= stop.iterations:
        return f"stop.iterations={stop.iterations} reached"
    if stop.timesteps is not None and env_steps >= stop.timesteps:
        return f"stop.timesteps={stop.timesteps} reached"
    if stop.time_s is not None and time_s >= stop.time_s:
        return f"stop.time_s={stop.time_s} reached"
    return None


def run_iteration(
    algo: Any, run_log: RunLog, iteration: int, env_steps: int, time_before: float, t0: float
) -> tuple[IterationMetrics, dict[str, float]]:
    """One ``algo.train()``, its headline metrics logged; ``time_before + now - t0`` is the
    run's time so far. Returns the metrics and the flattened result."""
    result = algo.train()
    flat = flatten(result)
    metrics = IterationMetrics.from_result(
        flat,
        iteration=int(result.get("training_iteration", iteration + 1)),
        env_steps=env_steps + steps_this_iter(flat),
        time_s=time_before + time.perf_counter() - t0,
    )
    run_log.write(metrics, flat)
    return metrics, flat


def train(
    cfg: TrainConfig, resume: Path | None = None, console: Console | None = None
) -> TrainResult:
    """Run ``cfg`` to its stop condition, optionally continuing from checkpoint ``resume``.

    Starts (and afterwards stops) a local Ray unless one is running or an address is given.
    Raises ConfigError for an env that cannot be built; RLlib errors propagate.
    """
    console = console or Console(soft_wrap=True)
    if resume is not None:
        checkpoints.verify(resume)  # issue 13: before Ray starts and anything is unpickled
    check_env(cfg)
    if cfg.algo in ("r2d2", "td3"):
        _offpolicy_builder(cfg.algo)  # an algorithm not installed fails before Ray starts
    start = checkpoints.load_state(resume) if resume is not None else None
    started_ray = init_ray(cfg)
    algo = None
    run_log = None
    try:
        algo = build_algorithm(cfg, resume)
        iteration, env_steps, time_before = 0, 0, 0.0
        if start is not None:
            iteration, env_steps, time_before = start.iteration, start.env_steps, start.time_s
            log.info("resumed from %s at iteration %d (%d env steps)", resume, iteration, env_steps)
        run_log = RunLog(cfg.run_dir, tensorboard=cfg.logging.tensorboard)
        history: list[IterationMetrics] = []
        saved: Path | None = None
        config_data = cfg.to_yaml_dict()
        t0 = time.perf_counter()
        reason = stop_reason(cfg, iteration, env_steps, time_before)
        while reason is None:
            metrics, flat = run_iteration(algo, run_log, iteration, env_steps, time_before, t0)
            iteration, env_steps = metrics.iteration, metrics.env_steps
            history.append(metrics)
            if iteration % cfg.logging.progress_every == 0:
                console.print(progress_line(metrics), highlight=False, soft_wrap=True)
            reason = stop_reason(cfg, iteration, env_steps, metrics.time_s)
            periodic = cfg.checkpoint.every > 0 and iteration % cfg.checkpoint.every == 0
            if periodic or (reason is not None and cfg.checkpoint.at_end):
                state = checkpoints.CheckpointState(iteration, env_steps, metrics.time_s, cfg.name)
                saved = checkpoints.save(
                    algo, cfg.checkpoint_dir, config_data, state, cfg.checkpoint.keep
                )
                log.info("checkpoint: %s", saved)
        log.info("stopped: %s", reason)
        return TrainResult(
            config=cfg,
            iterations=iteration,
            env_steps=env_steps,
            time_s=time_before + time.perf_counter() - t0,
            run_dir=cfg.run_dir,
            checkpoint=saved,
            history=history,
        )
    finally:
        if run_log is not None:
            run_log.close()
        if algo is not None:
            algo.stop()
        if started_ray:
            import ray

            ray.shutdown()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memrl train",
        description="Train an agent from a YAML config (short name like tmaze/arelit, or a path).",
        epilog="overrides: dotted.key=value with YAML values, e.g. task.corridor_len=160 "
        "stop.iterations=2 model.core_kwargs.memory_len=64. --schema lists every key.",
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="CONFIG [key=value ...]",
        help="config (optional with --resume: the checkpoint's own) then overrides",
    )
    parser.add_argument("--resume", metavar="PATH", help="checkpoint (or run folder) to continue")
    parser.add_argument("--schema", action="store_true", help="print every config key and exit")
    return parser


def resolve_cli(argv: Sequence[str]) -> tuple[TrainConfig, Path | None]:
    """Parse ``memrl train`` arguments into a validated config and a checkpoint to resume.

    Raises ConfigError (bad config or overrides) or FileNotFoundError (bad --resume path).
    """
    args = _parser().parse_args(list(argv))
    positional = list(args.args)
    config_name = positional.pop(0) if positional and "=" not in positional[0] else None
    overrides = positional
    resume = checkpoints.find_verified(args.resume) if args.resume else None  # issue 13
    if config_name is not None:
        cfg = load_config(config_name, overrides)
    elif resume is not None:
        data = apply_overrides(checkpoints.load_config_data(resume), overrides)
        cfg = config_from_dict(data, source=str(resume / checkpoints.CONFIG_FILE))
    else:
        raise ConfigError("give a CONFIG (e.g. tmaze/gru) or --resume PATH")
    return cfg, resume


def setup_logging(level: str = "INFO") -> None:
    """Send memrl's log records to a rich handler of their own.

    Not via the root logger: optional env packages (absl, through dm_control) install a root
    handler that drops INFO records, and basicConfig does nothing once one exists.
    """
    logger = logging.getLogger("memrl")
    logger.setLevel(level)
    if not any(getattr(h, "_memrl", False) for h in logger.handlers):
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False)
        handler._memrl = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``memrl train`` and ``python -m memrl.train``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    console = Console(soft_wrap=True)
    if "--schema" in argv:
        console.print(describe_schema(), highlight=False, markup=False)
        return 0
    try:
        cfg, resume = resolve_cli(argv)
    except (ConfigError, FileNotFoundError, checkpoints.CheckpointError) as err:  # issue 13
        console.print(f"[red]memrl train: {err}[/red]", highlight=False)
        return 2
    setup_logging(cfg.logging.level)
    try:
        result = train(cfg, resume=resume, console=console)
    except (ConfigError, checkpoints.CheckpointError) as err:  # issue 13: CheckpointError
        console.print(f"[red]memrl train: {err}[/red]", highlight=False)
        return 2
    final = result.final
    console.rule("[bold]done")
    if final is not None:
        console.print(progress_line(final), highlight=False, soft_wrap=True)
    console.print(
        f"iterations {result.iterations}, env steps {result.env_steps:,}, {result.time_s:.1f} s",
        highlight=False,
    )
    console.print(f"TensorBoard: tensorboard --logdir {result.run_dir}", highlight=False)
    if result.checkpoint is not None:
        console.print(f"checkpoint:  {result.checkpoint}", highlight=False)
        console.print(
            f"evaluate:    memrl eval {result.checkpoint} --episodes 100", highlight=False
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

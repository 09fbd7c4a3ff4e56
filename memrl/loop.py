"""One training loop, used by ``memrl train`` and by every ``memrl tune`` trial.

:func:`run_loop` drives a built algorithm to its ``stop`` condition, writes memrl's scalars
(TensorBoard, ``metrics.jsonl``) and calls a reporting hook after every iteration, handing it
the checkpoint state when one is due; the hook prints or reports to Tune and saves where its
caller keeps checkpoints. :func:`train` is the whole local run around it (Ray up, build, loop,
Ray down).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from memrl import checkpoints
from memrl.config import TrainConfig
from memrl.progress import (
    IterationMetrics,
    RunLog,
    flatten,
    progress_line,
    read_metrics,
    rewind_metrics,
    steps_this_iter,
)
from memrl.resources import init_ray
from memrl.session import build_algorithm, check_env, offpolicy_builder, uses_ray

log = logging.getLogger("memrl.loop")

# After each iteration: (metrics, flattened result, the checkpoint state when one is due, else
# None) -> the checkpoint path it saved, if any.
ReportHook = Callable[
    [IterationMetrics, dict[str, float], "checkpoints.CheckpointState | None"], Path | None
]


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


def stop_reason(
    cfg: TrainConfig,
    iteration: int,
    env_steps: int,
    time_s: float,
    returns: Sequence[float] = (),
) -> str | None:
    """Which ``stop`` condition a run at this point has met (None: go on). ``returns`` are the
    run's training episode_return_mean per iteration so far, oldest first (NaN where no episode
    ended); the target needs the last ``stop.episode_return_iterations`` of them."""
    stop = cfg.stop
    if stop.return_target_met(returns):
        reached = f"stop.episode_return_mean={stop.episode_return_mean} reached ({returns[-1]:.3f})"
        streak = stop.episode_return_iterations
        return reached if streak == 1 else f"{reached} for {streak} iterations"
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


def checkpoint_due(cfg: TrainConfig, iteration: int, stopping: bool) -> bool:
    """Every ``checkpoint.every`` iterations, and at the end if ``checkpoint.at_end``."""
    periodic = cfg.checkpoint.every > 0 and iteration % cfg.checkpoint.every == 0
    return periodic or (stopping and cfg.checkpoint.at_end)


def run_loop(
    cfg: TrainConfig,
    algo: Any,
    report: ReportHook,
    start: checkpoints.CheckpointState | None = None,
    earlier_returns: Sequence[float | None] = (),
) -> TrainResult:
    """Train ``algo`` from ``start`` (a resumed run's counters) until ``cfg.stop``.

    ``earlier_returns`` are a resumed run's logged training returns up to ``start``, so that
    a return target held over several iterations counts those before the resume too.
    After each iteration ``report`` gets the metrics, the flattened result and, when a
    checkpoint is due (:func:`checkpoint_due`), the state to save with it.
    """
    iteration, env_steps, time_before = 0, 0, 0.0
    if start is not None:
        iteration, env_steps, time_before = start.iteration, start.env_steps, start.time_s
    history: list[IterationMetrics] = []
    saved: Path | None = None
    run_log = RunLog(cfg.run_dir, tensorboard=cfg.logging.tensorboard)
    t0 = time.perf_counter()
    try:
        returns = list(earlier_returns)
        reason = stop_reason(cfg, iteration, env_steps, time_before, returns)
        while reason is None:
            metrics, flat = run_iteration(algo, run_log, iteration, env_steps, time_before, t0)
            iteration, env_steps = metrics.iteration, metrics.env_steps
            history.append(metrics)
            returns.append(metrics.episode_return_mean)
            reason = stop_reason(cfg, iteration, env_steps, metrics.time_s, returns)
            state = None
            if checkpoint_due(cfg, iteration, reason is not None):
                state = checkpoints.CheckpointState(iteration, env_steps, metrics.time_s, cfg.name)
            saved = report(metrics, flat, state) or saved
        log.info("stopped: %s", reason)
    finally:
        run_log.close()
    return TrainResult(
        config=cfg,
        iterations=iteration,
        env_steps=env_steps,
        time_s=time_before + time.perf_counter() - t0,
        run_dir=cfg.run_dir,
        checkpoint=saved,
        history=history,
    )


def train(
    cfg: TrainConfig, resume: Path | None = None, console: Console | None = None
) -> TrainResult:
    """Run ``cfg`` to its stop condition, optionally continuing from checkpoint ``resume``.

    Prints a progress line every ``logging.progress_every`` iterations and saves checkpoints
    under ``cfg.checkpoint_dir``. Starts (and afterwards stops) a local Ray unless one is
    running or an address is given (qtransformer needs none: it trains in this process).
    Raises ConfigError for an env that cannot be built; RLlib errors propagate.
    """
    console = console or Console(soft_wrap=True)
    if resume is not None:
        checkpoints.verify(resume)  # before Ray starts and anything is unpickled
    check_env(cfg)
    if cfg.algo in ("r2d2", "td3", "qtransformer"):
        offpolicy_builder(cfg.algo)  # an algorithm not installed fails before Ray starts
    start = checkpoints.load_state(resume) if resume is not None else None
    earlier: list[float | None] = []
    if start is not None:
        moved = rewind_metrics(cfg.run_dir, start.iteration)
        if moved:
            log.info(
                "metrics.jsonl: %d line(s) after iteration %d moved to metrics.discarded.jsonl",
                moved, start.iteration,
            )  # fmt: skip
        earlier = [m.get("episode_return_mean") for m in read_metrics(cfg.run_dir)]
    started_ray = init_ray(cfg) if uses_ray(cfg) else False
    algo = None
    try:
        algo = build_algorithm(cfg, resume)
        if start is not None:
            log.info(
                "resumed from %s at iteration %d (%d env steps)",
                resume,
                start.iteration,
                start.env_steps,
            )
        config_data = cfg.to_yaml_dict()

        def report(metrics: IterationMetrics, flat: dict[str, float], due: Any) -> Path | None:
            if metrics.iteration % cfg.logging.progress_every == 0:
                console.print(progress_line(metrics), highlight=False, soft_wrap=True)
            if due is None:
                return None
            saved = checkpoints.save(
                algo, cfg.checkpoint_dir, config_data, due, cfg.checkpoint.keep
            )
            log.info("checkpoint: %s", saved)
            return saved

        return run_loop(cfg, algo, report, start, earlier)
    finally:
        if algo is not None:
            algo.stop()
        if started_ray:
            import ray

            ray.shutdown()

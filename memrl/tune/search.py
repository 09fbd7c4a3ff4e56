"""Running a search: placement of each trial, the Tuner (new or restored), the scheduler."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from memrl.config import TrainConfig, config_from_dict
from memrl.resources import cluster_resources, init_ray, resolve_resources
from memrl.tune.spec import TuneSpec, TuneSpecError
from memrl.tune.trial import REPORTED, train_trial, trial_dirname
from memrl.tune.variants import Variant, override, plan, trial_config

BASE_FILE = "memrl_base.json"  # the experiment's base config, beside Tune's state


def _assign_resources(base: Mapping[str, Any], variants: list[Variant]) -> None:
    """Resolve each trial's "auto" resources against the cluster; record its Tune bundles.

    The resolved numbers become overrides, so a trial builds exactly what its placement group
    reserved.
    """
    from memrl.session import build_algorithm_config

    cpus, gpus = cluster_resources()
    for variant in variants:
        cfg = trial_config(base, variant)
        res = resolve_resources(cfg.resources, cpus=cpus, gpus=gpus)
        variant.overrides += [
            override(f"resources.{k}", v)
            for k, v in res.model_dump().items()
            if getattr(cfg.resources, k) == "auto"
        ]
        algo_config = build_algorithm_config(cfg, res)
        if hasattr(algo_config, "resource_bundles"):  # memrl's own, in-process algorithms
            bundles = algo_config.resource_bundles()
        else:
            bundles = algo_config.algo_class.default_resource_request(algo_config).bundles
        variant.bundles = [
            {k: float(v) for k, v in b.items() if v} or {"CPU": 0.0} for b in bundles
        ]
        need = sum(b.get("CPU", 0.0) for b in variant.bundles)
        if need > cpus:
            raise TuneSpecError(
                f"trial {variant.index} needs {need:g} CPUs (resources.num_env_runners="
                f"{res.num_env_runners} plus the trial's own), the cluster has {cpus:g}"
            )


def _trainable(base: dict[str, Any], experiment: Path) -> Any:
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(train_trial, base=base, experiment=str(experiment)),
        lambda config: tune.PlacementGroupFactory(config["variant"]["bundles"]),
    )


def _check_same_base(path: Path, base: Mapping[str, Any]) -> None:
    """On resume, the base config (after the spec's overrides) must be the one the trials
    started with: a changed base would silently mix two experiments."""
    saved_file = path / BASE_FILE
    if not saved_file.is_file():
        raise TuneSpecError(f"--resume: {saved_file} is missing; not a memrl tune experiment?")
    saved = json.loads(saved_file.read_text())
    if saved != json.loads(json.dumps(base)):
        changed = sorted(
            k for k in set(saved) | set(base) if saved.get(k) != json.loads(json.dumps(base.get(k)))
        )
        raise TuneSpecError(
            f"--resume: the base config changed since {path} started (sections {changed}); "
            "restore with the original spec or start a new experiment (another name)"
        )


def _dirname(trial: Any) -> str:
    return trial_dirname(trial.config["variant"]["index"])


def _scheduler(spec: TuneSpec, base_cfg: TrainConfig) -> Any:
    if spec.scheduler.type == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_t = spec.scheduler.max_t or base_cfg.stop.iterations
    if max_t is None:
        raise TuneSpecError(
            "scheduler.max_t: ASHA needs a last rung; set it or the base's stop.iterations"
        )
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_t,
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    )


def run(spec: TuneSpec, resume: bool = False, console: Console | None = None) -> Any:
    """Run (or with ``resume``, restore and continue) the search; returns Tune's ResultGrid.

    Validates every trial before Ray starts. Raises TuneSpecError for an invalid spec or a
    ``resume`` of an experiment that does not exist.
    """
    from ray import tune

    console = console or Console(soft_wrap=True)
    path = spec.experiment_path
    base, variants = plan(spec)
    base_cfg = config_from_dict(base)
    if resume and not tune.Tuner.can_restore(str(path)):
        raise TuneSpecError(f"--resume: no Tune experiment to restore at {path}")
    if not resume and path.exists() and any(path.iterdir()):
        raise TuneSpecError(
            f"name: experiment {path} exists; pass --resume to continue it, or another name"
        )
    console.print(
        f"{len(variants)} trials of {spec.name!r} validated; experiment: {path}", highlight=False
    )
    started = init_ray(base_cfg)
    try:
        if resume:
            _check_same_base(path, base)
            tuner = tune.Tuner.restore(
                str(path),
                trainable=_trainable(base, path),
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            _assign_resources(base, variants)
            path.mkdir(parents=True, exist_ok=True)
            (path / BASE_FILE).write_text(json.dumps(base, indent=1))
            extra = [] if spec.metric in REPORTED else [spec.metric]
            tuner = tune.Tuner(
                _trainable(base, path),
                param_space={
                    "extra_keys": extra,
                    "variant": tune.grid_search([v.to_dict() for v in variants]),
                },
                tune_config=tune.TuneConfig(
                    metric=spec.metric,
                    mode=spec.mode,
                    scheduler=_scheduler(spec, base_cfg),
                    num_samples=1,
                    max_concurrent_trials=spec.max_concurrent_trials,
                    trial_dirname_creator=_dirname,
                ),
                run_config=tune.RunConfig(
                    name=spec.name,
                    storage_path=str(path.parent),
                    # 2+: Tune deletes the older checkpoint before its next state snapshot, so
                    # a driver killed in between would point at a deleted one.
                    checkpoint_config=tune.CheckpointConfig(
                        num_to_keep=max(2, base_cfg.checkpoint.keep)
                    ),
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                    verbose=1,
                ),
            )
        results = tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return results

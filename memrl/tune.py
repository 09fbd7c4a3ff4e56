"""``memrl tune SPEC.yaml [key=value ...] [--resume]``: a Ray Tune search over a memrl config.

A search spec is YAML (see ``configs/tune/tmaze.yaml``)::

    name: tmaze-search          # experiment folder under storage_path
    base: demo/gru              # the memrl config every trial starts from
    storage_path: results/tune  # made absolute against the launch directory
    overrides:                  # fixed dotted keys for every trial (as `memrl train` key=value)
      stop.iterations: 8
    search:                     # dotted key -> one space
      ppo.lr: {loguniform: [0.001, 0.01]}
      ppo.entropy_coeff: {grid_search: [0.0, 0.003]}
    cores:                      # optional: a grid over cores, each with kwargs valid for it
      gru:
        core_kwargs: {hidden_size: 32, num_layers: 1}
        search: {model.core_kwargs.hidden_size: {choice: [16, 32]}}
      gtrxl:
        core_kwargs: {d_model: 32, num_layers: 1, num_heads: 2, memory_len: 8, d_ff: 64}
        search: {model.core_kwargs.memory_len: {grid_search: [4, 8]}}
    num_samples: 1              # random draws per grid point
    seed: 0                     # seeds the random draws (same seed, same trials)
    metric: episode_return_mean
    mode: max
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2}   # or {type: fifo}

Spaces: ``grid_search: [values]``, ``choice: [values]``, ``uniform: [low, high]``,
``loguniform: [low, high]`` (low > 0), ``randint: [low, high)``. A ``cores`` entry replaces
``model.core_kwargs`` wholesale, so no trial carries a kwarg of another core. Trials are
grid points x ``num_samples``; random values are drawn anew per grid point of ``search`` and
per core, and a grid inside one core's ``search`` shares its core's draws (a paired comparison).

``storage_path`` must be reachable from every node that runs trials (one machine, NFS).

Every trial's config is drawn here, up front (Tune's own variant generator, seeded), and
validated through :mod:`memrl.config` before Ray starts: an invalid space fails in a second
with the offending dotted key. Tune then runs exactly those configs (ASHA may stop some early);
each trial trains with memrl's own loop pieces, so it writes memrl's TensorBoard scalars and
checkpoints under its trial folder. ``--resume`` continues an interrupted experiment from the
trials' last checkpoints (``tune.Tuner.restore``) and reprints the table of a finished one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.console import Console
from rich.table import Table

from memrl import checkpoints
from memrl.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_yaml_tree,
    resolve_config_path,
    resolve_resources,
)
from memrl.progress import IterationMetrics

# Not __name__: under `python -m memrl.tune` that is "__main__", outside memrl's log handler.
log = logging.getLogger("memrl.tune")

SPACES: tuple[str, ...] = ("grid_search", "choice", "uniform", "loguniform", "randint")
# What a trial reports to Tune each iteration: every headline number of the progress line.
REPORTED: tuple[str, ...] = tuple(f.name for f in fields(IterationMetrics))
CORE_KEY = "model.core"
CORE_KWARGS_KEY = "model.core_kwargs"
_BRANCH = "__core__"  # param-spec key of the per-core grid
BASE_FILE = "memrl_base.json"  # the experiment's base config, beside Tune's state


class TuneSpecError(ConfigError):
    """A search spec that cannot run; the message names the offending key."""


# --- the spec file ----------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CoreBranch(_Strict):
    """One core of a per-core grid: its kwargs (replacing the base's) and its own spaces."""

    core_kwargs: dict[str, Any] = Field(default_factory=dict, description="the core's kwargs")
    search: dict[str, Any] = Field(default_factory=dict, description="dotted key -> space")


class SchedulerSpec(_Strict):
    """Trial scheduler: ``fifo`` runs every trial to its stop condition; ``asha`` stops the
    worse ones at rungs grace_period * reduction_factor^k (in training iterations)."""

    type: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(1, gt=0, description="iterations before ASHA may stop a trial")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA keeps 1/reduction_factor")
    max_t: int | None = Field(
        None, gt=0, description="ASHA's last rung (default: the base's stop.iterations)"
    )


class TuneSpec(_Strict):
    """A search: a base memrl config, fixed overrides, spaces, and how Tune runs the trials."""

    name: str = Field(description="experiment folder name under storage_path")
    base: str = Field(description="memrl config (short name or path) every trial starts from")
    storage_path: str = Field("results/tune", description="experiments root (made absolute)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="fixed dotted keys")
    search: dict[str, Any] = Field(default_factory=dict, description="dotted key -> space")
    cores: dict[str, CoreBranch] | None = Field(None, description="per-core grid (optional)")
    num_samples: int = Field(1, gt=0, description="random draws per grid point")
    seed: int = Field(0, description="seed of the random draws")
    metric: str = Field("episode_return_mean", description="reported key to optimise")
    mode: Literal["max", "min"] = "max"
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    max_concurrent_trials: int | None = Field(None, gt=0, description="null = as resources fit")
    max_failures: int = Field(0, ge=0, description="retries of a failed trial (from checkpoint)")

    @model_validator(mode="after")
    def _core_in_one_place(self) -> TuneSpec:
        if self.cores is not None:
            if not self.cores:
                raise ValueError("cores: give at least one core, or drop the section")
            clash = [k for k in self.search if k == CORE_KEY or k.startswith(CORE_KWARGS_KEY)]
            if clash:
                raise ValueError(
                    f"search.{clash[0]}: with a 'cores' section, search the core and its "
                    "kwargs inside cores.<name>.search"
                )
        return self

    @property
    def experiment_path(self) -> Path:
        """Absolute folder of this experiment (Tune's storage_path / name)."""
        return Path(self.storage_path).expanduser().resolve() / self.name


def parse_space(key: str, spec: Any) -> Any:
    """A Tune search space from its YAML form ``{kind: args}``; ``key`` names it in errors.

    Returns a ``tune.grid_search`` dict or a ``ray.tune.search.sample.Domain``.
    Raises TuneSpecError naming ``key`` when the kind or its arguments are invalid.
    """
    from ray import tune

    if not (isinstance(spec, Mapping) and len(spec) == 1 and next(iter(spec)) in SPACES):
        raise TuneSpecError(
            f"{key}: a space must be one of {{{', '.join(f'{s}: ...' for s in SPACES)}}}, "
            f"got {spec!r}"
        )
    kind, args = next(iter(spec.items()))
    if kind in ("grid_search", "choice"):
        if not isinstance(args, list) or not args:
            raise TuneSpecError(f"{key}: {kind} needs a non-empty list of values, got {args!r}")
        return tune.grid_search(args) if kind == "grid_search" else tune.choice(args)
    numeric = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args or [])
    if not isinstance(args, list) or len(args) != 2 or not numeric:
        raise TuneSpecError(f"{key}: {kind} needs [low, high] (two numbers), got {args!r}")
    low, high = args
    if not low < high:
        raise TuneSpecError(f"{key}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "uniform":
        return tune.uniform(float(low), float(high))
    if kind == "loguniform":
        if low <= 0:
            raise TuneSpecError(f"{key}: loguniform needs 0 < low, got [{low}, {high}]")
        return tune.loguniform(float(low), float(high))
    if not (isinstance(low, int) and isinstance(high, int)):
        raise TuneSpecError(f"{key}: randint needs integers [low, high), got [{low}, {high}]")
    return tune.randint(low, high)


def _parse_spaces(section: str, spaces: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, spec in spaces.items():
        if not key or any(not part for part in str(key).split(".")):
            raise TuneSpecError(f"{section}: {key!r} is not a dotted config key")
        out[key] = parse_space(f"{section}.{key}", spec)
    return out


def param_spec(spec: TuneSpec) -> dict[str, Any]:
    """The unresolved Tune spec: dotted keys -> spaces, plus a grid over per-core branches."""
    unresolved: dict[str, Any] = _parse_spaces("search", spec.search)
    if spec.cores:
        from ray import tune

        branches = []
        for core, branch in spec.cores.items():
            inner = _parse_spaces(f"cores.{core}.search", branch.search)
            branches.append({CORE_KEY: core, CORE_KWARGS_KEY: dict(branch.core_kwargs), **inner})
        unresolved[_BRANCH] = tune.grid_search(branches)
    return unresolved


def _split_override(item: str) -> tuple[str, str, str]:
    key, sep, raw = item.partition("=")
    if not sep:
        raise TuneSpecError(f"override {item!r} must look like key=value")
    head, _, rest = key.strip().partition(".")
    return head, rest, raw


def load_tune_spec(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TuneSpec:
    """Read a search spec and apply ``key=value`` overrides to it.

    ``overrides.<dotted memrl key>=v`` and ``search.<dotted memrl key>=<space>`` address one
    entry of those sections (the memrl key keeps its dots); other keys are dotted paths into
    the spec (``scheduler.grace_period=1``). Raises TuneSpecError naming any unknown key.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise TuneSpecError(f"search spec {str(path)!r} not found")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise TuneSpecError(f"{file}: invalid YAML: {err}") from err
    if not isinstance(data, dict):
        raise TuneSpecError(f"{file}: a search spec must be a mapping")
    plain = []
    for item in overrides:
        head, rest, raw = _split_override(item)
        if head in ("overrides", "search") and rest:
            data.setdefault(head, {})
            data[head] = {**(data[head] or {}), rest: yaml.safe_load(raw) if raw else ""}
        else:
            plain.append(item)
    data = apply_overrides(data, plain)
    if isinstance(data.get("base"), str):  # a relative base is relative to the spec file
        candidate = file.parent / data["base"]
        if candidate.is_file():
            data["base"] = str(candidate.resolve())
    try:
        return TuneSpec.model_validate(data)
    except ValidationError as err:
        lines = []
        for item in err.errors():
            key = ".".join(str(p) for p in item["loc"]) or "(top level)"
            if item["type"] == "extra_forbidden":
                lines.append(f"{key}: unknown key")
            else:
                lines.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
        valid = ", ".join(TuneSpec.model_fields)
        raise TuneSpecError(
            f"{file}: invalid search spec:\n"
            + "\n".join(f"  {x}" for x in lines)
            + f"\n  (top-level keys: {valid})"
        ) from err


# --- drawing and validating the trials ---------------------------------------------------------
@dataclass
class Variant:
    """One trial: the values drawn for it and the ``key=value`` overrides that set them."""

    index: int
    params: dict[str, Any]
    overrides: list[str]
    bundles: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "params": self.params,
            "overrides": self.overrides,
            "bundles": self.bundles,
        }


def override(key: str, value: Any) -> str:
    """``key=value`` that memrl.config parses back to ``value`` (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


def draw_variants(spec: TuneSpec) -> list[Variant]:
    """Every trial of ``spec``: each grid point ``num_samples`` times, random spaces drawn anew
    for each (seeded by ``spec.seed``). Raises TuneSpecError for an invalid space."""
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    unresolved = param_spec(spec)
    rng = np.random.RandomState(spec.seed)
    variants: list[Variant] = []
    for _ in range(spec.num_samples):
        for _, resolved in generate_variants(unresolved, random_state=rng):
            params: dict[str, Any] = {}
            items: list[str] = []
            for key, value in resolved.items():
                if key == _BRANCH:
                    for bkey, bvalue in value.items():
                        items.append(override(bkey, bvalue))
                        if bkey != CORE_KWARGS_KEY:  # whole kwargs tables are not "params"
                            params[bkey] = bvalue
                else:
                    items.append(override(key, value))
                    params[key] = value
            variants.append(Variant(len(variants), params, items))
    return variants


def base_data(spec: TuneSpec) -> dict[str, Any]:
    """The base config with the spec's fixed overrides applied (plain data, no ``base``)."""
    tree = load_yaml_tree(resolve_config_path(spec.base))
    return apply_overrides(tree, [override(k, v) for k, v in spec.overrides.items()])


def trial_config(base: Mapping[str, Any], variant: Variant, **extra: Any) -> TrainConfig:
    """The validated memrl config of one trial (``extra``: more dotted keys, e.g. output_dir)."""
    items = [*variant.overrides, *(override(k, v) for k, v in extra.items())]
    data = apply_overrides(dict(base), items)
    return config_from_dict(data, source=f"trial {variant.index} {variant.params}")


def validate_variants(spec: TuneSpec, base: Mapping[str, Any], variants: list[Variant]) -> None:
    """Validate every trial's config through memrl.config; build each distinct env once.

    Raises TuneSpecError listing the first failing trials (each message names the dotted key).
    """
    from memrl.train import check_env

    problems = []
    tasks_checked: list[Any] = []
    for variant in variants:
        try:
            cfg = trial_config(base, variant)
            task = cfg.task.model_dump()
            if task not in tasks_checked:
                check_env(cfg)
                tasks_checked.append(task)
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        shown = "\n".join(problems[:5])
        more = f"\n(and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TuneSpecError(
            f"{len(problems)} of {len(variants)} trials of {spec.name!r} have an invalid "
            f"config:\n{shown}{more}"
        )


def plan(spec: TuneSpec) -> tuple[dict[str, Any], list[Variant]]:
    """The base data and the validated trials of ``spec`` (no Ray needed)."""
    try:
        base = base_data(spec)
        config_from_dict(base, source=f"base {spec.base!r} with the spec's overrides")
    except TuneSpecError:
        raise
    except ConfigError as err:
        raise TuneSpecError(str(err)) from err
    variants = draw_variants(spec)
    validate_variants(spec, base, variants)
    return base, variants


# --- one trial ----------------------------------------------------------------------------------
def _report_value(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def train_trial(config: dict[str, Any], base: dict[str, Any], experiment: str) -> None:
    """Tune function trainable: train one memrl config, report every iteration.

    ``base`` is the plain base config data and ``experiment`` the experiment folder (both
    shared by all trials, passed through ``tune.with_parameters``); ``config["variant"]`` is
    this trial's :class:`Variant` dict. memrl's output (TensorBoard, metrics.jsonl) goes straight
    to the trial's folder under ``experiment`` (not Tune's per-session working dir, which is
    only copied to storage at checkpoints and starts empty on resume); checkpoints go to Tune,
    which restores the newest on resume or retry.
    """
    from ray import tune

    from memrl.progress import RunLog
    from memrl.train import build_algorithm, run_iteration, setup_logging, stop_reason

    variant = Variant(**config["variant"])
    trial_dir = Path(experiment) / trial_dirname(variant.index)
    cfg = trial_config(base, variant, output_dir=str(trial_dir))
    setup_logging(cfg.logging.level)
    iteration, env_steps, time_before = 0, 0, 0.0
    algo = None
    resume = tune.get_checkpoint()
    if resume is not None:
        with resume.as_directory() as folder:
            path = checkpoints.find_verified(folder)  # issue 13: verified before unpickling
            state = checkpoints.load_state(path)
            iteration, env_steps, time_before = state.iteration, state.env_steps, state.time_s
            algo = build_algorithm(cfg, resume=path)
        log.info("trial %d resumed at iteration %d", variant.index, iteration)
    else:
        algo = build_algorithm(cfg)
    run_log = RunLog(cfg.run_dir, tensorboard=cfg.logging.tensorboard)
    config_data = cfg.to_yaml_dict()
    t0 = time.perf_counter()
    try:
        while stop_reason(cfg, iteration, env_steps, time_before) is None:
            metrics, flat = run_iteration(algo, run_log, iteration, env_steps, time_before, t0)
            iteration, env_steps = metrics.iteration, metrics.env_steps
            report = {k: _report_value(getattr(metrics, k)) for k in REPORTED}
            # Any flattened RLlib key can be the metric too ("env_runners/episode_return_mean").
            report.update({k: v for k, v in flat.items() if k in config.get("extra_keys", ())})
            done = stop_reason(cfg, iteration, env_steps, metrics.time_s) is not None
            periodic = cfg.checkpoint.every > 0 and iteration % cfg.checkpoint.every == 0
            if periodic or (done and cfg.checkpoint.at_end):
                with tempfile.TemporaryDirectory(prefix="memrl-ckpt-") as folder:
                    state = checkpoints.CheckpointState(
                        iteration, env_steps, metrics.time_s, cfg.name
                    )
                    checkpoints.save(algo, Path(folder), config_data, state, keep=1)
                    tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))
            else:
                tune.report(report)
            time_before, t0 = metrics.time_s, time.perf_counter()
    finally:
        run_log.close()
        algo.stop()


# --- running the search -------------------------------------------------------------------------
def _init_ray(base_cfg: TrainConfig) -> bool:
    from memrl.train import init_ray

    return init_ray(base_cfg)


def _assign_resources(base: Mapping[str, Any], variants: list[Variant]) -> None:
    """Resolve each trial's "auto" resources against the cluster; record its Tune bundles.

    The resolved numbers become overrides, so a trial builds exactly what its placement group
    reserved.
    """
    from memrl.train import build_algorithm_config, cluster_resources

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
        pgf = algo_config.algo_class.default_resource_request(algo_config)
        variant.bundles = [
            {k: float(v) for k, v in b.items() if v} or {"CPU": 0.0} for b in pgf.bundles
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


def trial_dirname(index: int) -> str:
    """The folder of trial ``index`` inside the experiment folder."""
    return f"trial_{index:03d}"


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
    started = _init_ray(base_cfg)
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


# --- the report ---------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def short_names(keys: Sequence[str]) -> list[str]:
    """Column names: each dotted key's last part, or the whole key where that is ambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [k if last.count(name) > 1 else name for k, name in zip(keys, last, strict=True)]


def results_table(spec: TuneSpec, results: Any) -> tuple[Table, Any]:
    """A rich table of every trial (params, iterations, metric) and the best result (or None)."""
    rows = sorted(results, key=lambda r: r.config["variant"]["index"])
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.config["variant"]["params"] if k not in keys]
    try:
        best = results.get_best_result(spec.metric, spec.mode, scope="last")
    except RuntimeError:  # no trial reported a finite metric
        best = None
    table = Table(title=f"{spec.name}: {spec.metric} ({spec.mode}); * = best")
    for col in ("trial", *short_names(keys), "iters", "env steps", spec.metric, "status"):
        table.add_column(
            col, justify="left" if col in ("trial", "status") else "right", no_wrap=True
        )
    for r in rows:
        variant, metrics = r.config["variant"], r.metrics or {}
        status = "error" if r.error else "ok"
        value = metrics.get(spec.metric)
        mark = best is not None and r.path == best.path
        table.add_row(
            f"{variant['index']:03d}{' *' if mark else ''}",
            *(_fmt(variant["params"].get(k)) for k in keys),
            _fmt(metrics.get("iteration")),
            _fmt(metrics.get("env_steps")),
            _fmt(value),
            status,
            style="bold green" if mark else None,
        )
    return table, best


def print_report(spec: TuneSpec, results: Any, console: Console) -> int:
    """Print the table, the best trial and how to reproduce it; returns the exit code."""
    table, best = results_table(spec, results)
    # A pipe or a log file gets rich's default 80 columns: too few for the table.
    wide = console if console.is_terminal else Console(file=console.file, width=200)
    wide.print(table)
    errors = [r for r in results if r.error]
    for r in errors:
        console.print(f"[red]trial {r.config['variant']['index']:03d} failed: {r.error}[/red]")
    if best is None:
        console.print(f"[yellow]no trial reported a finite {spec.metric}[/yellow]")
        return 1 if errors else 0
    variant = best.config["variant"]
    console.print(
        f"best: trial {variant['index']:03d}  {spec.metric} = {_fmt(best.metrics[spec.metric])}"
        f"  {variant['params']}",
        highlight=False,
    )
    fixed = [override(k, v) for k, v in spec.overrides.items()]
    cmd = " ".join(["memrl train", spec.base, *(f"'{o}'" for o in (*fixed, *variant["overrides"]))])
    console.print(f"reproduce: {cmd}", highlight=False, soft_wrap=True)
    console.print(f"trial folder: {best.path}", highlight=False)
    if best.checkpoint is not None:
        console.print(f"checkpoint:   {best.checkpoint.path}", highlight=False)
    console.print(f"TensorBoard:  tensorboard --logdir {spec.experiment_path}", highlight=False)
    return 1 if errors else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memrl tune",
        description="Hyperparameter search (Ray Tune) over a memrl config; see configs/tune/.",
        epilog="overrides: key=value into the spec, e.g. num_samples=4 storage_path=/abs/dir "
        "overrides.stop.iterations=2 'search.ppo.lr={choice: [0.001, 0.003]}'",
    )
    parser.add_argument("spec", help="search spec YAML (e.g. configs/tune/tmaze.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument(
        "--resume", action="store_true", help="continue (or re-report) the experiment"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and list the trials, start nothing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``memrl tune`` and ``python -m memrl.tune``; returns the exit code."""
    args = _parser().parse_intermixed_args(sys.argv[1:] if argv is None else list(argv))
    console = Console(soft_wrap=True)
    from memrl.train import setup_logging

    # Checkpointing every iteration of short trials is intended, not a bottleneck to warn of.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    setup_logging()
    try:
        spec = load_tune_spec(args.spec, args.overrides)
        if args.dry_run:
            _, variants = plan(spec)
            for v in variants:
                console.print(f"trial {v.index:03d}: {' '.join(v.overrides)}", highlight=False)
            console.print(f"{len(variants)} trials valid", highlight=False)
            return 0
        results = run(spec, resume=args.resume, console=console)
    except ConfigError as err:
        console.print(f"[red]memrl tune: {err}[/red]", highlight=False)
        return 2
    return print_report(spec, results, console)


if __name__ == "__main__":
    sys.exit(main())

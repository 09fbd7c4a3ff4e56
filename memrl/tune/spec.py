"""The search spec file of ``memrl tune``: its schema, its spaces, and loading it with overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memrl.config import ConfigError, apply_overrides

SPACES: tuple[str, ...] = ("grid_search", "choice", "uniform", "loguniform", "randint")
CORE_KEY = "model.core"
CORE_KWARGS_KEY = "model.core_kwargs"
BRANCH = "__core__"  # param-spec key of the per-core grid


class TuneSpecError(ConfigError):
    """A search spec that cannot run; the message names the offending key."""


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
        unresolved[BRANCH] = tune.grid_search(branches)
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

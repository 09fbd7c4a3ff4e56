"""The learning-suite YAML (``configs/repro/<suite>.yaml``): a matrix of task x core x
training-sequence length x seed, validated once with every error naming its dotted key.

::

    name: quick                 # optional: the file's stem
    seeds: 3                    # seeds 0..N-1 per cell (--seeds overrides)
    margin: 0.5                 # return a core must beat the memoryless baseline by
    baseline: mlp               # core label drawn dashed and compared against
    seq_lens: [16]              # model.max_seq_len values (cpu scale)
    overrides: {resources.num_env_runners: 0}   # dotted keys for every cell (cpu scale)
    cores:                      # label -> core; `core` defaults to the label
      gru: {core_kwargs: {hidden_size: 32, num_layers: 1}, overrides: {ppo.lr: 0.002}}
      mlp: {core_kwargs: {hidden_size: 32}}
    tasks:
      tmaze4:
        config: demo/gru        # a memrl training config (short name or path)
        overrides: {task.corridor_len: 4}
        timesteps: 30000        # stop after this many env steps (clears iterations/time_s)
        chance: 0.0             # return of a memoryless (or random) policy, drawn as a line
        threshold: 3.0          # return whose first crossing gives "env steps to threshold"
        paper: {gru: tmaze/gru} # --scale paper: these configs, run unchanged

At cpu scale a cell's config is ``config`` with, in order: the suite's ``overrides``, the
task's ``overrides`` and ``timesteps``, the core's ``core``/``core_kwargs`` (replacing the
config's kwargs wholesale) and ``overrides``, the task's ``core_overrides[label]``, then
``model.max_seq_len``, the seed and the cell's output folders. At paper scale it is
``paper[label]`` unchanged but for the seed and output folders.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memrl.config import ConfigError

SUITE_DIR = "repro"  # under the configs directory: configs/repro/<suite>.yaml
LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # labels name folders and cell ids
Scale = Literal["cpu", "paper"]


class SuiteError(ConfigError):
    """A suite file that cannot run; the message names each offending dotted key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CoreSpec(_Strict):
    """One core of the matrix (the memoryless baseline is core ``mlp``)."""

    core: str | None = Field(None, description="memrl core name (default: the entry's label)")
    core_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="replaces model.core_kwargs of the task's config"
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted config key -> value for this core (cpu scale)"
    )


class Reference(_Strict):
    """A published number to compare against (drawn as a dotted line)."""

    label: str = Field(description="e.g. 'POPGym paper GRU'")
    value: float = Field(description="episode return")


class TaskSpec(_Strict):
    """One task: a base training config plus what counts as chance and success."""

    config: str = Field(description="memrl training config (short name or path), cpu scale")
    description: str = Field("", description="one line for the report")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted config key -> value (env kwargs, ppo.*)"
    )
    timesteps: int | None = Field(
        None, gt=0, description="cpu scale: stop.timesteps (stop.iterations/time_s cleared)"
    )
    chance: float = Field(description="return of a memoryless or random policy")
    threshold: float = Field(description="return whose first crossing is 'steps to threshold'")
    margin: float | None = Field(None, ge=0, description="default: the suite's margin")
    eval_episodes: int = Field(100, ge=0, description="greedy evaluation episodes (0 = none)")
    cores: list[str] | None = Field(None, description="core labels (default: all)")
    seq_lens: list[int] | None = Field(None, description="default: the suite's seq_lens")
    core_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="core label -> dotted overrides for this task"
    )
    paper: dict[str, str] = Field(
        default_factory=dict, description="core label -> paper-scale config (--scale paper)"
    )
    references: list[Reference] = Field(default_factory=list, description="published numbers")


class SuiteSpec(_Strict):
    """A learning suite: cores x tasks x seq lens x seeds."""

    name: str | None = Field(None, pattern=LABEL, description="default: the file's stem")
    description: str = Field("", description="one paragraph for the report")
    seeds: int = Field(3, gt=0, description="seeds 0..N-1 per cell")
    margin: float = Field(ge=0, description="return a core must beat the baseline by")
    baseline: str = Field("mlp", description="core label of the memoryless baseline")
    seq_lens: list[int] = Field([16], min_length=1, description="model.max_seq_len values")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted config key -> value for every cell (cpu scale)"
    )
    cores: dict[str, CoreSpec] = Field(min_length=1, description="core label -> core")
    tasks: dict[str, TaskSpec] = Field(min_length=1, description="task label -> task")

    @model_validator(mode="after")
    def _labels_resolve(self) -> SuiteSpec:
        import re

        problems: list[str] = []
        for kind, labels in (("cores", self.cores), ("tasks", self.tasks)):
            problems += [
                f"{kind}.{label}: a label must match {LABEL} (it names folders)"
                for label in labels
                if not re.match(LABEL, label)
            ]
        cores = list(self.cores)
        if self.baseline not in self.cores:
            problems.append(f"baseline: unknown core label {self.baseline!r}; {_valid(cores)}")
        for name, lens in [("seq_lens", self.seq_lens)] + [
            (f"tasks.{t}.seq_lens", task.seq_lens) for t, task in self.tasks.items()
        ]:
            if lens is not None and (not lens or any(n <= 0 for n in lens)):
                problems.append(f"{name}: need a non-empty list of positive ints, got {lens}")
        for label, task in self.tasks.items():
            where = f"tasks.{label}"
            for i, core in enumerate(task.cores or []):
                if core not in self.cores:
                    problems.append(f"{where}.cores[{i}]: unknown core {core!r}; {_valid(cores)}")
            for section in ("core_overrides", "paper"):
                for core in getattr(task, section):
                    if core not in self.cores:
                        problems.append(
                            f"{where}.{section}.{core}: unknown core label; {_valid(cores)}"
                        )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def task_cores(self, task: str) -> list[str]:
        """Core labels of ``task`` in the suite's order."""
        chosen = self.tasks[task].cores
        return [c for c in self.cores if chosen is None or c in chosen]

    def task_seq_lens(self, task: str) -> list[int]:
        return list(self.tasks[task].seq_lens or self.seq_lens)

    def task_margin(self, task: str) -> float:
        margin = self.tasks[task].margin
        return self.margin if margin is None else margin


def _valid(labels: list[str], word: str | None = None) -> str:
    close = difflib.get_close_matches(word, labels, n=3, cutoff=0.5) if word else []
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}valid: {', '.join(labels) if labels else '(none)'}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model holding the last part of ``loc`` (dict keys skipped)."""
    model: type[BaseModel] = SuiteSpec
    mapped = {"cores": CoreSpec, "tasks": TaskSpec, "references": Reference}
    i = 0
    parts = list(loc[:-1])
    while i < len(parts):
        part = str(parts[i])
        if part in mapped and part in model.model_fields:
            model = mapped[part]
            i += 2  # the label (or list index) after the section name
            continue
        return None
    return model


def _explain(err: ValidationError) -> list[str]:
    lines = []
    for item in err.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            model = _model_at(loc)
            valid = list(model.model_fields) if model else []
            lines.append(f"{key}: unknown key; {_valid(valid, str(loc[-1]))}")
        elif item["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif item["type"] == "value_error" and not loc:
            lines += [line for line in str(item["ctx"]["error"]).splitlines()]
        else:
            lines.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return lines


def resolve_suite_path(name: str | os.PathLike[str]) -> Path:
    """The YAML of a suite: a path, or a name under ``configs/repro/``.

    Raises SuiteError listing the shipped suites when nothing matches.
    """
    from memrl.config import config_dirs

    text = str(name)
    candidates = [Path(text).expanduser()]
    for root in config_dirs():
        candidates += [root / SUITE_DIR / text, root / SUITE_DIR / f"{text}.yaml"]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    known = list_suites()
    raise SuiteError(f"suite {text!r} not found; {_valid(known, text)}")


def list_suites() -> list[str]:
    """Names of the shipped suites."""
    from memrl.config import config_dirs

    return sorted({p.stem for root in config_dirs() for p in (root / SUITE_DIR).glob("*.yaml")})


def suite_from_dict(data: Any, source: str = "suite") -> SuiteSpec:
    """Validate plain data into a SuiteSpec. Raises SuiteError naming each bad dotted key."""
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite must be a mapping, got {type(data).__name__}")
    try:
        return SuiteSpec.model_validate(data)
    except ValidationError as err:
        lines = _explain(err)
        raise SuiteError(
            f"{source}: invalid suite:\n" + "\n".join(f"  {x}" for x in lines)
        ) from err


def load_suite(name: str | os.PathLike[str]) -> SuiteSpec:
    """Read and validate a suite (path or name); ``name`` defaults to the file's stem.

    Raises SuiteError for a missing file, invalid YAML, or any schema error.
    """
    path = resolve_suite_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SuiteError(f"{path}: invalid YAML: {err}") from err
    spec = suite_from_dict(data, source=str(path))
    if spec.name is None:
        spec = spec.model_copy(update={"name": path.stem})
    return spec

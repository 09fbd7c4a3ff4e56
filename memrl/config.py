"""Typed training configuration, loaded from YAML and validated once, at the edge.

A config file is YAML whose top-level sections are the fields of :class:`TrainConfig`. A file
may name a parent with ``base: <short name or path>``; the child is deep-merged over the parent
(mappings merge key by key, any other value replaces), so each shipped config stays short.
Command-line overrides ``dotted.key=value`` are applied last; the value is parsed as YAML
(``stop.iterations=2`` is an int, ``model.core_kwargs.memory_len=null`` is None).

Every error (unknown key anywhere, unknown core or env, a value of the wrong type) is raised as
one :class:`ConfigError` naming each offending dotted key with its valid keys or values (close
matches first), before anything starts Ray.

Short names resolve under the configs directory: ``tmaze/arelit`` -> ``configs/tmaze/arelit.yaml``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

BASE_KEY = "base"
# Algorithms with a section in TrainConfig (r2d2 and td3 also use the replay section).
ALGOS: tuple[str, ...] = ("ppo", "r2d2", "td3")
# Env-construction keys of ``task`` that are not env kwargs.
TASK_RESERVED = ("env_name",)


class ConfigError(ValueError):
    """A config that cannot be used; the message names every offending dotted key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)


class TaskConfig(BaseModel):
    """The environment: a gymnasium id plus its constructor kwargs, side by side (flat)."""

    # Extra keys are the env's kwargs; TrainConfig checks them against the env's signature.
    model_config = ConfigDict(extra="allow", validate_default=True)

    env_name: str = Field(
        description="gymnasium id, tried as given and with the 'memrl/' prefix "
        "(e.g. memrl/TMaze-v0, MysteryPath-Grid-Easy-v0, popgym-RepeatPreviousEasy-v0)"
    )

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The env's constructor kwargs (every key but ``env_name``)."""
        return dict(self.model_extra or {})


class ModelConfig(_Section):
    """The memory core and the network around it."""

    core: str = Field("gru", description="memory core: a memrl.models name, or 'mlp' (none)")
    core_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="core hyperparameters; keys checked against core_class(core).hyperparameters()",
    )
    network: dict[str, Any] = Field(
        default_factory=dict,
        description="encoder/head settings passed to the RLModule ({} = its defaults)",
    )
    max_seq_len: int = Field(
        64, gt=0, description="steps per training sequence (truncated backprop length)"
    )


class PPOHyperparameters(_Section):
    """PPO settings, passed to ``PPOConfig.training``."""

    lr: float = Field(3e-4, gt=0, description="Adam learning rate")
    gamma: float = Field(0.99, ge=0, le=1, description="discount factor")
    lambda_: float = Field(0.95, ge=0, le=1, alias="lambda", description="GAE lambda")
    clip_param: float = Field(0.2, gt=0, description="PPO ratio clip epsilon")
    vf_clip_param: float = Field(10.0, gt=0, description="value-loss clip (in reward units)")
    num_epochs: int = Field(4, gt=0, description="passes over each train batch")
    minibatch_size: int = Field(256, gt=0, description="steps per SGD minibatch")
    train_batch_size_per_learner: int = Field(
        2048, gt=0, description="env steps per iteration and learner"
    )
    entropy_coeff: float = Field(0.01, ge=0, description="entropy bonus weight")
    vf_loss_coeff: float = Field(0.5, ge=0, description="value-loss weight")
    grad_clip: float | None = Field(0.5, gt=0, description="global grad-norm clip (null = off)")
    use_kl_loss: bool = Field(False, description="add RLlib's adaptive KL penalty")
    kl_coeff: float = Field(0.2, ge=0, description="initial KL penalty weight (use_kl_loss)")

    @model_validator(mode="after")
    def _minibatch_fits(self) -> PPOHyperparameters:
        if self.minibatch_size > self.train_batch_size_per_learner:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must be <= "
                f"train_batch_size_per_learner ({self.train_batch_size_per_learner})"
            )
        return self

    def training_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``PPOConfig.training`` (RLlib spells GAE lambda ``lambda_``)."""
        return self.model_dump(by_alias=False)


class R2D2Hyperparameters(_Section):
    """Recurrent Q-learning (R2D2, Kapturowski et al. 2019; defaults from its table 2)."""

    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    adam_eps: float = Field(1e-3, gt=0, description="Adam epsilon")
    gamma: float = Field(0.997, ge=0, le=1, description="discount factor")
    n_step: int = Field(5, gt=0, description="steps of reward before bootstrapping")
    value_rescaling: bool = Field(True, description="train on h(Q): sign(x)(sqrt(|x|+1)-1)+eps x")
    rescale_eps: float = Field(1e-3, gt=0, description="eps of the value rescaling h")
    target_update_period: int = Field(2500, gt=0, description="updates between target copies")
    double_q: bool = Field(True, description="bootstrap with the online net's argmax (double Q)")
    dueling: bool = Field(True, description="dueling Q head (value + advantage)")
    epsilon: float = Field(0.4, ge=0, le=1, description="Ape-X base epsilon of the actors")
    epsilon_alpha: float = Field(7.0, ge=0, description="Ape-X: eps_i = eps^(1+i/(N-1)*alpha)")
    batch_size: int = Field(64, gt=0, description="sequences per learner update")
    learning_starts: int = Field(5000, ge=0, description="replay steps before the first update")
    updates_per_iteration: int = Field(4, gt=0, description="learner updates per iteration")
    grad_clip: float | None = Field(40.0, gt=0, description="global grad-norm clip (null = off)")
    delta_q_every: int = Field(100, ge=0, description="measure ΔQ every K updates (0 = never)")

    def r2d2_kwargs(self) -> dict[str, Any]:
        """The ``r2d2`` dict of ``memrl.rllib.r2d2.r2d2_config`` (the schedule keys stay out)."""
        skip = {"lr", "batch_size", "learning_starts", "updates_per_iteration"}
        return {k: v for k, v in self.model_dump().items() if k not in skip}


class TD3Hyperparameters(_Section):
    """Recurrent TD3 (Fujimoto et al. 2018) for Box actions."""

    actor_lr: float = Field(3e-4, gt=0, description="actor Adam learning rate")
    critic_lr: float = Field(3e-4, gt=0, description="critic Adam learning rate")
    gamma: float = Field(0.99, ge=0, le=1, description="discount factor")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak rate of the target networks")
    policy_delay: int = Field(2, gt=0, description="critic updates per actor/target update")
    target_noise: float = Field(0.2, ge=0, description="std of the target-policy smoothing noise")
    target_noise_clip: float = Field(0.5, ge=0, description="clip of the target-policy noise")
    exploration_noise: float = Field(0.1, ge=0, description="std of the actors' Gaussian noise")
    shared_core: bool = Field(False, description="actor and critics share one memory core")
    batch_size: int = Field(32, gt=0, description="sequences per learner update")
    learning_starts: int = Field(1000, ge=0, description="replay steps before the first update")
    updates_per_iteration: int = Field(1, gt=0, description="learner updates per iteration")
    grad_clip: float | None = Field(None, gt=0, description="global grad-norm clip (null = off)")


class ReplaySection(_Section):
    """Sharded sequence replay of the off-policy algorithms (r2d2, td3)."""

    capacity: int = Field(131072, gt=0, description="steps held per shard")
    num_shards: int = Field(1, gt=0, description="replay shard actors")
    burn_in: int = Field(40, ge=0, description="steps per sequence that only warm the state up")
    seq_len: int = Field(80, gt=0, description="training steps per sequence (after the burn-in)")
    chunk_overlap: int = Field(40, ge=0, description="steps chunks sent to replay overlap by")
    prioritized: bool = Field(True, description="prioritized (True) or uniform sampling")
    alpha: float = Field(0.9, ge=0, description="priority exponent")
    beta: float = Field(0.6, ge=0, le=1, description="importance-sampling exponent")
    eta: float = Field(0.9, ge=0, le=1, description="priority = eta*max|td| + (1-eta)*mean|td|")
    state_storage: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of stored recurrent state"
    )
    prefetch: int = Field(3, gt=0, description="sample rounds the learner keeps in flight")
    checkpoint_every: int = Field(
        1, ge=0, description="save the replay with every K-th checkpoint (0 = never)"
    )
    rollout_fragment_length: int = Field(
        40, gt=0, description="env steps each env adds per iteration"
    )
    checkpoint_every_steps: int = Field(
        50000, ge=0, description="fault tolerance: checkpoint a shard every N new steps (0 = never)"
    )
    checkpoint_dir: str | None = Field(
        None,
        description="fault-tolerance checkpoints dir (null = <output_dir>/replay_shards/<name>)",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> ReplaySection:
        if self.chunk_overlap >= self.seq_len:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be < seq_len ({self.seq_len})"
            )
        return self

    def offpolicy_kwargs(self, default_checkpoint_dir: Path | None = None) -> dict[str, Any]:
        """The ``replay`` dict of ``OffPolicyConfig.offpolicy`` (``checkpoint_dir`` filled in)."""
        data = self.model_dump()
        if data["checkpoint_dir"] is None and default_checkpoint_dir is not None:
            data["checkpoint_dir"] = str(default_checkpoint_dir)
        return data


Auto = Literal["auto"]


class ResourcesConfig(_Section):
    """Where things run. "auto" is resolved against the Ray cluster (see resolve_resources)."""

    address: str | None = Field(
        None, description="Ray cluster address; null = RAY_ADDRESS if set, else a local Ray"
    )
    num_cpus: int | Auto = Field("auto", description="CPUs of a local Ray (auto = all)")
    num_env_runners: int | Auto = Field(
        "auto", description="remote sampling actors (auto = CPUs left after driver and learners)"
    )
    num_envs_per_env_runner: int = Field(8, gt=0, description="vectorised envs per env runner")
    num_learners: int | Auto = Field(
        "auto", description="remote learners (auto = GPUs if more than one, else 0: in driver)"
    )
    num_gpus_per_learner: float | Auto = Field(
        "auto", description="GPUs per learner (auto = 1 if the cluster has a GPU, else 0)"
    )

    @field_validator("num_cpus", "num_env_runners", "num_learners", "num_gpus_per_learner")
    @classmethod
    def _non_negative(cls, value: Any) -> Any:
        if value != "auto" and value < 0:
            raise ValueError(f"must be >= 0 or 'auto', got {value!r}")
        return value


class StopConfig(_Section):
    """When training ends: the first condition reached (at least one must be set)."""

    iterations: int | None = Field(None, gt=0, description="training iterations")
    timesteps: int | None = Field(None, gt=0, description="env steps sampled (lifetime)")
    time_s: float | None = Field(None, gt=0, description="wall-clock seconds of training")

    @model_validator(mode="after")
    def _one_set(self) -> StopConfig:
        if self.iterations is None and self.timesteps is None and self.time_s is None:
            raise ValueError("set at least one of stop.iterations, stop.timesteps, stop.time_s")
        return self


class CheckpointConfig(_Section):
    """Checkpoints under ``<output_dir>/checkpoints/<name>/iter_NNNNNN``."""

    every: int = Field(10, ge=0, description="save every K iterations (0 = only at the end)")
    keep: int = Field(3, gt=0, description="most recent checkpoints kept on disk")
    at_end: bool = Field(True, description="save when training stops")


class LoggingConfig(_Section):
    """What a run reports."""

    tensorboard: bool = Field(True, description="write scalars under <output_dir>/runs/<name>")
    progress_every: int = Field(1, gt=0, description="print a progress line every K iterations")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")


class EvaluationConfig(_Section):
    """How ``memrl eval`` scores episodes (see memrl.evaluate for the success rule)."""

    episodes: int = Field(100, gt=0, description="episodes when --episodes is not given")
    success_final_reward: float | None = Field(
        None, description="an episode whose last reward is >= this succeeded (T-Maze: 4.0)"
    )
    success_threshold: float | None = Field(
        None, description="an episode whose return is > this succeeded"
    )


class TrainConfig(_Section):
    """One training run. Sections: task, model, ppo | r2d2 | td3 (+ replay), resources, stop,
    checkpoint, logging."""

    name: str = Field(description="run name: names the log and checkpoint folders")
    seed: int | None = Field(0, description="seed for envs and weights (null = random)")
    output_dir: str = Field("results", description="root of runs/ and checkpoints/ (made absolute)")
    algo: Literal["ppo", "r2d2", "td3"] = Field("ppo", description="algorithm: ppo, r2d2 or td3")
    task: TaskConfig = Field(description="environment id and kwargs")
    model: ModelConfig = Field(default_factory=ModelConfig, description="memory core and heads")
    ppo: PPOHyperparameters = Field(default_factory=PPOHyperparameters, description="PPO")
    r2d2: R2D2Hyperparameters = Field(default_factory=R2D2Hyperparameters, description="R2D2")
    td3: TD3Hyperparameters = Field(default_factory=TD3Hyperparameters, description="TD3")
    replay: ReplaySection = Field(default_factory=ReplaySection, description="off-policy replay")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="placement")
    stop: StopConfig = Field(description="stop conditions")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="saving")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="reporting")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="eval")

    @field_validator("name")
    @classmethod
    def _name_is_a_folder(cls, value: str) -> str:
        if not value or value.strip() != value or value.startswith(("/", ".")):
            raise ValueError(f"must be a non-empty relative folder name, got {value!r}")
        return value

    @property
    def run_dir(self) -> Path:
        """Absolute TensorBoard folder of this run."""
        return Path(self.output_dir).expanduser().resolve() / "runs" / self.name

    @property
    def checkpoint_dir(self) -> Path:
        """Absolute folder holding this run's checkpoints."""
        return Path(self.output_dir).expanduser().resolve() / "checkpoints" / self.name

    @property
    def replay_checkpoint_dir(self) -> Path:
        """Where an off-policy run's replay shards checkpoint for fault tolerance by default."""
        return Path(self.output_dir).expanduser().resolve() / "replay_shards" / self.name

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain data that :func:`config_from_dict` turns back into an equal config."""
        data = self.model_dump(mode="json", by_alias=True)
        data["output_dir"] = str(Path(self.output_dir).expanduser().resolve())
        return data


# --- finding files ------------------------------------------------------------------------------
def config_dirs() -> list[Path]:
    """Where short names are looked up: $MEMRL_CONFIG_DIR, ./configs, the repository's configs/."""
    dirs = []
    if os.environ.get("MEMRL_CONFIG_DIR"):
        dirs.append(Path(os.environ["MEMRL_CONFIG_DIR"]))
    dirs.append(Path.cwd() / "configs")
    dirs.append(Path(__file__).resolve().parents[1] / "configs")
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def list_configs() -> list[str]:
    """Short names of every shipped config (files starting with '_' are bases, not listed)."""
    names: set[str] = set()
    for root in config_dirs():
        for path in root.rglob("*.yaml"):
            # configs/tune/ holds search specs for `memrl tune`, not training configs.
            if not path.name.startswith("_") and path.relative_to(root).parts[0] != "tune":
                names.add(path.relative_to(root).with_suffix("").as_posix())
    return sorted(names)


def resolve_config_path(name: str | os.PathLike[str], relative_to: Path | None = None) -> Path:
    """The YAML file for a path or a short name (``tmaze/arelit``).

    Raises ConfigError listing close short names when nothing matches.
    """
    text = str(name)
    candidates = [Path(text).expanduser()]
    if relative_to is not None:
        candidates.insert(0, relative_to / text)
    for root in config_dirs():
        candidates.append(root / text)
        candidates.append(root / f"{text}.yaml")
    for path in candidates:
        if path.is_file():
            return path.resolve()
    known = list_configs()
    close = difflib.get_close_matches(text.removesuffix(".yaml"), known, n=5, cutoff=0.4)
    raise ConfigError(
        f"config {text!r} not found (looked in {[str(d) for d in config_dirs()]}); "
        f"closest: {close or 'none'}; all: {known}"
    )


# --- loading --------------------------------------------------------------------------------
def deep_merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: mappings merge recursively; anything else in child replaces."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml_tree(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file with its ``base`` chain merged in (the ``base`` key removed).

    Raises ConfigError on a cycle, a missing base, or a file that is not a mapping.
    """
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config inheritance cycle: {chain}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    parent = data.pop(BASE_KEY, None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: '{BASE_KEY}' must name one config, got {parent!r}")
    parent_path = resolve_config_path(parent, relative_to=path.parent)
    return deep_merge(load_yaml_tree(parent_path, (*_seen, path)), data)


def parse_overrides(overrides: Iterable[str]) -> list[tuple[list[str], Any]]:
    """``["a.b=1", ...]`` -> ``[(["a", "b"], 1), ...]``; values parsed as YAML.

    Raises ConfigError on an item without ``=`` or with an empty key part.
    """
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {item!r} must look like dotted.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        # not valid YAML (e.g. "a: b: c"), or a scalar YAML cannot build (issue 13: a date
        # like 2020-13-45 raises ValueError): keep the text
        except (yaml.YAMLError, ValueError):
            value = raw
        parsed.append((parts, value))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``dotted.key=value`` set (intermediate mappings created).

    Keys are not checked here: validation afterwards names any unknown one.
    """
    out = deep_merge({}, data)
    for parts, value in parse_overrides(overrides):
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(
                    f"override {'.'.join(parts)}: {where} is a value ({child!r}), not a section"
                )
            else:
                child = node[part] = dict(child)
            node = child
        node[parts[-1]] = value
    return out


def load_config(
    name: str | os.PathLike[str], overrides: Sequence[str] = (), *, check_env: bool = True
) -> TrainConfig:
    """Load a config by short name or path, apply overrides, validate everything.

    ``check_env=False`` skips resolving the env id and its kwargs (for tools without the envs).
    Raises ConfigError naming each bad dotted key with its valid keys or values.
    """
    path = resolve_config_path(name)
    data = apply_overrides(load_yaml_tree(path), overrides)
    return config_from_dict(data, check_env=check_env, source=str(path))


def config_from_dict(
    data: Mapping[str, Any], *, check_env: bool = True, source: str = "config"
) -> TrainConfig:
    """Validate plain data (already merged) into a TrainConfig; see :func:`load_config`.

    Schema errors and the core/network/env checks are all collected, then raised together.
    """
    data = dict(data)
    lines: list[str] = []
    cfg: TrainConfig | None = None
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as err:
        lines += _explain(err)
    model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    core = model.get("core", ModelConfig.model_fields["core"].default)
    core_kwargs = model.get("core_kwargs") or {}
    if isinstance(core, str) and isinstance(core_kwargs, Mapping):
        lines += _check_core(core, core_kwargs)
    network = model.get("network") or {}
    if isinstance(network, Mapping):
        lines += _check_network(network)
    task = data.get("task")
    if check_env and isinstance(task, Mapping) and isinstance(task.get("env_name"), str):
        lines += _check_env(task["env_name"], {k: v for k, v in task.items() if k != "env_name"})
    if lines or cfg is None:
        raise ConfigError(f"{source}: invalid config:\n" + "\n".join(f"  {x}" for x in lines))
    return cfg


# --- semantic checks ------------------------------------------------------------------------
# --- issue 13: the YAML flow-mapping trap (kept apart: config.py is being split) -----------------
def colon_key_hint(key: Any) -> str | None:
    """The fix for a key that is really ``key: value`` written without the space.

    YAML reads ``{memory_len:64}`` as the one key ``"memory_len:64"`` (a colon followed by a
    non-space is part of a plain scalar), so the real key looks unknown. Returns e.g.
    ``"write `memory_len: 64` (a space after the colon): YAML read `memory_len:64` as one key"``,
    or None when ``key`` does not look like that.
    """
    if not isinstance(key, str) or ":" not in key:
        return None
    name, _, value = key.partition(":")
    if not name.strip() or not value.strip() or value.startswith(" "):
        return None
    return (
        f"write `{name.strip()}: {value.strip()}` (a space after the colon): "
        f"YAML read `{key}` as one key"
    )


def _suggest(word: str, valid: Iterable[str]) -> str:
    hint = colon_key_hint(word)  # issue 13
    if hint is not None:
        return hint
    word = str(word)  # issue 13: keys of YAML mappings may be ints, None, ...
    valid = list(valid)
    close = difflib.get_close_matches(word, valid, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}valid: {', '.join(valid) if valid else '(none)'}"


def _check_core(core: str, core_kwargs: Mapping[str, Any]) -> list[str]:
    from memrl.models import CORES, core_class

    if core == "mlp":
        from memrl.rllib.memoryless import MLP_DEFAULTS

        unknown = sorted(set(core_kwargs) - set(MLP_DEFAULTS))
        if unknown:
            return [
                f"model.core_kwargs: unknown {unknown} for core 'mlp'; valid: "
                + ", ".join(MLP_DEFAULTS)
            ]
        return []
    if core not in CORES:
        return [f"model.core: unknown core {core!r}; {_suggest(core, ('mlp', *CORES))}"]
    try:
        valid = core_class(core).hyperparameters()
    except ImportError as err:  # registered but its module is missing or broken
        return [f"model.core: core {core!r} cannot be imported: {err}"]
    return [
        f"model.core_kwargs.{key}: unknown kwarg of core {core!r}; "
        + _suggest(key, list(valid))
        + f" (defaults: {valid})"
        for key in core_kwargs
        if key not in valid
    ]


def _check_network(network: Mapping[str, Any]) -> list[str]:
    from dataclasses import fields

    from memrl.rllib.model_config import ModelConfig as NetworkConfig

    valid = [f.name for f in fields(NetworkConfig)]
    problems = [
        f"model.network.{key}: unknown key; {_suggest(key, valid)}"
        for key in network
        if key not in valid
    ]
    if problems:
        return problems
    try:
        NetworkConfig.from_dict(dict(network))
    except (ValueError, TypeError) as err:
        return [f"model.network: {err}"]
    return []


def resolve_env_id(env_name: str) -> str:
    """The registered gymnasium id for ``env_name``, as given or with the ``memrl/`` prefix.

    Raises ConfigError listing the closest registered ids.
    """
    import gymnasium as gym

    import memrl.envs  # noqa: F401  (registers memrl/ and popgym ids)

    for candidate in (env_name, f"memrl/{env_name}"):
        if candidate in gym.registry:
            return candidate
    known = sorted(gym.registry)
    close = difflib.get_close_matches(env_name, known, n=5, cutoff=0.5)
    close += [
        k for k in difflib.get_close_matches(f"memrl/{env_name}", known, n=3) if k not in close
    ]
    ours = [k for k in known if k.startswith("memrl/")]
    popgym = sum(k.startswith("popgym-") for k in known)
    raise ConfigError(
        f"task.env_name: unknown env {env_name!r}; closest: {close or 'none'}; "
        f"memrl ids: {ours} (plus {popgym} popgym-* ids and any other gymnasium id)"
    )


def _check_env(env_name: str, env_kwargs: Mapping[str, Any]) -> list[str]:
    try:
        env_id = resolve_env_id(env_name)
    except ConfigError as err:
        return [str(err)]
    from memrl.envs import env_kwargs as accepted_kwargs

    try:
        valid = accepted_kwargs(env_id)
    except ImportError:  # the env's module needs a package that is missing: checked at make
        return []
    if valid is None:
        return []
    return [
        f"task.{key}: unknown kwarg of env {env_id!r}; " + _suggest(key, [*TASK_RESERVED, *valid])
        for key in env_kwargs
        if key not in valid
    ]


def _section_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (for listing its valid keys)."""
    model: type[BaseModel] = TrainConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            # a field given by alias (e.g. 'lambda')
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _field_key(loc: Sequence[Any]) -> list[str]:
    """``loc`` cut after its first non-section field: drops pydantic's union-member tags
    (``resources.num_env_runners.int`` -> ``resources.num_env_runners``)."""
    model: type[BaseModel] | None = TrainConfig
    key: list[str] = []
    for part in loc:
        key.append(str(part))
        if model is None:
            break
        field = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        annotation = getattr(field, "annotation", None)
        if field is None or not (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        ):
            break
        model = annotation
    return key


def _explain(err: ValidationError) -> list[str]:
    grouped: dict[str, list[str]] = {}
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        if item["type"] == "extra_forbidden":
            section = _section_at(loc)
            valid = _field_names(section) if section else []
            key = ".".join(loc)
            grouped.setdefault(key, []).append(f"unknown key; {_suggest(loc[-1], valid)}")
            continue
        key = ".".join(_field_key(loc)) or "(top level)"
        if item["type"] == "missing":
            grouped.setdefault(key, []).append("required key is missing")
        else:
            grouped.setdefault(key, []).append(f"{item['msg']} (got {item.get('input')!r})")
    return [f"{key}: " + "; or ".join(msgs) for key, msgs in grouped.items()]


def describe_schema() -> str:
    """Every section and key with its type, default and description (for --help and docs)."""
    lines = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = prefix + (field.alias or name)
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                lines.append(f"{key}:  {field.description or ''}")
                walk(annotation, key + ".")
                continue
            default = (
                "required"
                if field.is_required()
                else f"default {field.get_default(call_default_factory=True)!r}"
            )
            lines.append(f"{key}  ({default})  {field.description or ''}")
            if model is TaskConfig and name == "env_name":
                lines.append(f"{prefix}<kwarg>  env constructor kwargs, flat beside env_name")

    walk(TrainConfig, "")
    return "\n".join(lines)


class ResolvedResources(BaseModel):
    """ResourcesConfig with every "auto" replaced by a number for a given cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_env_runners: int
    num_envs_per_env_runner: int
    num_learners: int
    num_gpus_per_learner: float


def resolve_resources(res: ResourcesConfig, *, cpus: float, gpus: float) -> ResolvedResources:
    """Replace "auto" using the cluster's ``cpus`` and ``gpus``.

    - num_gpus_per_learner: 1 if there is a GPU, else 0.
    - num_learners: the number of GPUs when there are two or more (one learner each), else 0
      (the learner runs in the driver, on its GPU if any).
    - num_env_runners: one per CPU left after the driver's and each remote learner's, at least 1
      when the cluster has 2+ CPUs, else 0 (sample in the driver).
    """
    gpus_per_learner = (
        (1.0 if gpus >= 1 else 0.0)
        if res.num_gpus_per_learner == "auto"
        else (float(res.num_gpus_per_learner))
    )
    if res.num_learners == "auto":
        learners = int(gpus) if gpus >= 2 and gpus_per_learner > 0 else 0
    else:
        learners = int(res.num_learners)
    if res.num_env_runners == "auto":
        free = int(cpus) - 1 - learners
        runners = max(free, 1) if cpus >= 2 else 0
    else:
        runners = int(res.num_env_runners)
    return ResolvedResources(
        num_env_runners=runners,
        num_envs_per_env_runner=res.num_envs_per_env_runner,
        num_learners=learners,
        num_gpus_per_learner=gpus_per_learner,
    )

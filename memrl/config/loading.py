"""Loading: YAML with ``base:`` inheritance, ``dotted.key=value`` overrides, then validation.

A config file is YAML whose top-level sections are the fields of :class:`TrainConfig`. A file
may name a parent with ``base: <short name or path>``; the child is deep-merged over the parent
(mappings merge key by key, any other value replaces), so each shipped config stays short.
Command-line overrides ``dotted.key=value`` are applied last; the value is parsed as YAML
(``stop.iterations=2`` is an int, ``model.core_kwargs.memory_len=null`` is None).

Every error (unknown key anywhere, unknown core or env, a value of the wrong type) is raised as
one :class:`ConfigError` naming each offending dotted key with its valid keys or values (close
matches first), before anything starts Ray.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from memrl.config.checks import check_core, explain
from memrl.config.checks import check_env as check_task
from memrl.config.errors import ConfigError
from memrl.config.files import resolve_config_path
from memrl.config.model import ModelConfig
from memrl.config.schema import TrainConfig

BASE_KEY = "base"


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
        # not valid YAML (e.g. "a: b: c"), or a scalar YAML cannot build (a date like
        # 2020-13-45 raises ValueError): keep the text
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
        lines += explain(err)
    model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    core = model.get("core", ModelConfig.model_fields["core"].default)
    core_kwargs = model.get("core_kwargs") or {}
    if isinstance(core, str) and isinstance(core_kwargs, Mapping):
        lines += check_core(core, core_kwargs)
    task = data.get("task")
    if check_env and isinstance(task, Mapping) and isinstance(task.get("env_name"), str):
        lines += check_task(task["env_name"], {k: v for k, v in task.items() if k != "env_name"})
    if lines or cfg is None:
        raise ConfigError(f"{source}: invalid config:\n" + "\n".join(f"  {x}" for x in lines))
    return cfg

"""Checks beyond the schema: the core and its kwargs, the env id and its kwargs; and turning
pydantic's errors into one line per dotted key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from memrl.config.errors import suggest
from memrl.config.schema import TrainConfig
from memrl.config.task import TASK_RESERVED


def check_core(core: str, core_kwargs: Mapping[str, Any]) -> list[str]:
    """Problems of ``model.core`` and ``model.core_kwargs`` (one line each; [] when fine)."""
    from memrl.models import CORES, core_class

    if core not in CORES:
        return [f"model.core: unknown core {core!r}; {suggest(core, CORES)}"]
    try:
        valid = core_class(core).hyperparameters()
    except ImportError as err:  # registered but its module is missing or broken
        return [f"model.core: core {core!r} cannot be imported: {err}"]
    return [
        f"model.core_kwargs.{key}: unknown kwarg of core {core!r}; "
        + suggest(key, list(valid))
        + f" (defaults: {valid})"
        for key in core_kwargs
        if key not in valid
    ]


def check_env(env_name: str, env_kwargs: Mapping[str, Any]) -> list[str]:
    """Problems of ``task.env_name`` and the env kwargs beside it ([] when fine)."""
    from memrl.envs import env_kwargs as accepted_kwargs
    from memrl.envs import resolve_env_id

    try:
        env_id = resolve_env_id(env_name)
    except ValueError as err:
        return [str(err)]

    try:
        valid = accepted_kwargs(env_id)
    except ImportError:  # the env's module needs a package that is missing: checked at make
        return []
    if valid is None:
        return []
    return [
        f"task.{key}: unknown kwarg of env {env_id!r}; " + suggest(key, [*TASK_RESERVED, *valid])
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


def explain(err: ValidationError) -> list[str]:
    """One line per dotted key: unknown keys with the valid ones, missing keys, bad values."""
    grouped: dict[str, list[str]] = {}
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        if item["type"] == "extra_forbidden":
            section = _section_at(loc)
            valid = _field_names(section) if section else []
            key = ".".join(loc)
            grouped.setdefault(key, []).append(f"unknown key; {suggest(loc[-1], valid)}")
            continue
        key = ".".join(_field_key(loc)) or "(top level)"
        if item["type"] == "missing":
            grouped.setdefault(key, []).append("required key is missing")
        else:
            grouped.setdefault(key, []).append(f"{item['msg']} (got {item.get('input')!r})")
    return [f"{key}: " + "; or ".join(msgs) for key, msgs in grouped.items()]

"""``memrl train --schema``: every key of the config with its type, default and description."""

from __future__ import annotations

from pydantic import BaseModel

from memrl.config.schema import TrainConfig
from memrl.config.task import TaskConfig


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

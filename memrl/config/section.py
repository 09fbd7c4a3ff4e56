"""The base of every config section: strict keys, defaults validated, plain-dict construction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

S = TypeVar("S", bound="Section")


class Section(BaseModel):
    """A pydantic section: unknown keys are errors; defaults are validated too.

    ``label`` names the section in :meth:`from_dict`'s unknown-key message (``td3``, ``model``).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)
    label: ClassVar[str] = "config"

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any] | None) -> S:
        """Validate ``data`` (None or {} = the defaults).

        Raises ValueError: an unknown key (the message lists the valid ones), or a bad value
        (pydantic's ValidationError, a ValueError, naming the field).
        """
        data = dict(data or {})
        valid = [f.alias or n for n, f in cls.model_fields.items()]
        unknown = sorted(set(data) - set(valid) - set(cls.model_fields))
        if unknown:
            raise ValueError(
                f"unknown {cls.label} key(s) {unknown}; valid keys: {', '.join(valid)}"
            )
        return cls.model_validate(data)

    def set_fields(self) -> dict[str, Any]:
        """Only the keys given explicitly (what a user wrote), as plain data."""
        return self.model_dump(exclude_unset=True)

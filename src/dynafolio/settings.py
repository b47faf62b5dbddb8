"""The one base of every settings model dynafolio reads from a config or a file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Settings"]


class Settings(BaseModel):
    """Validated settings: unknown keys are errors, and values never change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

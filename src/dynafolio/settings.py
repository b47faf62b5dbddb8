"""The one base of every settings model dynafolio reads from a config or a file, and the one
way an estimator (a strategy or a forecaster) declares its parameters.

An estimator's parameters are declared once, as annotated class attributes under
:func:`parameters`; its config schema is derived from them by :func:`params_model`, so a
parameter's name, type, bounds and default live in one place::

    @parameters
    class MomentumStrategy(Strategy):
        lookback: Annotated[int, Field(ge=2)] = 52
        skip: Annotated[int, Field(ge=0)] = 4
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["Settings", "parameters", "params_model"]

T = TypeVar("T", bound=type)


class Settings(BaseModel):
    """Validated settings: unknown keys are errors, and values never change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parameters(cls: T) -> T:
    """Make ``cls``'s annotated attributes its constructor parameters, in declaration order
    (a subclass's after its bases').

    The scikit-learn estimator contract — ``__init__`` only stores its arguments — written
    once instead of in every class (an identity-compared dataclass). Bounds given
    as ``Annotated[..., pydantic.Field(...)]`` are checked when a config is read
    (:func:`params_model`), not when Python code constructs the estimator.
    """
    return dataclasses.dataclass(eq=False)(cls)


def params_model(
    source: type | Callable[..., Any],
    name: str,
    module: str,
    exclude: set[str] | frozenset[str] = frozenset(),
    base: type[BaseModel] = Settings,
) -> type[BaseModel]:
    """A frozen pydantic model of the keyword parameters of ``source`` (a class's constructor
    or a function), minus ``exclude``, derived from ``base``.

    Types (with ``Annotated`` bounds) come from the annotations, defaults from the signature;
    unknown keys are refused. The model is published as ``module.name`` so that configs
    pickle (worker processes).
    """
    fields: dict[str, Any] = {}
    if dataclasses.is_dataclass(source):
        hints = typing.get_type_hints(source, include_extras=True)
        for spec in dataclasses.fields(source):
            if spec.init and spec.name not in exclude:
                if spec.default_factory is not dataclasses.MISSING:
                    default = Field(default_factory=spec.default_factory)
                else:
                    default = ... if spec.default is dataclasses.MISSING else spec.default
                fields[spec.name] = (hints.get(spec.name, Any), default)
    else:
        function = source.__init__ if isinstance(source, type) else source
        hints = typing.get_type_hints(function, include_extras=True)
        for parameter in inspect.signature(function).parameters.values():
            if parameter.name in ("self", *exclude) or parameter.kind in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
            ):
                continue
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[parameter.name] = (hints.get(parameter.name, Any), default)
    model = create_model(name, __base__=base, __module__=module, **fields)
    publish(model, module)
    return model


def publish(model: type, module: str) -> None:
    """Make a generated class importable as ``module.<its name>`` (pickling finds it)."""
    model.__module__ = module
    model.__qualname__ = model.__name__
    setattr(sys.modules[module], model.__name__, model)

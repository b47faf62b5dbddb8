"""Forecaster models, declared once: a name, the class, its typed parameters.

``register_forecaster("stacked_gru", StackedLSTMForecaster, label="GRU", fixed={"cell":
"gru"})`` makes ``forecaster: {model: stacked_gru, params: {...}}`` valid in a config. The
parameter model is derived from the constructor's signature (names, types, defaults), so a
misspelt or mistyped parameter is reported with its config key when the config is read —
before any data is loaded or any model trains.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from dynafolio.errors import ConfigError
from dynafolio.forecast.base import Forecaster
from dynafolio.settings import Settings, params_model, publish

__all__ = [
    "FORECASTERS",
    "ForecasterEntry",
    "ForecasterSpec",
    "discover_forecasters",
    "forecaster_spec",
    "forecaster_spec_union",
    "params_model",
    "register_forecaster",
]


#: ``trial -> parameters``: one draw of a forecaster's hyper-parameters for tuning.
SearchSpace = Callable[[Any], dict[str, Any]]

#: Constructor arguments a run supplies rather than the config: ``market``, the known-answer
#: market the run's data was generated from (None for real data).
RUN_ARGUMENTS = frozenset({"market"})


@dataclass(frozen=True)
class ForecasterEntry:
    """A registered forecaster: ``cls(**fixed, **params, seed=seed)`` builds it (plus
    ``market=`` for a forecaster whose constructor takes the run's known-answer market)."""

    model: str
    cls: type[Forecaster]
    label: str
    fixed: dict[str, Any] = field(default_factory=dict)
    params: type[BaseModel] = BaseModel
    #: Draws one trial's parameters (``dynafolio tune``) from an Optuna-style ``trial``
    #: (``suggest_categorical``, ``suggest_float``, ``suggest_int``); None: not tunable.
    search_space: SearchSpace | None = None

    @property
    def takes_market(self) -> bool:
        return "market" in inspect.signature(self.cls.__init__).parameters


class ForecasterSpec(Settings):
    """Base of the config entry ``forecaster: {model: ..., params: {...}}``."""

    model: str
    params: BaseModel

    @property
    def entry(self) -> ForecasterEntry:
        return FORECASTERS[self.model]

    @property
    def label(self) -> str:
        """Short family name shown in strategy names ("LSTM", "GRU")."""
        return self.entry.label

    def build(self, seed: int, market: Any = None) -> Forecaster:
        """An unfitted forecaster with these parameters and ``seed``; ``market`` is the run's
        known-answer market (:class:`~dynafolio.data.markets.KnownMarket`, None for real
        data), passed on to forecasters that read it."""
        entry = self.entry
        if entry.takes_market and market is None:
            raise ConfigError(
                f"forecaster {self.model!r} serves only known-answer markets: set data.dataset "
                "to noise, momentum, foresight or static_edge (or --dataset on the command line)"
            )
        extra = {"market": market} if entry.takes_market else {}
        return entry.cls(**entry.fixed, **self.params.model_dump(), seed=seed, **extra)


#: model name -> entry, in registration order.
FORECASTERS: dict[str, ForecasterEntry] = {}
_SPECS: dict[str, type[ForecasterSpec]] = {}


def register_forecaster(
    model: str,
    cls: type[Forecaster],
    *,
    label: str,
    fixed: dict[str, Any] | None = None,
    search_space: SearchSpace | None = None,
) -> ForecasterEntry:
    """Make ``model`` a valid ``forecaster.model`` in configs (and, with a
    ``search_space``, a model ``dynafolio tune`` can search)."""
    fixed = dict(fixed or {})
    title = "".join(part.title() for part in model.split("_"))
    params = params_model(
        cls.__init__, f"{title}Params", __name__, exclude={"seed", *RUN_ARGUMENTS, *fixed}
    )
    entry = ForecasterEntry(model, cls, label, fixed, params, search_space)
    FORECASTERS[model] = entry
    spec = create_model(
        f"{title}Spec",
        __base__=ForecasterSpec,
        __module__=__name__,
        model=(Literal[model], model),  # type: ignore[valid-type]
        params=(params, Field(default_factory=params)),
    )
    publish(spec, __name__)
    _SPECS[model] = spec
    return entry


def discover_forecasters() -> None:
    """Import every module of :mod:`dynafolio.forecast`, so all forecasters are registered
    (a new forecaster file needs no edit anywhere else)."""
    import importlib
    import pkgutil

    import dynafolio.forecast as package

    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
        importlib.import_module(f"{package.__name__}.{module}")


def forecaster_spec(model: str, **params: Any) -> ForecasterSpec:
    """A validated forecaster spec, e.g. ``forecaster_spec("price_lstm", epochs=10)``."""
    return _SPECS[model](model=model, params=params)


def forecaster_spec_union() -> Any:
    """The type of a config's ``forecaster`` entry: any registered model, by ``model``."""
    return Annotated[Union[tuple(_SPECS.values())], Field(discriminator="model")]  # noqa: UP007

"""Strategy kinds, declared once: the config schema, the builder and the CLI listing derive
from these declarations.

A strategy kind is a pydantic *spec* — the settings a config entry may hold — registered with
:func:`register_strategy` next to the strategy class it builds::

    @register_strategy
    class EqualWeightSpec(StrategySpec):
        '''1/N of the assets priced that day.'''

        kind: Literal["equal_weight"]
        strategy_class: ClassVar = EqualWeightStrategy

A strategy with parameters derives its spec from the class (:func:`spec_fields`), so each
parameter is declared once, on the class::

    @register_strategy
    class MomentumSpec(spec_fields(MomentumStrategy)):
        kind: Literal["momentum"]
        strategy_class: ClassVar = MomentumStrategy

:meth:`StrategySpec.build` passes the entry's values and what the run supplies (seed,
transaction cost, risk-free rate, asset classes) to the class; a kind overrides it only to
check or convert something.

The experiment config accepts every registered kind (:func:`strategy_spec_union`), validates
each entry completely before anything runs, and builds it with :meth:`StrategySpec.build`.
Forecasters are registered the same way (:mod:`dynafolio.forecast.registry`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Union

from pydantic import AfterValidator, Field

from dynafolio.backtest.constraints import PortfolioConstraints
from dynafolio.forecast.registry import ForecasterSpec
from dynafolio.paths import name_problem
from dynafolio.settings import Settings, params_model
from dynafolio.strategies.base import Strategy

__all__ = [
    "STRATEGY_SPECS",
    "BuildContext",
    "ConstraintsSpec",
    "DisplayName",
    "StrategySpec",
    "RUN_ARGUMENTS",
    "register_strategy",
    "spec_fields",
    "strategy_spec_union",
]


def _display_name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A name shown to people: any printable text. It becomes a file name only through
#: :func:`dynafolio.paths.unique_stems`, never directly.
DisplayName = Annotated[str, AfterValidator(_display_name)]


class ConstraintsSpec(Settings):
    """Per-strategy portfolio limits; unset fields inherit the experiment's ``backtest``."""

    long_only: bool | None = None
    max_gross_leverage: float | None = Field(None, gt=0.0)
    max_position: float | None = Field(None, gt=0.0, le=10.0)


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need besides its own settings.

    Attributes
    ----------
    seed : int
        The run's seed for this strategy (learned strategies run once per seed).
    risk_free_rate : float
        **Annual** rate, as given in the config (``backtest.risk_free_rate``).
    periods_per_year : int
        Of the data's frequency (52 weekly, 252 trading days ...).
    transaction_cost : float
        Cost per unit of turnover (``backtest.transaction_cost``).
    asset_classes : mapping
        Asset -> class, where the data provides them (embedded datasets).
    market : KnownMarket, optional
        The known-answer market the data was generated from (:mod:`dynafolio.data.markets`);
        None for real data. Only the ``oracle`` forecaster reads it.
    constraints : PortfolioConstraints
        The entry's limits, the ones the engine checks every target against (the experiment's
        ``backtest`` overridden by the entry's ``constraints``). A strategy that needs limits
        reads them here, and a builder refuses limits its strategy cannot keep.
    """

    seed: int = 0
    risk_free_rate: float = 0.0
    periods_per_year: int = 52
    transaction_cost: float = 0.001
    asset_classes: Mapping[str, str] = field(default_factory=dict)
    market: Any = None
    constraints: PortfolioConstraints = field(default_factory=PortfolioConstraints)

    @property
    def risk_free_per_period(self) -> float:
        """The annual rate compounded down to one period: ``(1 + rf)^(1/P) − 1``."""
        return (1.0 + self.risk_free_rate) ** (1.0 / self.periods_per_year) - 1.0


class StrategySpec(Settings):
    """Settings every strategy entry accepts; a kind adds its own fields and :meth:`build`.

    Subclasses declare ``kind: Literal["..."]`` (one or more kind names), set
    ``strategy_class`` (the :class:`~dynafolio.strategies.base.Strategy` they build: its
    ``learned`` flag decides whether the entry runs once per seed) and implement ``build``.
    """

    kind: str
    name: DisplayName | None = Field(
        None, description="display name (default: derived from the settings)"
    )
    universe: tuple[str, ...] | None = Field(
        None, description="assets this strategy may hold (default: every asset in the data)"
    )
    constraints: ConstraintsSpec | None = Field(
        None, description="portfolio limits of this strategy (default: the backtest's)"
    )
    tags: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="labels analyses select by (family, k, ...); kind and k are added",
    )

    strategy_class: ClassVar[type[Strategy]]

    @property
    def learned(self) -> bool:
        """Whether the entry trains a model."""
        return self.strategy_class.learned

    @property
    def seeded(self) -> bool:
        """Whether the entry runs once per seed (learned strategies and random controls)."""
        return self.strategy_class.learned or self.strategy_class.seeded

    def build(self, context: BuildContext) -> Strategy:
        """The strategy this entry declares, for the run's ``context``."""
        return self.strategy_class(**self.arguments(context))

    def arguments(self, context: BuildContext, cls: type[Strategy] | None = None) -> dict[str, Any]:
        """The constructor arguments of ``cls`` (default ``strategy_class``): this entry's
        value of each parameter it has, plus what the run supplies (:data:`RUN_ARGUMENTS`).

        A forecaster spec is built for the context's seed and market, and its registered
        label goes to the parameter ``<name>_label`` where the class has one."""
        accepted = inspect.signature(cls or self.strategy_class).parameters
        arguments = {}
        for name in type(self).model_fields:
            if name in accepted:
                value = getattr(self, name)
                if isinstance(value, ForecasterSpec):
                    if f"{name}_label" in accepted:
                        arguments[f"{name}_label"] = value.label
                    value = value.build(context.seed, context.market)
                arguments[name] = value
        supplied = {
            "seed": context.seed,
            "transaction_cost": context.transaction_cost,
            "risk_free_rate": context.risk_free_per_period,
            "asset_classes": dict(context.asset_classes),
        }
        arguments.update({name: v for name, v in supplied.items() if name in accepted})
        return arguments

    def all_tags(self) -> dict[str, str | int | float]:
        """The entry's tags: ``kind`` (and ``k``, ``model`` where the kind has them) plus
        the config's own, which win."""
        tags: dict[str, str | int | float] = {"kind": self.kind}
        k = getattr(self, "k", None)
        if isinstance(k, int):
            tags["k"] = k
        forecaster = getattr(self, "forecaster", None)
        if forecaster is not None:
            tags["model"] = forecaster.model
        return {**tags, **self.tags}


#: Constructor parameters a run supplies from its :class:`BuildContext`, never a config:
#: ``seed``, ``transaction_cost``, ``risk_free_rate`` (per period) and ``asset_classes``.
RUN_ARGUMENTS = frozenset({"seed", "transaction_cost", "risk_free_rate", "asset_classes"})


def spec_fields(
    cls: type[Strategy], exclude: set[str] | frozenset[str] = frozenset()
) -> type[StrategySpec]:
    """A :class:`StrategySpec` with one field per constructor parameter of ``cls`` (its
    name, type, ``Annotated`` bounds and default), less :data:`RUN_ARGUMENTS` and
    ``exclude``: the base a kind's spec derives from, so a parameter is declared once, on
    the strategy class (:func:`dynafolio.settings.parameters`)."""
    return params_model(
        cls,
        f"{cls.__name__}Settings",
        cls.__module__,
        exclude={*RUN_ARGUMENTS, *exclude},
        base=StrategySpec,
    )


#: kind -> spec class, in registration order.
STRATEGY_SPECS: dict[str, type[StrategySpec]] = {}


def register_strategy(spec: type[StrategySpec]) -> type[StrategySpec]:
    """Register a spec class under every kind name of its ``kind`` literal (a decorator)."""
    annotation = spec.model_fields["kind"].annotation
    kinds = typing.get_args(annotation)
    if not kinds:
        raise TypeError(f"{spec.__name__}.kind must be a Literal of kind names")
    for kind in kinds:
        if kind in STRATEGY_SPECS and STRATEGY_SPECS[kind] is not spec:
            raise ValueError(f"strategy kind {kind!r} is registered twice")
        STRATEGY_SPECS[kind] = spec
    return spec


def strategy_spec_union() -> Any:
    """The type of one config entry: any registered spec, chosen by its ``kind``."""
    specs = tuple(dict.fromkeys(STRATEGY_SPECS.values()))
    return Annotated[Union[specs], Field(discriminator="kind")]  # noqa: UP007

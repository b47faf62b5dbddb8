"""The listings: ``dynafolio strategies`` (every kind a config may name, with its settings)
and ``dynafolio data list/show`` (the embedded datasets and known-answer markets)."""

from __future__ import annotations

import os
from typing import Annotated, Any

os.environ.setdefault("MPLBACKEND", "Agg")

import typer  # noqa: E402
from rich.table import Table  # noqa: E402

from dynafolio.cli.common import console, user_errors  # noqa: E402
from dynafolio.errors import DynafolioError  # noqa: E402


def strategies_list(
    kind: Annotated[
        str | None, typer.Argument(help="Show one kind's settings (default: list all).")
    ] = None,
) -> None:
    """List the strategy kinds a config may use, or one kind's settings and defaults."""
    from dynafolio.forecast.registry import FORECASTERS
    from dynafolio.strategies.kinds import STRATEGY_SPECS
    from dynafolio.strategies.registry import StrategySpec

    with user_errors():
        if kind is not None and kind not in STRATEGY_SPECS:
            raise DynafolioError(
                f"unknown strategy kind {kind!r}; available: {', '.join(STRATEGY_SPECS)}"
            )
        if kind is None:
            table = Table(title="Strategy kinds (config: strategies: - kind: ...)")
            for column in ("kind", "learned", "builds", "what it does"):
                table.add_column(column)
            for name, spec in STRATEGY_SPECS.items():
                doc = " ".join((spec.__doc__ or "").split("\n\n")[0].replace("``", "").split())
                table.add_row(
                    name,
                    "yes" if spec.strategy_class.learned else "",
                    spec.strategy_class.__name__,
                    doc,
                )
            console.print(table)
            console.print(
                "forecaster models: "
                + ", ".join(f"{m} ({e.label})" for m, e in FORECASTERS.items())
            )
            return
        spec = STRATEGY_SPECS[kind]
        table = Table(title=f"{kind}: settings ({spec.strategy_class.__name__})")
        for column in ("setting", "type", "default"):
            table.add_column(column)
        common = set(StrategySpec.model_fields)
        for field_name, info in spec.model_fields.items():
            if field_name == "kind" or field_name in common:
                continue
            table.add_row(field_name, _type_name(info.annotation), _default_text(info))
        console.print(table)
        console.print("Every kind also takes: name, universe, constraints, tags.")


def _type_name(annotation: Any) -> str:
    from pydantic import BaseModel

    text = str(annotation)
    if "forecast.registry" in text:
        return "forecaster {model, params}" + (" or null" if "None" in text else "")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping of settings"
    if isinstance(annotation, type):
        return annotation.__name__
    return text.replace("typing.", "").replace("pathlib.", "")


def _default_text(info: Any) -> str:
    from pydantic import BaseModel

    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}={v!r}" for k, v in value.model_dump().items())
    return repr(value)


def data_list() -> None:
    """List the embedded datasets."""
    from dynafolio.data import list_datasets, load_dataset

    with user_errors():
        table = Table(title="Embedded datasets", title_justify="left")
        for column in ("Name", "Assets", "From", "To", "Frequency", "Source"):
            table.add_column(column)
        for info in list_datasets():
            prices = load_dataset(info.name)
            table.add_row(
                info.name,
                str(prices.shape[1]),
                str(prices.index[0].date()),
                str(prices.index[-1].date()),
                info.frequency,
                info.source,
            )
        console.print(table)


def data_show(name: Annotated[str, typer.Argument(help="Dataset name, e.g. multiasset.")]) -> None:
    """Show a dataset's assets, classes, date ranges and first valid date per asset."""
    from dynafolio.data import dataset_info, describe_prices, load_dataset

    with user_errors():
        info = dataset_info(name)
        prices = load_dataset(name)
        described = describe_prices(prices, asset_classes=info.asset_classes)
        console.print(
            f"[bold]{info.name}[/]: {info.description}\n"
            f"Source: {info.source}\nLicense: {info.license}"
        )
        table = Table(title_justify="left")
        table.add_column("Asset", no_wrap=True)
        for column in described.columns:
            table.add_column(str(column).replace("_", " "), justify="right")
        for asset, row in described.iterrows():
            table.add_row(str(asset), *[_fmt(v) for v in row])
        console.print(table)


def _fmt(value: Any) -> str:
    if hasattr(value, "date") and callable(value.date):
        return str(value.date())
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)

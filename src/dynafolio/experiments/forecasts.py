"""A run's forecasts gathered for evaluation (:mod:`dynafolio.results.forecasts`).

Each backtest task hands back the out-of-sample forecasts its strategy acted on
(:func:`forecast_records`); :func:`forecast_runs` joins them into one record per forecaster
(walk-forward folds joined, one frame per seed) and :func:`baseline_runs` computes the simple
baselines — zero, the historical mean, the AR(1) and ridge on five lagged returns — on the same
decision dates, from the same history and with the same refit schedule as the first learned
forecaster, so every row of the forecast table answers the same question on the same dates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pandas as pd

from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.baselines import (
    HistoricalMeanForecaster,
    RidgeForecaster,
    ZeroForecaster,
)
from dynafolio.forecast.linear import ARForecaster
from dynafolio.results.forecasts import (
    BENCHMARK,
    ForecastRecord,
    ForecastRun,
    as_log_return_forecast,
)
from dynafolio.strategies.base import Strategy, StreamSpec
from dynafolio.strategies.forecast import compute_stream

__all__ = ["baseline_runs", "forecast_records", "forecast_runs"]

#: The baselines of every forecast table, by display name.
BASELINES: dict[str, Forecaster] = {
    "Zero": ZeroForecaster(),
    BENCHMARK: HistoricalMeanForecaster(),
    "AR(1)": ARForecaster(p=1),
    "Ridge (5 lags)": RidgeForecaster(lags=5),
}


def stream_identity(spec: StreamSpec, columns: pd.Index) -> str:
    """What makes two forecast records the same forecaster: its class, its parameters other
    than the seed, its refit schedule and the assets it forecasts."""
    params = {k: v for k, v in spec.template.get_params().items() if k != "seed"}
    digest = hashlib.sha256(type(spec.template).__qualname__.encode())
    digest.update(repr(sorted(params.items())).encode())
    digest.update(repr(spec.schedule).encode())
    digest.update(repr(list(columns)).encode())
    return digest.hexdigest()[:16]


def forecast_records(
    strategy: Strategy, specs: Mapping[str, StreamSpec], label: str, universe: pd.DataFrame
) -> tuple[ForecastRecord, ...]:
    """The test-period forecasts ``strategy`` acted on in its backtest (its ``"test"``
    stream; ``specs`` are its streams in that backtest)."""
    records = []
    for name, frame in strategy.forecasts_made().items():
        if name != "test" or frame.empty or name not in specs:
            continue
        spec = specs[name]
        records.append(
            ForecastRecord(
                stream=stream_identity(spec, universe.columns),
                label=label,
                target=spec.template.target,
                forecasts=frame.reindex(columns=universe.columns),
                schedule=spec.schedule,
            )
        )
    return tuple(records)


def forecast_runs(
    records: Mapping[tuple[str, int, int], tuple[ForecastRecord, ...]], prices: pd.DataFrame
) -> list[ForecastRun]:
    """One run per forecaster, from the records of every ``(strategy, seed, fold)``
    backtest: the folds of a seed joined, strategies sharing a forecaster merged."""
    by_stream: dict[str, dict] = {}
    for (strategy, seed, fold), found in records.items():
        for record in found:
            entry = by_stream.setdefault(
                record.stream, {"label": record.label, "strategies": [], "parts": {}, "bad": 0}
            )
            if strategy not in entry["strategies"]:
                entry["strategies"].append(strategy)
            frame = as_log_return_forecast(record, prices)
            parts = entry["parts"].setdefault(seed, {})
            # Strategies on one forecaster replay the same forecasts: keep the longest.
            if fold not in parts or len(frame) > len(parts[fold]):
                parts[fold] = frame
                if record.target == "price":
                    entry["bad"] += int((record.forecasts <= 0).sum().sum())
    labels = [entry["label"] for entry in by_stream.values()]
    runs = []
    for entry in by_stream.values():
        seeds = tuple(sorted(entry["parts"]))
        frames = tuple(
            pd.concat([entry["parts"][s][f] for f in sorted(entry["parts"][s])]).sort_index()
            for s in seeds
        )
        # All seeds on the dates every seed forecast.
        common = frames[0].index
        for frame in frames[1:]:
            common = common.intersection(frame.index)
        name = entry["label"]
        # A learned forecaster named like another, or like a baseline, is told apart by the
        # first strategy that uses it.
        if labels.count(name) > 1 or name in BASELINES:
            name = f"{name} ({entry['strategies'][0]})"
        frames = tuple(f.loc[common] for f in frames)
        runs.append(
            ForecastRun(
                name, entry["label"], True, seeds, frames, tuple(entry["strategies"]), entry["bad"]
            )  # fmt: skip
        )
    return runs


def baseline_runs(
    learned: list[ForecastRun],
    records: Mapping[tuple[str, int, int], tuple[ForecastRecord, ...]],
    prices: pd.DataFrame,
    first_rows: Mapping[int, int],
) -> list[ForecastRun]:
    """The baselines on the decision dates and assets of the learned forecasters, fold by
    fold: each fold's history starts at ``first_rows[fold]`` and the refit schedule is the
    first learned forecaster's in that fold."""
    columns = pd.Index(
        [c for c in prices.columns if any(c in run.forecasts[0].columns for run in learned)]
    )
    universe = prices[columns]
    by_fold: dict[int, tuple[set, object]] = {}
    for (_, _, fold), found in records.items():
        for record in found:
            dates, schedule = by_fold.get(fold, (set(), record.schedule))
            by_fold[fold] = (dates | set(record.forecasts.index), schedule)
    runs = []
    for name, template in BASELINES.items():
        parts = []
        for fold in sorted(by_fold):
            dates, schedule = by_fold[fold]
            rows = sorted(universe.index.get_indexer(sorted(dates)))
            made = compute_stream(template, schedule, universe, rows, first_rows[fold])
            parts.append(pd.DataFrame(made).T)
        frame = pd.concat(parts).sort_index()
        runs.append(ForecastRun(name, name, False, (0,), (frame,)))
    return runs

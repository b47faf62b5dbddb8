"""Hyper-parameter search for a forecaster with Optuna (the sources' "Bayesian optimisation").

Every trial fits the forecaster on the training period minus a validation tail and scores
its one-step-ahead forecasts on that tail: each validation forecast uses the history up to
its decision date only. The validation tail precedes the test period, which tuning never
touches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from pydantic import ValidationError

from dynafolio.errors import DataError
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.registry import FORECASTERS, discover_forecasters, forecaster_spec
from dynafolio.history import MarketHistory
from dynafolio.parallel import ExecutorSettings, execute


def _forecaster(model: str, params: dict[str, Any], seed: int) -> Forecaster:
    try:
        return forecaster_spec(model, **params).build(seed)
    except ValidationError as error:
        raise DataError(f"tune: invalid parameters for {model}: {error}") from None


def tunable_models() -> list[str]:
    """Registered forecasters that have a search space (the choices of ``dynafolio tune``)."""
    discover_forecasters()
    return [model for model, entry in FORECASTERS.items() if entry.search_space is not None]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


#: Trials proposed together before the sampler learns their scores (fixed, so that the search
#: does not depend on how many workers evaluate them).
TRIAL_BATCH = 4


@dataclass(frozen=True)
class _Trial:
    """One trial as an executor task: its forecaster parameters."""

    id: str
    params: dict[str, Any]
    deps: tuple[str, ...] = ()
    weight: int = 10


@dataclass(frozen=True)
class _TuneContext:
    """What every trial needs (sent once to each worker)."""

    model: str
    prices: pd.DataFrame
    first_val: int
    n_train: int
    seed: int

    def run(self, task: _Trial, dep_results: list[Any]) -> float:
        forecaster = _forecaster(self.model, task.params, self.seed)
        return validation_mse(forecaster, self.prices, self.first_val, self.n_train)


@dataclass(frozen=True)
class TuneResult:
    """Outcome of a search: the trials table and the best parameters."""

    model: str
    best_params: dict[str, Any]  # constructor arguments of the best trial's forecaster
    best_value: float
    baseline_value: float
    trials: pd.DataFrame
    fit_dates: tuple[pd.Timestamp, pd.Timestamp]
    validation_dates: tuple[pd.Timestamp, pd.Timestamp]


def validation_mse(
    forecaster: Forecaster, prices: pd.DataFrame, first_val_row: int, end_row: int
) -> float:
    """Mean squared one-step-ahead error over rows ``[first_val_row, end_row)``.

    The forecaster is fitted on rows before ``first_val_row``; the forecast for row ``r``
    is made with the history up to row ``r − 1``. Log returns are scored for return
    forecasters, prices for price forecasters.
    """
    returns = prices.pct_change(fill_method=None)

    def history(stop: int) -> MarketHistory:
        return MarketHistory(prices.iloc[:stop], returns.iloc[:stop])

    fitted = forecaster.fit(history(first_val_row))
    errors = []
    for row in range(first_val_row, end_row):
        forecast = fitted.predict(history(row)).reindex(prices.columns).to_numpy(dtype=float)
        if fitted.target == "price":
            actual = prices.iloc[row].to_numpy(dtype=float)
        else:
            actual = np.log(
                prices.iloc[row].to_numpy(dtype=float) / prices.iloc[row - 1].to_numpy(dtype=float)
            )
        errors.append((forecast - actual) ** 2)
    squared = np.array(errors)
    if not np.isfinite(squared).any():
        raise DataError("no finite validation forecast: lengthen the validation period")
    return float(np.nanmean(squared))


def zero_forecast_mse(prices: pd.DataFrame, first_val_row: int, end_row: int, target: str) -> float:
    """Error of the naive forecast (zero log return / unchanged price) on the same rows."""
    now = prices.iloc[first_val_row - 1 : end_row - 1].to_numpy(dtype=float)
    later = prices.iloc[first_val_row:end_row].to_numpy(dtype=float)
    errors = (later - now) ** 2 if target == "price" else np.log(later / now) ** 2
    return float(np.nanmean(errors))


def tune_forecaster(
    model: str,
    prices: pd.DataFrame,
    n_train: int,
    *,
    n_trials: int = 10,
    seed: int = 0,
    val_fraction: float = 0.2,
    fixed_params: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    executor: ExecutorSettings | None = None,
) -> TuneResult:
    """Search ``model``'s hyper-parameters on the last ``val_fraction`` of the training rows.

    Parameters
    ----------
    model : str
        A registered forecaster with a search space (:func:`tunable_models`).
    prices : pd.DataFrame, shape (n_dates, n_assets)
        Prepared prices; only the first ``n_train`` rows (the training period) are used.
    n_train : int
        Rows of the training period.
    n_trials : int
        Optuna trials (TPE sampler seeded with ``seed``).
    fixed_params : dict, optional
        Parameters held fixed in every trial (e.g. a smaller epoch budget).
    executor : ExecutorSettings, optional
        Where trials run (default serial); the result is the same with any executor.
    """
    if model not in tunable_models():
        raise DataError(
            f"no search space for model {model!r}; choose from {', '.join(tunable_models())}"
        )
    first_val = int(n_train * (1.0 - val_fraction))
    if first_val < 40 or n_train - first_val < 5:
        raise DataError(
            f"tuning needs at least 40 fitting and 5 validation periods; the training period has "
            f"{n_train} periods ({first_val} for fitting with val_fraction={val_fraction})"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    context = _TuneContext(model, prices, first_val, n_train, seed)
    # Trials are proposed in batches of TRIAL_BATCH, evaluated in parallel, then reported in
    # order: the sampler sees the same history whatever the number of workers, so the search
    # is the same serially and in parallel.
    done = 0
    while done < n_trials:
        batch = []
        for _ in range(min(TRIAL_BATCH, n_trials - done)):
            trial = study.ask()
            params = {**FORECASTERS[model].search_space(trial), **(fixed_params or {})}
            # Keep the constructor form too, so the best trial pastes into a config.
            trial.set_user_attr("forecaster_params", {k: _plain(v) for k, v in params.items()})
            batch.append((trial, _Trial(f"trial-{trial.number}", params)))
        values = execute([t for _, t in batch], context, executor)
        for trial, task in batch:
            study.tell(trial, values[task.id])
            if progress is not None:
                progress(1)
        done += len(batch)

    target = _forecaster(model, fixed_params or {}, seed).target
    trials = study.trials_dataframe(attrs=("number", "value", "params", "duration", "state"))
    return TuneResult(
        model=model,
        best_params=dict(study.best_trial.user_attrs["forecaster_params"]),
        best_value=float(study.best_value),
        baseline_value=zero_forecast_mse(prices, first_val, n_train, target),
        trials=trials,
        fit_dates=(prices.index[0], prices.index[first_val - 1]),
        validation_dates=(prices.index[first_val], prices.index[n_train - 1]),
    )
